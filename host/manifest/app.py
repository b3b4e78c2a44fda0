"""The app manifest, ``nimbus.toml``: functions, their limits and grants, routes, triggers.

Like Spin's spin.toml, one file says everything about an app, and capabilities are
granted there, never ambient. Parsed with tomllib into frozen msgspec Structs; every
mistake becomes one ``ManifestError`` listing each problem with the file, the key path
and what was expected, never a traceback.

Schema (every key optional unless marked *required*)::

    [app]
    name = "shop"                    # default: the manifest's directory name

    [functions.NAME]                 # NAME: [A-Za-z][A-Za-z0-9_-]{0,62}
    source = "hello"                 # a function directory, relative to the manifest,
    wasm = "dist/hello.wasm"         #   or a prebuilt module: exactly one of the two
    timeout = "10s"                  # duration: "250ms", "10s", "1m30s" or seconds (10s)
    memory = "128MiB"                # size: "64KiB", "128MiB", "1GiB" or bytes (128MiB;
                                     #   64KiB to 4GiB, the reach of wasm32)
    max_request = "6MiB"             # largest event the function accepts (6MiB)
    max_response = "6MiB"            # largest response it may return (6MiB)
    max_concurrency = 0              # invocations at once per worker, 0 = unlimited (0;
                                     #   older name: concurrency)
    max_concurrency_wait = "1s"      # how long one over it waits, then 429 Throttled (1s)
    min_warm = 0                     # > 0: kept loaded and pre-touched, never idle (0)
    idle_ttl = "5m"                  # dropped from memory when unused this long (5m)
    max_log = "256KiB"               # log bytes kept per invocation, then one
    max_log_lines = 1000             #   "log truncated: N lines dropped" line (1000)
    max_staged = "80MiB"             # bytes one invocation may write (80MiB), then the
    max_staged_ops = 1000            #   guest gets too_large; write operations (1000)
    env = { GREETING = "hi" }        # names [A-Za-z_][A-Za-z0-9_]*, string values;
                                     #   values and outbound hosts may use ${VAR} or
                                     #   ${VAR:-default} (variables.py)
    allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:9000"]
                                     # http_fetch may reach only these (none by default;
                                     #   see host/manifest/outbound.py)
    max_outbound_response = "4MiB"   # body cap of one outbound response (4MiB)
    secrets = ["PAYMENT_API_KEY"]    # secrets secret_get may read (nimbus secrets set)
    [functions.NAME.grants]          # what the function may reach; nothing by default
    tables = { orders = "read-write", audit = "read" }
    buckets = { uploads = "read" }
    queues = { jobs = "read-write" } # read-write = may send
    topics = { "order.*" = "read-write" }   # publish; * = one segment, # = the rest

    [[routes]]
    method = "GET"                   # a method, a list of them, or "*" (default "*");
                                     #   "methods" is accepted as a synonym
    path = "/hello/{name}"           # *required*; {param} = one whole segment,
                                     #   {rest...} = the rest (last segment only)
    function = "hello"               # *required*

    policies = ["NAME"]              # gateway policies (default: [gateway] default_policies)

    [gateway]                        # API keys, JWT, authorizers, rate limits, quotas,
    default_policies = []            #   transforms, CORS: see ``host/manifest/gateway.py``
    [gateway.policies.NAME]

    [[triggers.queue]]     queue*, function*, batch_size (1), visibility_timeout (30s),
                           concurrency (1), max_attempts (5),
                           backoff = { initial = "1s", max = "5m", multiplier = 2.0 },
                           dead_letter (default "<queue>.dlq")
    [[triggers.schedule]]  name*, cron*, function*, timezone ("UTC"),
                           missed = "latest" (run once for the latest missed time) | "skip",
                           visibility_timeout (30s)
    [[triggers.storage]]   bucket*, function*, prefix (""), suffix (""),
                           events (["put", "delete"]), max_attempts, backoff, dead_letter,
                           visibility_timeout (30s)
    [[triggers.event]]     topic* (a pattern), function*, max_attempts, backoff, dead_letter,
                           visibility_timeout (30s)

    [tables.NAME]          indexes = { processedAt = "int" }: secondary indexes for
                           kv_query, types int | string | bytes (see ``tables``)

    [workflows.NAME]       a table per workflow, kept as written for the orchestrator

    [billing]              currency ("USD"), per_million_requests (0.20),
                           per_gb_second (0.0000166667), per_gb_out (0.09):
                           AWS Lambda's published x86 prices (see ``billing.py``)

Names: functions match ``FUNCTION_NAME``; tables, buckets, queues, dead letters and
schedules match ``RESOURCE`` (letters, digits, ``_ . -``, at most 128); topics are
dot-separated words, and in grants and event triggers a segment may be ``*`` or (last)
``#``. Checks across the file: a route or trigger naming no function, two routes that
collide (a method both accept and the same path shape: ``/a/{x}`` and ``/a/{y}``),
``/_admin`` or ``/_console`` (reserved), two schedules of one name.

``function_spec_from_dict``, ``route_from_dict`` (``routes_from_list`` for a whole
table) and ``triggers_from_dict`` apply the same rules to a JSON config (the admin
API's deploy, the registry's stored deployments): a spec's ``to_dict()`` is what they
read back.

This module holds functions and the manifest as a whole; routes, triggers, grants and
the typed TOML reading live in ``routes``, ``triggers``, ``grants`` and
``config_table``, functions in ``functions``, durations and sizes in ``common.units``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from host.errors import ManifestError
from host.manifest.billing import Prices, read_billing
from host.manifest.config_table import ConfigTable, Problems, quote_key
from host.manifest.functions import FunctionSpec, read_function
from host.manifest.gateway import GatewayConfig, check_chain, read_gateway, unknown_policy
from host.manifest.grants import (
    RESOURCE,
)
from host.manifest.routes import (
    Route,
    check_collisions,
    read_route,
)
from host.manifest.tables import TableSpec, read_tables
from host.manifest.triggers import (
    Triggers,
    read_triggers,
)

# --- the manifest -----------------------------------------------------------------------


class Manifest(Struct, frozen=True):
    """A whole app: its functions, routes, triggers and (opaque for now) workflows."""

    name: str
    #: the manifest file, absolute
    path: Path
    functions: dict[str, FunctionSpec]
    routes: tuple[Route, ...] = ()
    triggers: Triggers = field(default_factory=Triggers)
    workflows: dict[str, Any] = field(default_factory=dict)
    #: the ``[triggers]`` table as written, kept so a deployment can store and re-read it
    triggers_raw: dict[str, Any] = field(default_factory=dict)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    #: the price table usage is billed at
    billing: Prices = field(default_factory=Prices)
    #: tables that declare indexes (``[tables.NAME]``)
    tables: dict[str, TableSpec] = field(default_factory=dict)
    #: ``[app] store``: "" (LMDB in the data dir) or a PostgreSQL URL shared by hosts
    store: str = ""

    @property
    def base_dir(self) -> Path:
        """The directory that relative ``source`` and ``wasm`` paths start from."""
        return self.path.parent


def load_manifest(path: Path) -> Manifest:
    """Parse and validate ``nimbus.toml`` (``path`` is the file or its directory)."""
    path = Path(path).resolve()
    if path.is_dir():
        path = path / "nimbus.toml"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file (an app needs a nimbus.toml)") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot be read: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid TOML: {e}") from None
    return parse_manifest(data, path)


def parse_manifest(data: dict[str, Any], path: Path) -> Manifest:
    """Validate an already parsed manifest; ``path`` names it and anchors relative paths."""
    problems = Problems(str(path))
    top = ConfigTable(data, "", problems)
    name, store = _app(top.table("app"), path)

    fns = top.table("functions")
    functions = {n: read_function(n, fns.table(n), path.parent) for n in list(fns.data)}
    fns.finish()

    routes: list[tuple[str, Route]] = []
    for t in top.tables("routes", "[[routes]]"):
        route = read_route(t)
        routes.append((t.where, route))
        if route.function and route.function not in functions:
            t.error("function", _no_function(route.function, functions))
    check_collisions(routes, problems)
    gateway = read_gateway(top.table("gateway"), path.parent)
    _check_policies(gateway, routes, functions, problems)

    triggers_raw = top.data.get("triggers")
    triggers = read_triggers(top.table("triggers"))
    for kind in ("queue", "schedule", "storage", "event"):
        for i, trig in enumerate(getattr(triggers, kind)):
            if trig.function and trig.function not in functions:
                problems.add(
                    f"triggers.{kind}[{i}].function", _no_function(trig.function, functions)
                )

    billing = read_billing(top.table("billing"))
    tables = read_tables(top.table("tables"))
    workflows = _workflows(top)
    _check_workflows(workflows, set(functions), routes, triggers, top)
    top.finish()
    problems.raise_if_any()
    return Manifest(
        name,
        path,
        functions,
        tuple(r for _, r in routes),
        triggers,
        workflows,
        dict(triggers_raw) if isinstance(triggers_raw, dict) else {},
        gateway,
        billing=billing,
        tables=tables,
        store=store,
    )


def _check_policies(
    gateway: GatewayConfig,
    routes: list[tuple[str, Route]],
    functions: dict[str, FunctionSpec],
    problems: Problems,
) -> None:
    """Routes name defined policies, and authorizers name defined functions."""
    for where, route in routes:
        for n in route.policies or ():
            if n not in gateway.policies:
                problems.add(f"{where}.policies", unknown_policy(n, gateway.policies))
        if route.policies:
            check_chain(route.policies, gateway.policies, problems, f"{where}.policies")
    for name, policy in gateway.policies.items():
        if policy.authorizer and policy.authorizer.function not in functions:
            problems.add(
                f"gateway.policies.{quote_key(name)}.authorizer.function",
                _no_function(policy.authorizer.function, functions),
            )


def _app(app: ConfigTable, path: Path) -> tuple[str, str]:
    """The app's name and its ``store`` setting."""
    name = app.string("name", required=app.has("name"))
    store = app.string("store", required=False) or ""
    app.finish()
    if store not in ("", "lmdb") and not store.startswith(("postgresql://", "postgres://")):
        app.error(
            "store",
            f'{store!r} is not a store: use "lmdb" (the default) or a PostgreSQL URL '
            "(postgresql://user@host:5432/db; keep a password out of the file: NIMBUS_STORE)",
        )
    if name is None:
        return path.parent.name, store
    if name and not RESOURCE.match(name):
        app.error("name", f"{name!r} is not a valid app name (letters, digits, '_', '.', '-')")
    return name, store


