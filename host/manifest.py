"""The app manifest, ``nimbus.toml``: functions, their limits and grants, routes, triggers.

Like Spin's spin.toml, one file says everything about an app, and capabilities are
granted there, never ambient. Parsed with tomllib into frozen dataclasses; every
mistake becomes a ``ManifestError`` naming the file, the key and what was expected
(several at once where possible), never a traceback.

Schema (all keys optional unless marked)::

    [app]
    name = "shop"

    [functions.NAME]                 # NAME: [a-z][a-z0-9_-]{0,62}
    source = "dir"                   # a function directory, relative to the manifest,
    wasm = "x.wasm"                  #   or a prebuilt module: exactly one of the two
    timeout = "10s"                  # duration ("250ms", "10s", "2m", or seconds)
    memory = "128MiB"                # size ("64KiB", "128MiB", or bytes)
    max_request = "6MiB"
    max_response = "6MiB"
    concurrency = 0                  # concurrent invocations, 0 = unlimited
    idle_ttl = "5m"                  # dropped from memory when unused this long
    env = { KEY = "value" }
    [functions.NAME.grants]          # what the function may reach; nothing by default
    tables = { orders = "read-write", audit = "read" }
    buckets = { uploads = "read" }
    queues = { jobs = "read-write" }
    topics = { "order.*" = "read-write" }   # * = one segment, # = the rest

    [[routes]]
    method = "GET"                   # a method, a list of them, or "*"
    path = "/hello/{name}"           # {param} = one segment, {rest...} = the rest
    function = "hello"               # (required)

    [[triggers.queue]]     queue, function, batch_size, visibility_timeout,
                           max_attempts, backoff = {initial, max, multiplier},
                           dead_letter, concurrency
    [[triggers.schedule]]  name, cron, timezone, function, missed = "latest" | "skip"
    [[triggers.storage]]   bucket, prefix, suffix, events = ["put", "delete"],
                           function, max_attempts, backoff, dead_letter
    [[triggers.event]]     topic, function, max_attempts, backoff, dead_letter

    [workflows.NAME]       kept as given for the orchestrator
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from host.errors import ManifestError
from host.units import format_duration, format_size, parse_duration, parse_size

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
RESOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TOPIC = re.compile(r"^([A-Za-z0-9_-]+|\*|#)(\.([A-Za-z0-9_-]+|\*|#))*$")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MODES = ("read", "read-write")
MiB = 1024 * 1024


class _Errors:
    """Collects mistakes so that a manifest reports all it can in one go."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{self.origin}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ManifestError("\n".join(self.items))


class _Table:
    """Typed reads from one TOML table, remembering which keys were used."""

    def __init__(self, data: Any, where: str, errors: _Errors) -> None:
        self.where, self.errors = where, errors
        if not isinstance(data, dict):
            errors.add(where, f"expected a table, got {type(data).__name__}")
            data = {}
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.where}.{k}" if self.where else k

    def raw(self, k: str) -> Any:
        self.used.add(k)
        return self.data.get(k)

    def string(self, k: str, default: str | None = None, required: bool = False) -> str | None:
        v = self.raw(k)
        if v is None:
            if required:
                self.errors.add(self.key(k), "is required (a string)")
            return default
        if not isinstance(v, str):
            self.errors.add(self.key(k), f"expected a string, got {v!r}")
            return default
        return v

    def integer(self, k: str, default: int, minimum: int = 0) -> int:
        v = self.raw(k)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.errors.add(self.key(k), f"expected an integer >= {minimum}, got {v!r}")
            return default
        return v

    def number(self, k: str, default: float) -> float:
        v = self.raw(k)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            self.errors.add(self.key(k), f"expected a positive number, got {v!r}")
            return default
        return float(v)

    def duration(self, k: str, default: float) -> float:
        v = self.raw(k)
        if v is None:
            return default
        try:
            return parse_duration(v)
        except ValueError as e:
            self.errors.add(self.key(k), str(e))
            return default

    def size(self, k: str, default: int) -> int:
        v = self.raw(k)
        if v is None:
            return default
        try:
            return parse_size(v)
        except ValueError as e:
            self.errors.add(self.key(k), str(e))
            return default

    def str_map(self, k: str) -> dict[str, str]:
        v = self.raw(k)
        if v is None:
            return {}
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            self.errors.add(self.key(k), f"expected a table of strings, got {v!r}")
            return {}
        return dict(v)

    def table(self, k: str) -> _Table:
        v = self.raw(k)
        return _Table({} if v is None else v, self.key(k), self.errors)

    def finish(self) -> None:
        for k in sorted(set(self.data) - self.used):
            self.errors.add(self.key(k), "unknown key")


