"""One store and instance per call, and the call into the handler through the ABI.

``Instances`` hands out fresh instances of loaded functions, each in a new store with
its memory cap and epoch deadline, and knows which invocation each live store
belongs to (host functions find theirs through the store's data). ``call_handler``
is steps 2-3 of "One invocation" in guest_sdk/ABI.md: allocate, copy the event in,
call ``nimbus_handle``, and copy the response out after checking its length and range.
``Instances.run`` makes the same steps for a Zig or C function in one call into the
C extension (``native.wasmcall``), with the same checks and the same errors.
"""

from __future__ import annotations

import ctypes
import itertools
import time
from typing import Any

from host.errors import AbiError, FunctionOutOfMemory, NimbusError, ResponseTooLarge
from host.runtime import abi, native
from host.runtime.engine import EpochTicker
from host.runtime.invocation import Invocation
from host.runtime.loaded import LoadedFunction
from host.runtime.priority import Demoter
from host.runtime.traps import classify, classify_memory, instantiate_error

_MEMORY = native.EXTERN_MEMORY
_FUNC = native.EXTERN_FUNC


class Instances:
    """The live stores of one engine, by the integer each store carries."""

    def __init__(self, ticker: EpochTicker) -> None:
        self.ticker = ticker
        self.live: dict[int, Invocation] = {}
        self._ids = itertools.count(1)

    def instantiate(
        self, fn: LoadedFunction, inv: Invocation, timeout_s: float, memory_cap: int
    ) -> tuple[native.NativeStore, Any]:
        """A new store and instance of ``fn``, registered as ``inv``'s in ``live`` (its
        start function's host calls are served; the caller removes it), or the error
        instantiating it ended with."""
        key = next(self._ids)
        self.live[key] = inv
        store = native.NativeStore(fn.engine_ptr, key, memory_cap)
        try:
            store.set_deadline(self.ticker.ticks_for(timeout_s))
            if fn.kind == "python":  # its libc sleeps through WASI, bounded by this
                inv.deadline = time.monotonic() + self.ticker.real_seconds(timeout_s)
                store.give_empty_wasi()
            inst = native.instantiate(fn.pre_ptr, store.ctx)
        except native.GuestTrap as t:
            store.close()
            del self.live[key]
            raise start_failed(t, fn, inv, memory_cap) from None
        return store, inst

    def fresh(
        self, fn: LoadedFunction, inv: Invocation, timeout_s: float | None = None
    ) -> FreshInstance:
        return FreshInstance(self, fn, inv, timeout_s)

    def run(
        self,
        fn: LoadedFunction,
        event: bytes,
        inv: Invocation,
        demoter: Demoter,
        timeout_s: float | None = None,
    ) -> bytes:
        """``call_handler`` on a fresh instance of ``fn`` (a module without instances
        made ahead), made, called and deleted by the C extension; the response bytes.
        The guest's run, its instantiation included, is reported to ``demoter``."""
        limits = fn.limits
        timeout_s = limits.timeout_s if timeout_s is None else timeout_s
        key = next(self._ids)
        self.live[key] = inv
        token = demoter.enter(timeout_s)
        c = native.wasmcall
        try:
            try:
                guest = c.Instance(
                    fn.engine_ptr,
                    fn.pre_ptr,
                    key,
                    limits.memory_bytes,
                    self.ticker.ticks_for(timeout_s),
                    b"nimbus_handle",
                )
            except native.GuestTrap as t:
                raise start_failed(t, fn, inv, limits.memory_bytes) from None
            inv.guest = guest
            try:
                response: bytes = guest.call(event, limits.max_response_bytes)
                return response
            except native.GuestTrap as t:
                raise call_failed(t, fn, inv) from None
            finally:
                inv.memory_bytes = guest.memory_size()
                guest.close()
        except c.Refused as r:  # a rule broken (an export missing: the load checks that)
            raise refused(fn, len(event), *r.args) from None
        finally:
            demoter.leave(token)
            del self.live[key]


class FreshInstance:
    """A new store and instance for one call (made ahead, never used, where the
    function's module has instances made ahead), deleted on exit whatever happened."""

    __slots__ = ("fn", "inv", "key", "owner", "pool", "store", "timeout_s")

    def __init__(
        self, owner: Instances, fn: LoadedFunction, inv: Invocation, timeout_s: float | None
    ) -> None:
        self.owner, self.fn, self.inv = owner, fn, inv
        self.timeout_s = fn.limits.timeout_s if timeout_s is None else timeout_s

    def __enter__(self) -> tuple[Any, Any]:
        owner, fn, inv = self.owner, self.fn, self.inv
        self.pool = pool = fn.ready  # None for a Zig or C function: one check, no more
        if pool is not None:
            made = pool.take(fn.limits.memory_bytes >= pool.memory_bytes)
            if made is not None:
                self.store, inst = made
                self.key = self.store.key
                owner.live[self.key] = inv
                inv.deadline = time.monotonic() + owner.ticker.real_seconds(self.timeout_s)
                self.store.set_memory_cap(fn.limits.memory_bytes)
                self.store.set_deadline(owner.ticker.ticks_for(self.timeout_s))
                return self.store.ctx, inst
        try:
            self.store, inst = owner.instantiate(fn, inv, self.timeout_s, fn.limits.memory_bytes)
        except BaseException:
            if pool is not None:
                pool.release(None)  # every take is paired with a release
            raise
        self.key = self.store.key
        return self.store.ctx, inst

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        del self.owner.live[self.key]
        store: native.NativeStore | None = self.store
        if self.pool is not None:  # closed in the background, off the request's path
            store = self.pool.release(store)
        if store is not None:
            store.close()


