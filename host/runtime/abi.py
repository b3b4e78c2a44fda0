"""The guest ABI's rules as code: which exports a module needs and what it may import.

The full contract is ``guest_sdk/ABI.md``; this module checks a compiled module
against it at deploy time, so a module that cannot work is refused before it serves.
"""

from __future__ import annotations

from collections.abc import Mapping

import wasmtime

from host.errors import AbiError, DeployError
from host.runtime.imports import HostFunction

ABI_VERSION = 1

EXPORT_MEMORY = "memory"
EXPORT_VERSION = "nimbus_abi_version"
EXPORT_ALLOC = "nimbus_alloc"
EXPORT_HANDLE = "nimbus_handle"

#: export name -> (params, results) for the functions every module must export
REQUIRED_FUNCS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    EXPORT_VERSION: ((), ("i32",)),
    EXPORT_ALLOC: (("i32",), ("i32",)),
    EXPORT_HANDLE: (("i32", "i32"), ("i64",)),
}


def _kinds(types: list[wasmtime.ValType]) -> tuple[str, ...]:
    return tuple(str(t) for t in types)


def _sig(params: tuple[str, ...], results: tuple[str, ...]) -> str:
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def check_exports(module: wasmtime.Module) -> None:
    """Raise ``AbiError`` naming every required export that is missing or mistyped."""
    exports = {e.name: e.type for e in module.exports}
    problems: list[str] = []
    mem = exports.get(EXPORT_MEMORY)
    if not isinstance(mem, wasmtime.MemoryType):
        problems.append(f"export '{EXPORT_MEMORY}' (a memory) is missing")
    for name, (params, results) in REQUIRED_FUNCS.items():
        ty = exports.get(name)
        if ty is None:
            problems.append(f"export '{name}' {_sig(params, results)} is missing")
        elif not isinstance(ty, wasmtime.FuncType):
            problems.append(f"export '{name}' must be a function {_sig(params, results)}")
        elif (_kinds(ty.params), _kinds(ty.results)) != (params, results):
            got = _sig(_kinds(ty.params), _kinds(ty.results))
            problems.append(
                f"export '{name}' has signature {got}, expected {_sig(params, results)}"
            )
    if problems:
        raise AbiError("module does not follow the Nimbus ABI: " + "; ".join(problems))


def check_imports(module: wasmtime.Module, offered: Mapping[tuple[str, str], HostFunction]) -> None:
    """Raise ``DeployError`` listing every import the host does not offer as typed."""
    missing: list[str] = []
    mistyped: list[str] = []
    for imp in module.imports:
        name = f"{imp.module}.{imp.name}"
        hf = offered.get((imp.module, imp.name or ""))
        ty = imp.type
        if hf is None:
            missing.append(name)
        elif not isinstance(ty, wasmtime.FuncType):
            mistyped.append(f"{name} must be a function {hf.signature()}")
        elif (_kinds(ty.params), _kinds(ty.results)) != (hf.params, hf.results):
            got = _sig(_kinds(ty.params), _kinds(ty.results))
            mistyped.append(f"{name} is imported as {got}, the host offers {hf.signature()}")
    problems = []
    if missing:
        problems.append("imports the host does not offer: " + ", ".join(missing))
    if mistyped:
        problems.append("; ".join(mistyped))
    if problems:
        raise DeployError("module refused: " + "; ".join(problems))


def split_result(packed: int) -> tuple[int, int]:
    """``(ptr, len)`` from the i64 that ``nimbus_handle`` and service imports return."""
    packed &= 0xFFFF_FFFF_FFFF_FFFF
    return packed >> 32, packed & 0xFFFF_FFFF