# --- grants -----------------------------------------------------------------------------


def topic_matches(pattern: str, topic: str) -> bool:
    """``*`` matches one dot-separated segment, ``#`` the rest (zero or more)."""
    pat, parts = pattern.split("."), topic.split(".")
    for i, p in enumerate(pat):
        if p == "#":
            return True
        if i >= len(parts) or (p != "*" and p != parts[i]):
            return False
    return len(parts) == len(pat)


@dataclass(frozen=True)
class Grants:
    """What one function may reach. Modes: "read" or "read-write"."""

    tables: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)

    def allows(self, kind: str, name: str, write: bool) -> bool:
        """May this function read (or write) the ``kind`` ("tables", …) named ``name``?"""
        granted: dict[str, str] = getattr(self, kind)
        if kind == "topics":
            modes = [m for p, m in granted.items() if topic_matches(p, name)]
        else:
            modes = [granted[name]] if name in granted else []
        return any(m == "read-write" or not write for m in modes)

    def to_dict(self) -> dict[str, dict[str, str]]:
        out = {"tables": self.tables, "buckets": self.buckets, "queues": self.queues}
        out["topics"] = self.topics
        return {k: dict(v) for k, v in out.items() if v}


def _grants(t: _Table) -> Grants:
    found: dict[str, dict[str, str]] = {}
    for kind in ("tables", "buckets", "queues", "topics"):
        modes = t.str_map(kind)
        pattern = TOPIC if kind == "topics" else RESOURCE
        for name, mode in modes.items():
            if mode not in MODES:
                t.errors.add(
                    f"{t.key(kind)}.{name}", f"expected 'read' or 'read-write', got {mode!r}"
                )
            if not pattern.match(name):
                t.errors.add(f"{t.key(kind)}.{name}", "is not a valid name")
        found[kind] = modes
    t.finish()
    return Grants(**found)


# --- functions --------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """One function: where its module comes from, its limits, environment and grants."""

    name: str
    source: Path | None = None
    wasm: Path | None = None
    timeout_s: float = 10.0
    memory_bytes: int = 128 * MiB
    max_request_bytes: int = 6 * MiB
    max_response_bytes: int = 6 * MiB
    concurrency: int = 0
    idle_ttl_s: float = 300.0
    env: dict[str, str] = field(default_factory=dict)
    grants: Grants = field(default_factory=Grants)

    def to_dict(self) -> dict[str, Any]:
        """The config in manifest form (what ``function_spec_from_dict`` reads back)."""
        d: dict[str, Any] = {
            "timeout": format_duration(self.timeout_s),
            "memory": format_size(self.memory_bytes),
            "max_request": format_size(self.max_request_bytes),
            "max_response": format_size(self.max_response_bytes),
            "concurrency": self.concurrency,
            "idle_ttl": format_duration(self.idle_ttl_s),
            "env": dict(self.env),
            "grants": self.grants.to_dict(),
        }
        if self.source is not None:
            d["source"] = str(self.source)
        if self.wasm is not None:
            d["wasm"] = str(self.wasm)
        return d


