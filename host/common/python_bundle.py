"""The artifact of a Python function: its own sources, in a WebAssembly wrapper.

Every Python function on a host runs in one shared runtime module (the
interpreter, the standard library and the SDK, compiled once per host), so what
``nimbus build`` makes of a ``handler.py`` is only the function's modules and its
pure-Python requirements. They travel as a WebAssembly module holding nothing but one
custom section named ``nimbus-python`` (the msgpack map ``{"format": 1, "modules":
{name: [is_package, filename, source]}}``): a ``.wasm`` like every other function's,
deployable through the same paths, and recognisable from its first bytes.
"""

from __future__ import annotations

import msgpack

from host.common import leb128

SECTION = b"nimbus-python"
FORMAT = 1
_CORE_HEADER = b"\0asm\x01\0\0\0"
#: a bundle starts with the core header and a custom section (id 0) of this name
_PREFIX_LEN = len(_CORE_HEADER) + 1

#: a module's entry: is it a package (``__init__.py``), its file name, its source
Module = tuple[bool, str, bytes]


def encode(modules: dict[str, Module]) -> bytes:
    """The ``.wasm`` artifact of a function made of ``modules``."""
    payload: bytes = msgpack.packb(
        {"format": FORMAT, "modules": {k: list(v) for k, v in sorted(modules.items())}},
        use_bin_type=True,
    )
    body = leb128.encode(len(SECTION)) + SECTION + payload
    return _CORE_HEADER + b"\0" + leb128.encode(len(body)) + body


#: how many first bytes ``is_python_bundle`` looks at (header, section size, name)
HEAD_BYTES = _PREFIX_LEN + 2 * leb128.MAX_BYTES + len(SECTION)


def is_python_bundle(wasm: bytes) -> bool:
    """True when ``wasm`` is a Python function's artifact (checks the first bytes only)."""
    if not wasm.startswith(_CORE_HEADER + b"\0"):
        return False
    try:
        _, at = leb128.read(wasm, _PREFIX_LEN)
        n, at = leb128.read(wasm, at)
    except ValueError:
        return False
    return wasm[at : at + n] == SECTION


def sources(wasm: bytes) -> bytes:
    """The msgpack ``{name: [is_package, filename, source]}`` map of a bundle.

    Raises ``ValueError`` saying what is wrong with an artifact that is not one.
    """
    if not is_python_bundle(wasm):
        raise ValueError("not a Nimbus Python bundle (build it with `nimbus build`)")
    size, at = leb128.read(wasm, _PREFIX_LEN)
    if at + size != len(wasm):
        raise ValueError("the Python bundle is truncated or has trailing bytes")
    n, at = leb128.read(wasm, at)
    try:
        doc = msgpack.unpackb(wasm[at + n :], raw=False)
    except Exception as e:
        raise ValueError(f"the Python bundle is not msgpack: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else None
        raise ValueError(
            f"the Python bundle has format {got!r}; this host reads format {FORMAT} "
            "(rebuild it with this version's `nimbus build`)"
        )
    modules = doc.get("modules")
    if not isinstance(modules, dict) or "handler" not in modules:
        raise ValueError("the Python bundle has no handler module")
    return bytes(msgpack.packb(modules, use_bin_type=True))