def bind(ctx: Any, inst: Any, inv: Invocation) -> tuple[Any, Any]:
    """``inst``'s memory and allocator, bound to ``inv`` so its host calls are served."""
    memory = native.export(ctx, inst, b"memory", _MEMORY)
    alloc = native.export(ctx, inst, b"nimbus_alloc", _FUNC)
    inv.guest = native.CtypesGuest(ctx, memory, alloc)
    return memory, alloc


def call_handler(
    fn: LoadedFunction,
    ctx: Any,
    inst: Any,
    event: bytes,
    inv: Invocation,
    demoter: Demoter | None = None,
    timeout_s: float | None = None,
    export: bytes = b"nimbus_handle",
) -> bytes:
    """Run ``event`` through ``nimbus_handle`` (or another export of the same type) of
    ``inst``; the response bytes. The guest's run is reported to ``demoter``
    (host/runtime/priority.py)."""
    memory, alloc = bind(ctx, inst, inv)
    handle = native.export(ctx, inst, export, _FUNC)
    vals = (native.ValRaw * 2)()
    vals[0].i32 = len(event)
    native.call(ctx, alloc, vals, 1)
    ptr = vals[0].i32 & 0xFFFFFFFF
    base, size = native.memory_view(ctx, memory)
    if ptr == 0:
        raise refused(fn, len(event), "alloc", 0, len(event))
    if ptr + len(event) > size:
        raise refused(fn, len(event), "alloc_range", ptr, size)
    ctypes.memmove(base + ptr, event, len(event))
    vals[0].i32 = ptr
    vals[1].i32 = len(event)
    if demoter is None:
        native.call(ctx, handle, vals, 2)
    else:
        token = demoter.enter(fn.limits.timeout_s if timeout_s is None else timeout_s)
        try:
            native.call(ctx, handle, vals, 2)
        finally:
            demoter.leave(token)
    rptr, rlen = abi.split_result(vals[0].i64)
    if rlen > fn.limits.max_response_bytes:
        raise refused(fn, len(event), "too_large", rlen)
    base, size = native.memory_view(ctx, memory)
    if rptr + rlen > size:
        raise refused(fn, len(event), "response_range", rptr, rlen, size)
    return ctypes.string_at(base + rptr, rlen)


def refused(fn: LoadedFunction, event_bytes: int, what: str, *figures: int) -> NimbusError:
    """The error for an ABI rule the guest broke in ``call_handler``'s steps, as the
    C extension reports it (``Refused(what, *figures)``)."""
    if what == "alloc":
        return FunctionOutOfMemory(
            f"function {fn.name} could not allocate {event_bytes} bytes for its event"
        )
    if what == "alloc_range":
        ptr, size = figures
        return AbiError(f"nimbus_alloc returned {ptr}, outside the {size}-byte memory")
    if what == "too_large":
        return ResponseTooLarge(
            f"function {fn.name} returned {figures[0]} bytes; its response cap is "
            f"{fn.limits.max_response_bytes}"
        )
    if what == "response_range":
        rptr, rlen, size = figures
        return AbiError(
            f"nimbus_handle returned response {rptr}+{rlen}, outside the {size}-byte memory"
        )
    return AbiError(f"function {fn.name} does not export {figures[0]!r}")  # "export"


def start_failed(
    t: native.GuestTrap, fn: LoadedFunction, inv: Invocation, memory_cap: int
) -> BaseException:
    """The error for an instance that could not be made: a host import's own error
    (its start function called one), else the trap's meaning (``instantiate_error``)."""
    if inv.error is not None:
        return inv.error
    return instantiate_error(t, fn.name, memory_cap)


def call_failed(t: native.GuestTrap, fn: LoadedFunction, inv: Invocation) -> NimbusError:
    """The error for a call into the guest that trapped: a host import's own error,
    else the trap's meaning (out of memory when its memory was at the cap)."""
    if inv.error is not None:
        return inv.error  # type: ignore[return-value]
    err = classify(t, fn.name)
    return classify_memory(err, memory_size(inv), fn.limits.memory_bytes, fn.name)


def memory_size(inv: Invocation) -> int | None:
    """The size of the invocation's linear memory, once bound."""
    if inv.guest is None:
        return None
    size: int = inv.guest.memory_view()[1]
    return size
