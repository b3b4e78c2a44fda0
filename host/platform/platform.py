"""Wires the parts together, and holds the one invoke path every trigger goes through.

``Platform`` owns the engine (through the runtime), the LMDB environment (through the
services), the function registry, the warm pool and the telemetry. Nothing else in
Nimbus holds global state: tests build a ``Platform`` on a temporary directory.

``Platform.execute`` (and ``invoke``, its shorthand for a plain request) is the only
way a function runs: the gateway, the triggers and the orchestrator all describe
their call as an ``InvocationRequest`` (``request.py``), so limits, grants, effects,
logs and records hold whatever started the call.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from msgspec import Struct, field

from host.common import python_bundle
from host.errors import (
    AbiError,
    DeployError,
    FunctionFailed,
    FunctionTimeout,
    NimbusError,
    PayloadTooLarge,
    Throttled,
)
from host.hostcalls.catalog import all_host_functions
from host.hostcalls.context import ServiceAccess
from host.hostcalls.fetcher import Fetcher
from host.hostcalls.http import OutboundAccess, stable_event_id
from host.hostcalls.secrets import SecretAccess
from host.manifest.functions import MAX_MODULE_BYTES, FunctionSpec
from host.platform.call import Call
from host.platform.python_runtime import runtime_wasm
from host.platform.registry import Deployment, Registry
from host.platform.request import CommitDeclined, InvocationRequest
from host.platform.slots import Slots
from host.runtime.invocation import Invocation, LogLine
from host.runtime.limits import Limits
from host.runtime.loaded import LoadedFunction
from host.runtime.pool import WarmPool
from host.runtime.runtime import Runtime
from host.services.blobs import MAX_OBJECT_BYTES
from host.services.factory import STORE_ENV, open_services
from host.services.secrets import KEY_FILE, KEY_FILE_ENV
from host.services.usage import FLUSH_INTERVAL_S
from host.telemetry.records import Telemetry
from host.telemetry.tracing import Tracing, ended

log = logging.getLogger("nimbus.platform")

#: how often idle functions are looked for (scale to zero)
SWEEP_INTERVAL_S = 1.0


class OverBudget(Exception):
    """An invocation ran past the budget its caller gave it (shorter than the
    function's own time limit): not an outcome, nothing was kept or recorded, and the
    caller runs it again without the budget."""


class InvocationResult(Struct):
    """What one successful invocation produced, and how it ran."""

    request_id: str
    function: str
    version: int
    response: dict[str, Any]
    logs: list[LogLine]
    cold: bool
    duration_ms: float
    #: False when the event's id had been committed before: its effects were not re-applied
    applied: bool = True
    #: its writes, described, when the request asked (``describe_effects``: a local run)
    effects: list[dict[str, Any]] | None = None
    #: whether it committed writes (its run then included a durable commit's wait)
    wrote: bool = False


class PlatformOptions(Struct):
    """Knobs of one platform instance (the CLI sets them; tests shrink them)."""

    initial_map_size: int = 64 * 1024 * 1024
    max_object_bytes: int = MAX_OBJECT_BYTES
    sweep_interval_s: float = SWEEP_INTERVAL_S
    #: > 1 makes the engine's time limits pass faster than real time (tests only)
    time_scale: float = 1.0
    #: record a usage entry per invocation (``NIMBUS_METERING=off`` only for benchmarks)
    metering: bool = field(default_factory=lambda: os.environ.get("NIMBUS_METERING") != "off")
    #: the services' store: "" (LMDB in the data dir) or a PostgreSQL URL shared by
    #: hosts (``NIMBUS_STORE``; ``nimbus up --store`` and ``[app] store`` set it)
    store: str = field(default_factory=lambda: os.environ.get(STORE_ENV, ""))
    #: the secrets key file ("": the data dir's ``secrets.key``); every host of a
    #: PostgreSQL store needs the same file (``NIMBUS_SECRETS_KEY_FILE``, ``--secrets-key``)
    secrets_key_file: str = field(default_factory=lambda: os.environ.get(KEY_FILE_ENV, ""))
    #: the PostgreSQL schema the services live in ("": the URL's search path)
    store_schema: str = ""
    #: where spans go (tests: an in-memory exporter); None: OTLP if the environment
    #: names an endpoint, else tracing is off (host/telemetry/tracing.py)
    span_exporter: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class Platform:
    """One Nimbus host process's view of its data directory."""

    def __init__(self, data_dir: Path, options: PlatformOptions | None = None) -> None:
        self.options = options or PlatformOptions()
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.services = open_services(
            self.options.store,
            self.data_dir / "db",
            map_size=self.options.initial_map_size,
            max_object_bytes=self.options.max_object_bytes,
            schema=self.options.store_schema,
        )
        self.runtime = Runtime(
            self.data_dir / "cache",
            all_host_functions(),
            time_scale=self.options.time_scale,
            python_runtime=runtime_wasm,
        )
        self.registry = Registry(self.services.deployments, self.data_dir / "modules")
        self.hosts = self.services.hosts
        #: this process's name on its leases; a restarted host takes back a dead one's
        self.incarnation = self.hosts.register()
        key_file = self.options.secrets_key_file
        self.secrets = self.services.open_secrets(
            Path(key_file) if key_file else self.data_dir / KEY_FILE
        )
        #: outbound HTTP of every invocation (one connection pool per process)
        self.fetcher = Fetcher()
        self.pool = WarmPool()
        self.telemetry = Telemetry()
        self.tracing = Tracing(self.options.span_exporter)
        self.slots = Slots()
        #: the deployments with ``min_warm``, as of a registry generation
        self._warm: list[Deployment] = []
        self._warm_generation = -1
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="nimbus-sweep", daemon=True)
        self._sweeper.start()
        self._flusher = threading.Thread(target=self._flush, name="nimbus-usage", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        self._stop.set()
        self._sweeper.join(timeout=2)
        self.hosts.unregister(self.incarnation)
        self._flusher.join(timeout=2)
        self.services.usage.flush()
        self.runtime.close()
        self.fetcher.close()
        self.tracing.close()
        self.services.close()

    # --- deployments -----------------------------------------------------------------

    def deploy(self, spec: FunctionSpec, wasm: bytes) -> Deployment:
        """Validate and compile ``wasm`` first; only then make it the serving version."""
        if len(wasm) > MAX_MODULE_BYTES:
            raise PayloadTooLarge(
                f"module is {len(wasm)} bytes; a deploy accepts at most {MAX_MODULE_BYTES}"
            )
        if not wasm:
            raise DeployError("module is empty (0 bytes); upload the .wasm that the build made")
        try:
            self.runtime.load(spec.name, wasm, _limits(spec))
        except AbiError as e:  # a missing or mistyped export: the deployer's to fix
            raise DeployError(str(e)) from None
        dep = self.registry.put(spec, wasm)
        self.pool.drop(f"{spec.name}@")
        return dep

    def load_python(self) -> None:
        """Start the shared Python runtime and load every deployed Python function,
        so that no request pays for them. A server does this on a thread of its own
        from the start of its lifespan, just before it listens: the work is mostly the
        checksum's and wasmtime's, outside the GIL, so requests served meanwhile barely
        wait for it. A request that comes first loads what it needs itself (or waits for
        this load of it)."""
        for dep in self.registry.list():
            head = self.registry.wasm(dep, python_bundle.HEAD_BYTES)
            if python_bundle.is_python_bundle(head):
                try:
                    self.pool.get(dep.key, functools.partial(self._load, dep), _ttl(dep.spec))
                except NimbusError as e:
                    log.warning("could not prepare %s: %s", dep.key, e)

    def prepare(self) -> None:
        """Once serving, off the request path (a server's start-up thread): make the
        metrics and load the Python functions (``load_python``, if nothing has), then
        keep ``min_warm`` ones warm."""
        self.telemetry.metrics()
        self.load_python()
        self.keep_warm()

    def keep_warm(self) -> list[str]:
        """Load and pre-touch every function with ``min_warm`` that is not in the warm
        pool (the sweeper calls it each round, so a redeploy is warm again within one);
        the keys loaded."""
        generation = self.registry.generation()
        if generation != self._warm_generation:  # the deployments changed: list again
            self._warm = [d for d in self.registry.list() if d.spec.min_warm]
            self._warm_generation = generation
        loaded = []
        for dep in self._warm:
            if dep.key not in self.pool:
                try:
                    fn = self._load(dep)
                except NimbusError as e:
                    log.warning("could not keep %s warm: %s", dep.key, e)
                    continue
                self.runtime.touch(fn)
                self.pool.put(dep.key, fn, _ttl(dep.spec))
                loaded.append(dep.key)
        return loaded

    def remove(self, name: str) -> None:
        self.registry.delete(name)
        self.pool.drop(f"{name}@")

    # --- the invoke path -------------------------------------------------------------

    def invoke(
        self, function: str, event: dict[str, Any], *, request_id: str | None = None
    ) -> InvocationResult:
        """Run ``function`` on ``event``: ``execute`` of the plain request."""
        return self.execute(InvocationRequest(function, event, request_id=request_id))

    def execute(
        self, request: InvocationRequest, dep: Deployment | None = None
    ) -> InvocationResult:
        """Run ``request.function`` on ``request.event`` (an ABI envelope without the
        common fields); ``dep``, its current deployment when the caller has just looked
        it up (the gateway's direct answers: one lookup a request).

        The function's effects are committed, with the request's commit hook's work in
        the same transaction, only if it returns a response without ``error``. With
        idempotency ids that were committed before, nothing is applied twice.
        """
        if dep is None:
            dep = self.registry.get(request.function)
        return self._run(dep, lambda: self._load(dep), request)

    def invoke_module(
        self, spec: FunctionSpec, wasm: bytes, event: dict[str, Any], commit: bool = True
    ) -> InvocationResult:
        """Run a module that is not deployed (``nimbus invoke DIR``), through the same
        path as a deployed one: same limits, grants, effects and records. The result
        describes its writes; with ``commit=False`` they are dropped, not applied."""
        sha = hashlib.sha256(wasm).hexdigest()
        dep = Deployment(spec, version=0, sha256=sha, deployed_ms=int(time.time() * 1000))
        self.pool.drop(dep.key)

        def load() -> LoadedFunction:
            return self.runtime.load(spec.name, wasm, _limits(spec))

        request = InvocationRequest(spec.name, event, dry_run=not commit, describe_effects=True)
        return self._run(dep, load, request)

    def _run(
        self, dep: Deployment, load: Callable[[], LoadedFunction], request: InvocationRequest
    ) -> InvocationResult:
        """One invocation with its outcome recorded (unless it ran past a budget)."""
        call = Call(dep, request)
        traced = None
        if self.tracing.tracer is not None:  # off: no span object is made
            traced = self.tracing.invocation(dep.name, call.trigger, call.request_id, request.event)
            span = traced.__enter__()
            call.inv.spans = self.tracing.span
        try:
            response, applied = self._call(dep, load, request, call)
        except FunctionTimeout as e:
            if call.budgeted:  # past the caller's budget, not the function's limit
                call.recorded = False
                raise OverBudget(dep.name) from None
            call.outcome, call.error = e.kind, str(e)
            raise
        except Throttled as e:
            if request.budget_s is not None:  # an inline try: the caller waits in a thread
                call.recorded = False
            call.outcome, call.error = e.kind, str(e)
            raise
        except NimbusError as e:
            call.outcome, call.error = e.kind, str(e)
            raise
        except CommitDeclined as e:
            call.outcome, call.error = "Declined", str(e) or "the caller declined the commit"
            raise
        except Exception as e:
            call.outcome, call.error = "InternalError", repr(e)
            raise
        finally:
            call.duration_ms = (time.perf_counter() - call.t0) * 1000
            if call.recorded:
                pending = call.pending()
                if pending is None:
                    self.telemetry.record(call.record())
                else:
                    self.telemetry.record_pending(*pending)
                # a throttled call never ran: counted in metrics, not billed (as Lambda)
                if self.options.metering and call.outcome != "Throttled":
                    self.services.usage.record(call.usage())
                self.services.activity.record(
                    dep.name,
                    int(call.started * 1000),
                    call.duration_ms,
                    call.outcome == "ok",
                    call.cold,
                )
            if traced is not None:
                # an inline try (stopped at its budget, or no slot free) runs again in
                # a thread: say so
                outcome = call.outcome if call.recorded else "Retried"
                ended(span, outcome, call.cold, call.error)
                traced.__exit__(None, None, None)
        return InvocationResult(
            call.request_id,
            dep.name,
            dep.version,
            response,
            call.inv.logs,
            call.cold,
            call.duration_ms,
            applied,
            call.effects_described,
            bool(call.effects),
        )

    def _call(
        self,
        dep: Deployment,
        load: Callable[[], LoadedFunction],
        request: InvocationRequest,
        call: Call,
    ) -> tuple[dict[str, Any], bool]:
        """Run the guest in a concurrency slot; commit its effects or drop them."""
        fn, call.cold = self.pool.get(dep.key, load, _ttl(dep.spec))
        envelope = {
            **request.event,
            "id": request.event.get("id") or call.request_id,
            "request_id": call.request_id,
            "function": dep.name,
            "deadline_ms": int((call.started + (request.timeout_s or dep.spec.timeout_s)) * 1000),
            "env": dict(dep.spec.env),
        }
        hook = request.commit
        packed = call.envelope = msgpack.packb(envelope)
        with self.slots.hold(dep.spec, call.run_s, request.budget_s is not None):
            effects = self.services.begin(dep.name)
            spec = dep.spec
            call.inv.services = ServiceAccess(
                effects, spec.grants, call.inv, spec.max_staged_bytes, spec.max_staged_ops
            )
            self._grant_egress(call.inv, spec, envelope, call.run_s or spec.timeout_s)
            try:
                # the guest runs on this thread: its CPU is this thread's; an inline run
                # (a budget, at most a few ms on the event loop) counts its wall time
                # instead, as reading a thread's CPU clock is a system call here
                clock = time.thread_time if request.budget_s is None else time.perf_counter
                cpu0 = clock()
                try:
                    response = call.response = self.runtime.invoke(fn, packed, call.inv, call.run_s)
                finally:
                    call.cpu_ms = (clock() - cpu0) * 1000
                    # the run is over: no host call reaches the services any more, and
                    # the access (which holds the invocation) leaves no cycle behind:
                    # the invocation's objects are freed now, not by the cyclic GC
                    call.inv.services = None
                _raise_for_error(response, dep.name)
                if hook is not None:
                    hook.check(response)
                if request.describe_effects:
                    call.effects_described = effects.describe()
                staged = effects.counts()
                if request.dry_run:  # described above, if asked; nothing kept
                    effects.discard()
                    applied = False
                else:
                    applied = effects.commit(extra=hook, idempotency_id=request.idempotency_ids)
                if applied:
                    call.effects = {k: n for k, n in staged.items() if n}
                status = response.get("status")
                call.status = status if isinstance(status, int) else None
                body = response.get("body")  # the exact bytes the runtime checked for sending
                call.bytes_out = len(body) if isinstance(body, bytes) else 0
            except BaseException:
                effects.discard()
                raise
        return response, applied

    def _grant_egress(
        self, inv: Invocation, spec: FunctionSpec, envelope: dict[str, Any], run_s: float
    ) -> None:
        """Outbound HTTP and secrets for a function granted them (None otherwise)."""
        if spec.outbound.entries:
            inv.outbound = OutboundAccess(
                self.fetcher,
                spec.outbound,
                spec.name,
                stable_event_id(envelope),
                time.monotonic() + run_s / self.options.time_scale,
                spec.max_outbound_response,
                inv.spans,
            )
        if spec.secrets:
            inv.secrets = SecretAccess(self.secrets, spec.secrets)

    def running(self) -> dict[str, int]:
        """Invocations running in this process now, by function."""
        return self.slots.running()

    def in_flight(self, function: str) -> int:
        """Invocations of ``function`` running in this process now."""
        return self.slots.in_flight(function)

    def _load(self, dep: Deployment) -> LoadedFunction:
        return self.runtime.load(
            dep.spec.name, self.registry.wasm(dep), _limits(dep.spec), verify=False
        )

    def _sweep(self) -> None:
        while not self._stop.wait(self.options.sweep_interval_s):
            self.pool.sweep()
            try:
                self.keep_warm()
            except Exception:  # the next round tries again
                log.exception("keep-warm failed")

    def _flush(self) -> None:
        """Make usage durable and share activity every ``FLUSH_INTERVAL_S``: a crash
        loses at most that."""
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.services.usage.flush()
            except Exception:  # kept for the next try
                log.exception("usage could not be flushed; retrying")
            try:
                self.services.activity.flush(int(time.time() * 1000))
            except Exception:
                log.exception("activity could not be flushed; retrying")


def _ttl(spec: FunctionSpec) -> float:
    """How long the warm pool keeps the function unused: forever with ``min_warm``."""
    return math.inf if spec.min_warm else spec.idle_ttl_s


def _limits(spec: FunctionSpec) -> Limits:
    return Limits(
        timeout_s=spec.timeout_s,
        memory_bytes=spec.memory_bytes,
        max_request_bytes=spec.max_request_bytes,
        max_response_bytes=spec.max_response_bytes,
    )


def _raise_for_error(response: dict[str, Any], function: str) -> None:
    err = response.get("error")
    if err is None:
        return
    if isinstance(err, dict):
        kind = str(err.get("kind", "Error"))
        message = str(err.get("message", ""))
    else:
        kind, message = "Error", str(err)
    raise FunctionFailed(f"function {function} failed: {kind}: {message}", error_kind=kind)