def _function(name: str, t: _Table, base: Path | None) -> FunctionSpec:
    if not NAME.match(name):
        t.errors.add(t.where, f"function name {name!r} must match {NAME.pattern}")
    source, wasm = t.string("source"), t.string("wasm")
    if base is not None and (source is None) == (wasm is None):
        t.errors.add(t.where, "needs exactly one of 'source' (a directory) or 'wasm' (a file)")
    spec = FunctionSpec(
        name=name,
        source=_resolve(base, source),
        wasm=_resolve(base, wasm),
        timeout_s=t.duration("timeout", 10.0),
        memory_bytes=t.size("memory", 128 * MiB),
        max_request_bytes=t.size("max_request", 6 * MiB),
        max_response_bytes=t.size("max_response", 6 * MiB),
        concurrency=t.integer("concurrency", 0),
        idle_ttl_s=t.duration("idle_ttl", 300.0),
        env=t.str_map("env"),
        grants=_grants(t.table("grants")),
    )
    if spec.timeout_s <= 0:
        t.errors.add(t.key("timeout"), "must be more than zero")
    if spec.memory_bytes < 64 * 1024:
        t.errors.add(t.key("memory"), "must be at least 64KiB (one wasm page)")
    t.finish()
    return spec


def _resolve(base: Path | None, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    return (base / p).resolve() if base is not None and not p.is_absolute() else p


def function_spec_from_dict(name: str, data: dict[str, Any], where: str = "config") -> FunctionSpec:
    """A ``FunctionSpec`` from a JSON/TOML mapping (the admin API's deploy config)."""
    errors = _Errors(where)
    spec = _function(name, _Table(data, "", errors), None)
    errors.raise_if_any()
    return spec


# --- routes -----------------------------------------------------------------------------

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}$")


@dataclass(frozen=True)
class Route:
    """An HTTP route: methods ("*" for any), a path pattern, the function it runs."""

    methods: tuple[str, ...]
    path: str
    function: str

    def to_dict(self) -> dict[str, Any]:
        return {"methods": list(self.methods), "path": self.path, "function": self.function}

    def shape(self) -> tuple[str, ...]:
        """The path with parameter names erased: two routes of one shape collide."""
        return tuple(
            ("{}..." if m.group(2) else "{}") if (m := _PARAM.match(seg)) else seg
            for seg in self.path.strip("/").split("/")
        )


def _route(t: _Table) -> Route | None:
    raw = t.raw("methods") if "methods" in t.data else t.raw("method")
    t.used.update({"method", "methods"})
    methods: list[str] = []
    if raw is None:
        methods = ["*"]
    elif isinstance(raw, str):
        methods = [raw.upper()]
    elif isinstance(raw, list) and all(isinstance(m, str) for m in raw):
        methods = [m.upper() for m in raw]
    else:
        t.errors.add(t.key("method"), f"expected a method, a list of methods or '*', got {raw!r}")
    for m in methods:
        if m != "*" and m not in METHODS:
            t.errors.add(t.key("method"), f"{m!r} is not one of {', '.join(METHODS)} or '*'")
    path = t.string("path", required=True) or ""
    function = t.string("function", required=True) or ""
    t.finish()
    if path:
        if not path.startswith("/"):
            t.errors.add(t.key("path"), f"must start with '/', got {path!r}")
        elif path == "/_admin" or path.startswith("/_admin/"):
            t.errors.add(t.key("path"), "/_admin is reserved for the admin API")
        seen: set[str] = set()
        segments = path.strip("/").split("/")
        for i, seg in enumerate(segments):
            if "{" in seg or "}" in seg:
                pm = _PARAM.match(seg)
                if not pm:
                    t.errors.add(
                        t.key("path"), f"{seg!r}: a parameter is a whole segment '{{name}}'"
                    )
                elif pm.group(1) in seen:
                    t.errors.add(t.key("path"), f"parameter {pm.group(1)!r} appears twice")
                elif pm.group(2) and i != len(segments) - 1:
                    t.errors.add(t.key("path"), f"{seg!r} must be the last segment")
                else:
                    seen.add(pm.group(1))
    return Route(tuple(methods), path, function)