def _no_function(name: str, functions: dict[str, FunctionSpec]) -> str:
    known = ", ".join(functions) or "none are defined"
    return f"names no function: {name!r} (functions: {known})"


def _check_workflows(
    workflows: dict[str, Any],
    functions: set[str],
    routes: list[tuple[str, Route]],
    triggers: Triggers,
    top: ConfigTable,
) -> None:
    """Workflow definitions are valid, and routes and triggers start only known ones."""
    from host.manifest.workflows import parse_workflows

    try:
        parse_workflows(workflows, functions, where=top.problems.origin)
    except ManifestError as e:
        for line in str(e).splitlines():
            if line.strip() and not line.endswith("problems:"):
                top.problems.items.append(line.strip())
    for where, route in routes:
        if route.workflow and route.workflow not in workflows:
            top.problems.add(f"{where}.workflow", f"names no workflow: {route.workflow!r}")
    for kind in ("queue", "schedule", "storage", "event"):
        for i, trig in enumerate(getattr(triggers, kind)):
            if trig.workflow and trig.workflow not in workflows:
                top.problems.add(
                    f"triggers.{kind}[{i}].workflow", f"names no workflow: {trig.workflow!r}"
                )


def _workflows(top: ConfigTable) -> dict[str, Any]:
    raw = top.raw("workflows")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        top.error("workflows", "expected a table of workflows ([workflows.NAME])")
        return {}
    for name, body in raw.items():
        if not isinstance(body, dict):
            top.problems.add(f"workflows.{quote_key(name)}", "expected a table ([workflows.NAME])")
    return dict(raw)
