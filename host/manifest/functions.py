"""A function's section of nimbus.toml: its source or module, limits, env and grants.

``function_spec_from_dict`` applies the same rules to a JSON config (the admin API's
deploy, the registry's stored deployments); a spec's ``to_dict()`` is what it reads back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from host.common.units import format_duration, format_size
from host.manifest.config_table import ConfigTable, Problems, quote_key
from host.manifest.grants import KINDS, MODES, RESOURCE, Grants, is_topic_pattern
from host.manifest.outbound import SECRET_NAME, OutboundPolicy, parse_allowed_host
from host.manifest.variables import expand

FUNCTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
NAME = FUNCTION_NAME  # the name this pattern had first
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
#: the most a wasm32 linear memory can hold
MAX_MEMORY = 4 * GiB
#: the largest module a deploy accepts, checked on the bytes uploaded (admin API, CLI,
#: platform)
MAX_MODULE_BYTES = 64 * MiB
#: the default cap on one outbound response's body (``max_outbound_response``)
MAX_OUTBOUND_RESPONSE = 4 * MiB


class FunctionSpec(Struct, frozen=True):
    """One function: where its module comes from, its limits, environment and grants."""

    name: str
    source: Path | None = None
    wasm: Path | None = None
    timeout_s: float = 10.0
    memory_bytes: int = 128 * MiB
    max_request_bytes: int = 6 * MiB
    max_response_bytes: int = 6 * MiB
    #: invocations of the function running at once in one worker (0: unlimited); one
    #: over it waits up to ``max_concurrency_wait_s`` for a slot, then is ``Throttled``
    max_concurrency: int = 0
    max_concurrency_wait_s: float = 1.0
    #: > 0: its module and instance template stay loaded (and pre-touched) whatever
    #: the idle sweep finds, so no request pays a load (a worker keeps one template)
    min_warm: int = 0
    #: unused this long, it is unloaded (scale to zero; not while ``min_warm``)
    idle_ttl_s: float = 300.0
    #: per-invocation budgets (guest_sdk/ABI.md, "Limits"): log bytes and lines kept,
    #: bytes and operations staged for the commit
    max_log_bytes: int = 256 * KiB
    max_log_lines: int = 1000
    max_staged_bytes: int = 80 * MiB
    max_staged_ops: int = 1000
    env: dict[str, str] = field(default_factory=dict)
    grants: Grants = field(default_factory=Grants)
    #: ``allowed_outbound_hosts``: what ``http_fetch`` may reach (nothing by default)
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    max_outbound_response: int = MAX_OUTBOUND_RESPONSE
    #: names of the secrets ``secret_get`` may read
    secrets: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The config in manifest form (what ``function_spec_from_dict`` reads back)."""
        d: dict[str, Any] = {
            "timeout": format_duration(self.timeout_s),
            "memory": format_size(self.memory_bytes),
            "max_request": format_size(self.max_request_bytes),
            "max_response": format_size(self.max_response_bytes),
            "max_concurrency": self.max_concurrency,
            "max_concurrency_wait": format_duration(self.max_concurrency_wait_s),
            "min_warm": self.min_warm,
            "idle_ttl": format_duration(self.idle_ttl_s),
            "max_log": format_size(self.max_log_bytes),
            "max_log_lines": self.max_log_lines,
            "max_staged": format_size(self.max_staged_bytes),
            "max_staged_ops": self.max_staged_ops,
            "env": dict(self.env),
            "grants": self.grants.to_dict(),
            "allowed_outbound_hosts": [str(e) for e in self.outbound.entries],
            "max_outbound_response": format_size(self.max_outbound_response),
            "secrets": list(self.secrets),
        }
        if self.source is not None:
            d["source"] = str(self.source)
        if self.wasm is not None:
            d["wasm"] = str(self.wasm)
        return d


def function_spec_from_dict(name: str, data: dict[str, Any], where: str = "config") -> FunctionSpec:
    """A ``FunctionSpec`` from a JSON/TOML mapping (the admin API's deploy config).

    The keys are those of a ``[functions.NAME]`` table; ``source``/``wasm`` are
    optional and kept as given (there is no manifest directory to resolve them against;
    the module comes with the deploy). Raises ``ManifestError`` naming ``where`` and
    each key that is wrong.
    """
    problems = Problems(where)
    spec = read_function(name, ConfigTable(data, "", problems), None)
    problems.raise_if_any()
    return spec


def _max_concurrency(t: ConfigTable) -> int:
    """``max_concurrency``, or ``concurrency`` (its older name, still read)."""
    value = t.integer("max_concurrency", 0)
    if t.has("concurrency"):
        if t.has("max_concurrency"):
            t.error("concurrency", "the older name of max_concurrency: give only max_concurrency")
        value = t.integer("concurrency", 0)
    return value


