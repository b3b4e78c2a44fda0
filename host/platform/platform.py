"""Wires the parts together, and holds the one invoke path every trigger goes through.

``Platform`` owns the engine (through the runtime), the LMDB environment (through the
services), the function registry, the warm pool and the telemetry. Nothing else in
Nimbus holds global state: tests build a ``Platform`` on a temporary directory.

``Platform.invoke`` is the only way a function runs: the gateway, the triggers and
the orchestrator all call it, so limits, grants, effects, logs and records hold
whatever started the call.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from host.common.ids import new_id
from host.errors import FunctionFailed, FunctionTimeout, NimbusError, Overloaded
from host.hostcalls.catalog import all_host_functions, component_imports
from host.hostcalls.context import ServiceAccess
from host.manifest.functions import FunctionSpec
from host.platform.registry import Deployment, Registry
from host.runtime.invocation import Invocation, LogLine
from host.runtime.limits import Limits
from host.runtime.pool import WarmPool
from host.runtime.runtime import LoadedFunction, Runtime
from host.services.blobs import MAX_OBJECT_BYTES
from host.services.services import Services
from host.telemetry.records import InvocationRecord, Telemetry

#: how often idle functions are looked for (scale to zero)
SWEEP_INTERVAL_S = 1.0


class OverBudget(Exception):
    """An invocation ran past the budget its caller gave it (shorter than the
    function's own time limit): not an outcome, nothing was kept or recorded, and the
    caller runs it again without the budget."""


@dataclass
class InvocationResult:
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


@dataclass
class PlatformOptions:
    """Knobs of one platform instance (the CLI sets them; tests shrink them)."""

    initial_map_size: int = 64 * 1024 * 1024
    max_object_bytes: int = MAX_OBJECT_BYTES
    sweep_interval_s: float = SWEEP_INTERVAL_S
    #: > 1 makes the engine's time limits pass faster than real time (tests only)
    time_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


class Platform:
    """One Nimbus host process's view of its data directory."""

    def __init__(self, data_dir: Path, options: PlatformOptions | None = None) -> None:
        self.options = options or PlatformOptions()
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.services = Services(
            self.data_dir / "db",
            map_size=self.options.initial_map_size,
            max_object_bytes=self.options.max_object_bytes,
        )
        self.runtime = Runtime(
            self.data_dir / "cache",
            all_host_functions(),
            time_scale=self.options.time_scale,
            component_imports=component_imports(),
        )
        self.registry = Registry(self.services.storage, self.data_dir / "modules")
        self.pool = WarmPool()
        self.telemetry = Telemetry()
        self._limits_lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="nimbus-sweep", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        self._sweeper.join(timeout=2)
        self.runtime.close()
        self.services.close()

    # --- deployments -----------------------------------------------------------------

    def deploy(self, spec: FunctionSpec, wasm: bytes) -> Deployment:
        """Validate and compile ``wasm`` first; only then make it the serving version."""
        self.runtime.load(spec.name, wasm, _limits(spec))
        dep = self.registry.put(spec, wasm)
        self.pool.drop(f"{spec.name}@")
        return dep

    def remove(self, name: str) -> None:
        self.registry.delete(name)
        self.pool.drop(f"{name}@")

    # --- the invoke path -------------------------------------------------------------

    def invoke(
        self,
        function: str,
        event: dict[str, Any],
        *,
        request_id: str | None = None,
        on_commit: Callable[[Any], None] | None = None,
        idempotency_id: str | Sequence[str] | None = None,
        timeout_s: float | None = None,
        before_commit: Callable[[dict[str, Any]], None] | None = None,
        budget_s: float | None = None,
    ) -> InvocationResult:
        """Run ``function`` on ``event`` (an ABI envelope without the common fields).

        The function's effects are committed, with ``on_commit``'s extra work in the
        same transaction, only if it returns a response without ``error``. With an
        ``idempotency_id`` that was committed before, nothing is applied twice.
        """
        dep = self.registry.get(function)
        return self._run(
            dep,
            lambda: self._load(dep),
            event,
            request_id=request_id,
            on_commit=on_commit,
            idempotency_id=idempotency_id,
            timeout_s=timeout_s,
            before_commit=before_commit,
            budget_s=budget_s,
        )

    def invoke_module(
        self, spec: FunctionSpec, wasm: bytes, event: dict[str, Any]
    ) -> InvocationResult:
        """Run a module that is not deployed (``nimbus invoke DIR``), through the same
        path as a deployed one: same limits, grants, effects and records."""
        sha = hashlib.sha256(wasm).hexdigest()
        dep = Deployment(spec, version=0, sha256=sha, deployed_ms=int(time.time() * 1000))
        self.pool.drop(dep.key)
        return self._run(dep, lambda: self.runtime.load(spec.name, wasm, _limits(spec)), event)

    def _run(
        self,
        dep: Deployment,
        load: Callable[[], LoadedFunction],
        event: dict[str, Any],
        *,
        request_id: str | None = None,
        on_commit: Callable[[Any], None] | None = None,
        idempotency_id: str | Sequence[str] | None = None,
        timeout_s: float | None = None,
        before_commit: Callable[[dict[str, Any]], None] | None = None,
        budget_s: float | None = None,
    ) -> InvocationResult:
        function = dep.name
        limit_s = timeout_s or dep.spec.timeout_s
        budgeted = budget_s is not None and budget_s < limit_s
        run_s = budget_s if budgeted else timeout_s
        record = True
        request_id = request_id or new_id("req")
        trigger = str(event.get("kind", "direct"))
        started = time.time()
        t0 = time.perf_counter()
        cold = False
        version = dep.version
        outcome, error_text = "ok", None
        inv = Invocation(request_id=request_id, function=function)
        try:
            fn, cold = self.pool.get(dep.key, load, dep.spec.idle_ttl_s)
            envelope = {
                **event,
                "id": event.get("id") or request_id,
                "request_id": request_id,
                "function": function,
                "deadline_ms": int((started + (timeout_s or dep.spec.timeout_s)) * 1000),
                "env": dict(dep.spec.env),
            }
            with self._slot(function, dep.spec.concurrency):
                effects = self.services.begin(function)
                inv.services = ServiceAccess(effects, dep.spec.grants, inv)
                try:
                    response = self.runtime.invoke(fn, msgpack.packb(envelope), inv, run_s)
                    _raise_for_error(response, function)
                    if before_commit is not None:
                        before_commit(response)
                    applied = effects.commit(extra=on_commit, idempotency_id=idempotency_id)
                except BaseException:
                    effects.discard()
                    raise
        except FunctionTimeout as e:
            if budgeted:  # past the caller's budget, not the function's limit
                record = False
                raise OverBudget(function) from None
            outcome, error_text = e.kind, str(e)
            raise
        except NimbusError as e:
            outcome, error_text = e.kind, str(e)
            raise
        except Exception as e:
            outcome, error_text = "InternalError", repr(e)
            raise
        finally:
            duration_ms = (time.perf_counter() - t0) * 1000
            if record:
                self.telemetry.record(
                    InvocationRecord(
                        request_id=request_id,
                        function=function,
                        version=version,
                        trigger=trigger,
                        cold=cold,
                        started_ms=int(started * 1000),
                        duration_ms=duration_ms,
                        outcome=outcome,
                        error=error_text,
                        logs=[(line.level, line.message) for line in inv.logs],
                        event_id=str(event.get("id") or request_id),
                    )
                )
        return InvocationResult(
            request_id, function, version, response, inv.logs, cold, duration_ms, applied
        )

    def _load(self, dep: Deployment) -> LoadedFunction:
        return self.runtime.load(
            dep.spec.name, self.registry.wasm(dep), _limits(dep.spec), verify=False
        )

    def _slot(self, function: str, limit: int) -> _Slot:
        return _Slot(self, function, limit)

    def _sweep(self) -> None:
        while not self._stop.wait(self.options.sweep_interval_s):
            self.pool.sweep()


class _Slot:
    """Holds one of a function's concurrency slots for the length of a call."""

    def __init__(self, platform: Platform, function: str, limit: int) -> None:
        self.p, self.function, self.limit = platform, function, limit

    def __enter__(self) -> None:
        with self.p._limits_lock:
            running = self.p._running.get(self.function, 0)
            if self.limit and running >= self.limit:
                raise Overloaded(
                    f"function {self.function} is at its concurrency limit of {self.limit}; "
                    "retry later"
                )
            self.p._running[self.function] = running + 1

    def __exit__(self, *exc: object) -> None:
        with self.p._limits_lock:
            self.p._running[self.function] -= 1


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