def route_from_dict(data: dict[str, Any], where: str = "route") -> Route:
    errors = _Errors(where)
    route = _route(_Table(data, "", errors))
    errors.raise_if_any()
    assert route is not None
    return route


def _check_collisions(routes: list[Route], errors: _Errors) -> None:
    for i, a in enumerate(routes):
        for b in routes[:i]:
            overlap = "*" in a.methods or "*" in b.methods or set(a.methods) & set(b.methods)
            if overlap and a.shape() == b.shape():
                errors.add(
                    f"routes[{i}]",
                    f"{a.path!r} collides with {b.path!r} (same methods, same path shape)",
                )


# --- triggers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Retry delays: ``initial * multiplier**(attempt-1)``, capped at ``max``, jittered."""

    initial_s: float = 1.0
    max_s: float = 300.0
    multiplier: float = 2.0


@dataclass(frozen=True)
class Delivery:
    """Retry and dead-letter policy shared by the delivered trigger kinds."""

    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    dead_letter: str | None = None


@dataclass(frozen=True)
class QueueTrigger:
    queue: str
    function: str
    batch_size: int = 1
    visibility_timeout_s: float = 30.0
    concurrency: int = 1
    delivery: Delivery = field(default_factory=Delivery)


@dataclass(frozen=True)
class ScheduleTrigger:
    name: str
    cron: str
    function: str
    timezone: str = "UTC"
    missed: str = "latest"


@dataclass(frozen=True)
class StorageTrigger:
    bucket: str
    function: str
    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] = ("put", "delete")
    delivery: Delivery = field(default_factory=Delivery)


@dataclass(frozen=True)
class EventTrigger:
    topic: str
    function: str
    delivery: Delivery = field(default_factory=Delivery)


@dataclass(frozen=True)
class Triggers:
    queue: tuple[QueueTrigger, ...] = ()
    schedule: tuple[ScheduleTrigger, ...] = ()
    storage: tuple[StorageTrigger, ...] = ()
    event: tuple[EventTrigger, ...] = ()


def _delivery(t: _Table) -> Delivery:
    b = t.table("backoff")
    backoff = Backoff(
        b.duration("initial", 1.0), b.duration("max", 300.0), b.number("multiplier", 2.0)
    )
    b.finish()
    return Delivery(t.integer("max_attempts", 5, minimum=1), backoff, t.string("dead_letter"))


def _triggers(t: _Table) -> Triggers:
    out: dict[str, list[Any]] = {"queue": [], "schedule": [], "storage": [], "event": []}
    for kind in out:
        items = t.raw(kind) or []
        if not isinstance(items, list):
            t.errors.add(t.key(kind), f"expected an array of tables ([[triggers.{kind}]])")
            continue
        for i, item in enumerate(items):
            s = _Table(item, f"{t.key(kind)}[{i}]", t.errors)
            out[kind].append(_trigger(kind, s))
            s.finish()
    t.finish()
    return Triggers(**{k: tuple(v) for k, v in out.items()})


def _trigger(kind: str, s: _Table) -> Any:
    function = s.string("function", required=True) or ""
    if kind == "queue":
        return QueueTrigger(
            queue=s.string("queue", required=True) or "",
            function=function,
            batch_size=s.integer("batch_size", 1, minimum=1),
            visibility_timeout_s=s.duration("visibility_timeout", 30.0),
            concurrency=s.integer("concurrency", 1, minimum=1),
            delivery=_delivery(s),
        )
    if kind == "schedule":
        trig = ScheduleTrigger(
            name=s.string("name", required=True) or "",
            cron=s.string("cron", required=True) or "",
            function=function,
            timezone=s.string("timezone", "UTC") or "UTC",
            missed=s.string("missed", "latest") or "latest",
        )
        _check_schedule(trig, s)
        return trig
    if kind == "storage":
        events = s.raw("events") or ["put", "delete"]
        if not isinstance(events, list) or not set(events) <= {"put", "delete"} or not events:
            s.errors.add(s.key("events"), f"expected a list of 'put' and 'delete', got {events!r}")
            events = ["put", "delete"]
        return StorageTrigger(
            bucket=s.string("bucket", required=True) or "",
            function=function,
            prefix=s.string("prefix", "") or "",
            suffix=s.string("suffix", "") or "",
            events=tuple(events),
            delivery=_delivery(s),
        )
    topic = s.string("topic", required=True) or ""
    if topic and not TOPIC.match(topic):
        s.errors.add(s.key("topic"), f"{topic!r} is not a topic or pattern like 'order.*'")
    return EventTrigger(topic=topic, function=function, delivery=_delivery(s))