def read_function(name: str, t: ConfigTable, base: Path | None) -> FunctionSpec:
    if not FUNCTION_NAME.match(name):
        t.problems.add(
            t.where or "name",
            f"function name {name!r} must match {FUNCTION_NAME.pattern} "
            "(letters, digits, '_', '-', starting with a letter)",
        )
    source, wasm = _module_location(t, base)
    spec = FunctionSpec(
        name=name,
        source=source,
        wasm=wasm,
        timeout_s=t.duration("timeout", 10.0, positive=True),
        memory_bytes=_memory(t),
        max_request_bytes=t.size("max_request", 6 * MiB, positive=True),
        max_response_bytes=t.size("max_response", 6 * MiB, positive=True),
        max_concurrency=_max_concurrency(t),
        max_concurrency_wait_s=t.duration("max_concurrency_wait", 1.0),
        min_warm=t.integer("min_warm", 0),
        idle_ttl_s=t.duration("idle_ttl", 300.0),
        max_log_bytes=t.size("max_log", 256 * KiB, positive=True),
        max_log_lines=t.integer("max_log_lines", 1000, minimum=1),
        max_staged_bytes=t.size("max_staged", 80 * MiB, positive=True),
        max_staged_ops=t.integer("max_staged_ops", 1000, minimum=1),
        env=_env(t, expand_variables=base is not None),
        grants=_grants(t.table("grants")),
        outbound=_outbound(t, expand_variables=base is not None),
        max_outbound_response=t.size("max_outbound_response", MAX_OUTBOUND_RESPONSE, True),
        secrets=_secrets(t),
    )
    t.finish()
    return spec


def _module_location(t: ConfigTable, base: Path | None) -> tuple[Path | None, Path | None]:
    """``source`` and ``wasm``: exactly one in a manifest, resolved against its directory
    and checked to exist; in a config dict, optional and kept as given (the module
    itself comes with the request)."""
    source, wasm = (
        t.string("source", required=t.has("source")),
        t.string("wasm", required=t.has("wasm")),
    )
    if base is None:  # a config dict: where the module came from is only recorded
        return (Path(source) if source else None), (Path(wasm) if wasm else None)
    if source is not None and wasm is not None:
        t.problems.add(t.where, "has both 'source' and 'wasm'; give exactly one of the two")
        return None, None
    if source is None and wasm is None:
        t.problems.add(
            t.where, "needs 'source' (a function directory) or 'wasm' (a prebuilt module)"
        )
        return None, None
    src_path = _resolve(base, source)
    wasm_path = _resolve(base, wasm)
    if src_path is not None and source and not src_path.is_dir():
        t.error("source", f"no such directory: {src_path} (relative to the manifest's directory)")
    if wasm_path is not None and wasm and not wasm_path.is_file():
        t.error("wasm", f"no such file: {wasm_path} (relative to the manifest's directory)")
    return src_path, wasm_path


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _memory(t: ConfigTable) -> int:
    memory = t.size("memory", 128 * MiB)
    if not 64 * KiB <= memory <= MAX_MEMORY:
        t.error("memory", f"expected 64KiB (one wasm page) to 4GiB, got {t.data['memory']!r}")
        return 128 * MiB
    return memory


def _env(t: ConfigTable, expand_variables: bool) -> dict[str, str]:
    env = t.str_map("env")
    for k, v in env.items():
        if not ENV_NAME.match(k):
            t.error("env", f"{k!r} is not an environment variable name ({ENV_NAME.pattern})")
        elif expand_variables:
            try:
                env[k] = expand(v)
            except ValueError as e:
                t.problems.add(f"{t.key('env')}.{quote_key(k)}", str(e))
    return env


def _strings(t: ConfigTable, k: str, example: str) -> list[str]:
    v = t.raw(k)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        t.error(k, f"expected an array of strings, e.g. {k} = [{example}]")
        return []
    return list(v)


def _outbound(t: ConfigTable, expand_variables: bool) -> OutboundPolicy:
    entries = []
    for text in _strings(t, "allowed_outbound_hosts", '"https://api.example.com"'):
        try:
            entries.append(parse_allowed_host(expand(text) if expand_variables else text))
        except ValueError as e:
            t.error("allowed_outbound_hosts", str(e))
    return OutboundPolicy(tuple(entries))


def _secrets(t: ConfigTable) -> tuple[str, ...]:
    names = _strings(t, "secrets", '"PAYMENT_API_KEY"')
    for name in names:
        if not SECRET_NAME.match(name):
            t.error("secrets", f"{name!r} is not a secret name ({SECRET_NAME.pattern})")
    return tuple(names)


def _grants(t: ConfigTable) -> Grants:
    found: dict[str, dict[str, str]] = {}
    for kind in KINDS:
        modes = t.str_map(kind)
        sub = t.key(kind)
        for name, mode in modes.items():
            where = f"{sub}.{quote_key(name)}"
            if mode not in MODES:
                t.problems.add(where, f"expected a mode 'read' or 'read-write', got {mode!r}")
            if kind == "topics":
                if not is_topic_pattern(name):
                    t.problems.add(
                        where,
                        "is not a topic pattern: dot-separated words, '*' for one segment, "
                        "'#' (last) for the rest, e.g. 'order.*'",
                    )
            elif not RESOURCE.match(name):
                t.problems.add(
                    where,
                    f"is not a valid {kind[:-1]} name (letters, digits, '_', '.', '-', "
                    "starting with a letter or digit, at most 128)",
                )
        found[kind] = modes
    t.finish()
    return Grants(**found)