def _check_schedule(trig: ScheduleTrigger, s: _Table) -> None:
    from croniter import croniter

    if trig.cron and not croniter.is_valid(trig.cron):
        s.errors.add(s.key("cron"), f"{trig.cron!r} is not a valid cron expression")
    try:
        ZoneInfo(trig.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        s.errors.add(s.key("timezone"), f"{trig.timezone!r} is not a known time zone")
    if trig.missed not in ("latest", "skip"):
        s.errors.add(s.key("missed"), f"expected 'latest' or 'skip', got {trig.missed!r}")


# --- the manifest -----------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """A whole app: its functions, routes, triggers and (opaque for now) workflows."""

    name: str
    path: Path
    functions: dict[str, FunctionSpec]
    routes: tuple[Route, ...] = ()
    triggers: Triggers = field(default_factory=Triggers)
    workflows: dict[str, Any] = field(default_factory=dict)
    #: the ``[triggers]`` table as written, kept so a deployment can store and re-read it
    triggers_raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_manifest(path: Path) -> Manifest:
    """Parse and validate ``nimbus.toml`` (``path`` is the file or its directory)."""
    path = path.resolve()
    if path.is_dir():
        path = path / "nimbus.toml"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file (an app needs a nimbus.toml)") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML: {e}") from None
    return parse_manifest(data, path)


def parse_manifest(data: dict[str, Any], path: Path) -> Manifest:
    errors = _Errors(str(path))
    top = _Table(data, "", errors)
    app = top.table("app")
    name = app.string("name", path.parent.name) or path.parent.name
    app.finish()
    fns = top.table("functions")
    functions = {n: _function(n, fns.table(n), path.parent) for n in list(fns.data)}
    fns.finish()
    raw_routes = top.raw("routes") or []
    routes: list[Route] = []
    if not isinstance(raw_routes, list):
        errors.add("routes", "expected an array of tables ([[routes]])")
        raw_routes = []
    for i, r in enumerate(raw_routes):
        route = _route(_Table(r, f"routes[{i}]", errors))
        if route is not None:
            routes.append(route)
            if route.function and route.function not in functions:
                errors.add(f"routes[{i}].function", f"names no function: {route.function!r}")
    _check_collisions(routes, errors)
    triggers_raw = top.data.get("triggers") or {}
    triggers = _triggers(top.table("triggers"))
    for kind in ("queue", "schedule", "storage", "event"):
        for i, trig in enumerate(getattr(triggers, kind)):
            if trig.function and trig.function not in functions:
                errors.add(
                    f"triggers.{kind}[{i}].function", f"names no function: {trig.function!r}"
                )
    workflows = top.raw("workflows") or {}
    if not isinstance(workflows, dict):
        errors.add("workflows", "expected a table of workflows")
        workflows = {}
    top.finish()
    errors.raise_if_any()
    return Manifest(
        name, path, functions, tuple(routes), triggers, dict(workflows), dict(triggers_raw)
    )


def triggers_from_dict(data: dict[str, Any], where: str = "triggers") -> Triggers:
    """The ``[triggers]`` table of a manifest, validated (as stored by a deployment)."""
    errors = _Errors(where)
    triggers = _triggers(_Table(data, "triggers", errors))
    errors.raise_if_any()
    return triggers
