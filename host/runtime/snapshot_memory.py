"""Linear memories for the Python runtime that start as its snapshot and are reset by
restoring only the pages a call wrote, so the next call finds them mapped.

wasmtime maps a module's initial memory as a copy-on-write image and, when an instance
goes, discards what the instance wrote: the next instance faults every page it writes
back in (a copy of the image's page, ~5 µs each on a virtual machine). A Zig function
writes a few pages a call; the Python runtime writes ~200 (reference counts and
interpreter state spread over its 34 MiB heap), so those faults were most of a Python
call. wasmtime's own dirty-page reset (``PAGEMAP_SCAN`` with ``keep_resident``) is not
reachable through its C API, so the Python runtime's engine allocates instances on
demand with this host memory creator instead of the pooling allocator:

- a *slot* is one memory's address range (wasmtime's reservation and guard, inaccessible
  but for the memory's current size) with the snapshot image mapped private over it;
- when an instance is dropped its slot is reset: pages grown past the image are
  discarded, and the pages written in the image's range (found with ``PAGEMAP_SCAN``:
  present or swapped and backed by neither the file nor the zero page) are copied back
  from the image; if they are more than ``KEEP_RESIDENT_BYTES``, or the kernel has no
  ``PAGEMAP_SCAN``, the image is mapped over the whole range again instead (what
  wasmtime does): either way the slot is the snapshot again, byte for byte;
- a reset slot waits, pages kept, for the next instance (the most recently used first);
  at most ``KEEP_SLOTS`` wait, the rest are unmapped.

What one waiting slot holds is at most ``KEEP_RESIDENT_BYTES`` of its own pages (the
image's pages it read are the page cache's, shared by every slot), so idle slots hold
at most ``KEEP_SLOTS * KEEP_RESIDENT_BYTES``.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import c_int, c_long, c_size_t, c_uint64, c_void_p
from pathlib import Path
from typing import Any

from wasmtime import _ffi as ffi

#: pages of its own a waiting slot may keep (more, and its reset maps the image anew)
KEEP_RESIDENT_BYTES = 8 << 20
#: slots kept for reuse once their instance is gone
KEEP_SLOTS = 8
#: a slot's copied pages may grow to twice the first reset's plus this many before
#: the image is mapped anew (see ``_copy_back_written``)
_SLACK_PAGES = 16

_PAGE = os.sysconf("SC_PAGE_SIZE")
_PROT_NONE, _PROT_RW, _PROT_READ = 0, 3, 1
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANON, _MAP_NORESERVE = 1, 2, 0x10, 0x20, 0x4000
_MADV_DONTNEED = 4
_MAP_FAILED = ctypes.c_void_p(-1).value
#: ``_IOWR('f', 16, struct pm_scan_arg)`` and its page categories (linux/fs.h)
_PAGEMAP_SCAN = 0xC0606610
_PAGE_IS_FILE, _PAGE_IS_PRESENT, _PAGE_IS_SWAPPED = 1 << 2, 1 << 3, 1 << 4
#: regions one scan call reports at most (a scan with more goes on where it stopped)
_REGIONS = 256

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = c_void_p
_mmap.argtypes = [c_void_p, c_size_t, c_int, c_int, c_int, c_long]
_munmap = _libc.munmap
_munmap.argtypes = [c_void_p, c_size_t]
_mprotect = _libc.mprotect
_mprotect.argtypes = [c_void_p, c_size_t, c_int]
_madvise = _libc.madvise
_madvise.argtypes = [c_void_p, c_size_t, c_int]
_ioctl = _libc.ioctl
_ioctl.argtypes = [c_int, ctypes.c_ulong, c_void_p]


class _PageRegion(ctypes.Structure):
    _fields_ = [("start", c_uint64), ("end", c_uint64), ("categories", c_uint64)]


class _ScanArg(ctypes.Structure):
    _fields_ = [
        (name, c_uint64)
        for name in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


class _Slot:
    """One memory's address range and what is accessible of it now."""

    __slots__ = ("base", "first", "guard", "regions", "reserved", "scan", "size")

    def __init__(self, base: int, size: int, reserved: int, guard: int) -> None:
        self.base, self.size, self.reserved, self.guard = base, size, reserved, guard
        #: pages the first reset after the image was mapped copied back (0: none yet)
        self.first = 0
        self.regions = (_PageRegion * _REGIONS)()
        self.scan = _ScanArg(size=ctypes.sizeof(_ScanArg))


class SnapshotMemories:
    """The Python runtime engine's memory creator: every memory it makes starts as the
    snapshot image (``attach``) and is reset to it when its instance is dropped."""

    def __init__(self, max_slots: int) -> None:
        #: slots in use and waiting together; a memory beyond them is refused with
        #: wasmtime's words for an exhausted pool (``traps.instantiate_error``)
        self.max_slots = max_slots
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        #: slots made (in use and waiting), counted as they are reserved
        self._made = 0
        self._waiting: list[_Slot] = []
        self._image_path: Path | None = None
        self._image_fd = -1
        self._image_len = 0
        self._image = 0  # the image mapped read-only: what resets copy from
        self._pagemap = -1
        self._pid = 0  # the process that opened the pagemap
        self._closed = False
        #: how slots were made the image: by mapping it (a new slot, or a reset that
        #: found too much written) or by copying the written pages back
        self.resets = {"mapped": 0, "copied": 0}
        # the C side keeps raw pointers to these
        self._new_cb = ffi.wasmtime_new_memory_callback_t(self._new_memory)
        self._get_cb = ffi.wasmtime_memory_get_callback_t(self._get_memory)
        self._grow_cb = ffi.wasmtime_memory_grow_callback_t(self._grow_memory)
        self._drop_cb = ctypes.CFUNCTYPE(None, c_void_p)(self._drop_memory)
        self._no_finalizer = ctypes.cast(0, ctypes.CFUNCTYPE(None, c_void_p))

    def install(self, config: Any) -> None:
        """Make this the memory creator of the engine ``config`` is for (an engine that
        allocates on demand: the pooling allocator makes its own memories)."""
        creator: Any = ffi.wasmtime_memory_creator_t()
        creator.env = None
        creator.new_memory = self._new_cb
        creator.finalizer = self._no_finalizer
        ffi.wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(creator))

    def attach(self, image: Path) -> None:
        """Serve memories from ``image`` (the snapshot's whole initial memory, as
        ``snapshot.detach_memory`` writes it), before the first instance."""
        if self._image_path is not None:
            if self._image_path != image:  # its memories would not match the module
                raise ValueError(f"memories already served from {self._image_path}")
            return
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
        size = os.fstat(fd).st_size
        if size == 0 or size % 65536:
            os.close(fd)
            raise ValueError(f"{image}: a memory image is a whole number of 64 KiB pages")
        addr = _mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
        if addr in (None, _MAP_FAILED):
            os.close(fd)
            raise OSError(ctypes.get_errno(), f"mapping {image} failed")
        self._image_fd, self._image_len, self._image = fd, size, addr
        self._image_path = image
        self._pagemap = _open_pagemap()
        self._pid = os.getpid()

    def slots(self) -> tuple[int, int]:
        """Slots in use, slots waiting."""
        with self._lock:
            return self._made - len(self._waiting), len(self._waiting)

    def close(self) -> None:
        """Unmap the waiting slots and the image (slots in use are unmapped when their
        instances go)."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
        for slot in waiting:
            self._unmap(slot)
        if self._image_fd >= 0:
            _munmap(self._image, self._image_len)
            os.close(self._image_fd)
        if self._pagemap >= 0:
            os.close(self._pagemap)
        self._image_fd = self._pagemap = -1

    # --- wasmtime's callbacks (they must not raise: an error is returned) ----------

    def _new_memory(
        self,
        env: Any,
        ty: Any,
        minimum: int,
        maximum: int,
        reserved: int,
        guard: int,
        ret: Any,
    ) -> int:
        try:
            if self._image_fd < 0:
                return _error("the Python runtime's memory image is not attached")
            if minimum != self._image_len:
                return _error(
                    f"a memory of {minimum} bytes on the Python runtime's engine, whose "
                    f"memories start as its {self._image_len}-byte image"
                )
            slot = self._take(max(reserved, minimum), guard)
            if slot is None:
                return _error(
                    f"maximum concurrent memory limit of {self.max_slots} reached "
                    "(the Python runtime's slots)"
                )
            try:
                out = ret.contents
                out.env = slot.base
                out.get_memory = self._get_cb
                out.grow_memory = self._grow_cb
                out.finalizer = self._drop_cb
            except BaseException:
                self._unmap(slot)
                raise
            return 0
        except Exception as e:
            return _error(f"the Python runtime's memory could not be made: {e}")

    def _get_memory(self, env: int, size: Any, capacity: Any) -> int:
        slot = self._slots[env]
        size[0] = slot.size
        capacity[0] = slot.reserved
        return slot.base

    def _grow_memory(self, env: int, new_size: int) -> int:
        slot = self._slots[env]
        if new_size > slot.reserved:
            return _error(f"memory cannot grow past {slot.reserved} bytes")
        if new_size > slot.size:
            if _mprotect(slot.base + slot.size, new_size - slot.size, _PROT_RW) != 0:
                return _error(f"growing memory failed: {os.strerror(ctypes.get_errno())}")
            slot.size = new_size
        return 0

    def _drop_memory(self, env: int) -> None:
        slot = self._slots[env]
        if self._closed:
            self._unmap(slot)
            return
        try:
            self._reset(slot)
        except Exception:
            self._unmap(slot)
            return
        with self._lock:
            if len(self._waiting) < KEEP_SLOTS and not self._closed:
                self._waiting.append(slot)
                return
        self._unmap(slot)

    # --- slots -----------------------------------------------------------------------

    def _take(self, reserved: int, guard: int) -> _Slot | None:
        stale = None
        with self._lock:
            if self._waiting:
                slot = self._waiting.pop()
                if (slot.reserved, slot.guard) == (reserved, guard):
                    return slot
                stale = slot
            elif self._made >= self.max_slots:
                return None
            self._made += 1  # counted before it is made: the cap holds across threads
        if stale is not None:
            self._unmap(stale)
        try:
            return self._new_slot(reserved, guard)
        except BaseException:
            with self._lock:
                self._made -= 1
            raise

    def _new_slot(self, reserved: int, guard: int) -> _Slot:
        """A slot: a guard, the memory's reservation (the image mapped over its start),
        a guard (wasmtime elides bounds checks the reservation and guard cover)."""
        flags = _MAP_PRIVATE | _MAP_ANON | _MAP_NORESERVE
        start = _mmap(None, guard + reserved + guard, _PROT_NONE, flags, -1, 0)
        if start in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), "reserving a memory's address range failed")
        slot = _Slot(start + guard, self._image_len, reserved, guard)
        try:
            self._map_image(slot)
        except OSError:
            _munmap(start, guard + reserved + guard)
            raise
        with self._lock:
            self._slots[slot.base] = slot
        return slot

    def _unmap(self, slot: _Slot) -> None:
        with self._lock:
            if self._slots.pop(slot.base, None) is not None:
                self._made -= 1
        _munmap(slot.base - slot.guard, slot.guard + slot.reserved + slot.guard)

    def _map_image(self, slot: _Slot) -> None:
        flags = _MAP_PRIVATE | _MAP_FIXED
        if _mmap(slot.base, self._image_len, _PROT_RW, flags, self._image_fd, 0) != slot.base:
            raise OSError(ctypes.get_errno(), "mapping the memory image failed")
        slot.first = 0
        self.resets["mapped"] += 1

    def _reset(self, slot: _Slot) -> None:
        """Make ``slot`` the image again: grown pages discarded, written pages copied
        back (or the image mapped anew)."""
        image = self._image_len
        if slot.size > image and _madvise(slot.base + image, slot.size - image, _MADV_DONTNEED):
            raise OSError(ctypes.get_errno(), "discarding grown memory failed")
        # all of the reservation past the image, whatever ``size`` says
        if _mprotect(slot.base + image, slot.reserved - image, _PROT_NONE) != 0:
            raise OSError(ctypes.get_errno(), "protecting grown memory failed")
        slot.size = image
        if self._pid != os.getpid():  # a forked child: the pagemap read is the parent's
            if self._pagemap >= 0:
                os.close(self._pagemap)
            self._pagemap = _open_pagemap()
            self._pid = os.getpid()
        if self._pagemap < 0 or not self._copy_back_written(slot):
            self._map_image(slot)
        else:
            self.resets["copied"] += 1

    def _copy_back_written(self, slot: _Slot) -> bool:
        """Copy the image's bytes over every page of ``slot`` that is not the image's
        own (nor the zero page); False if the scan failed or found more than the slot
        may keep (the caller then maps the image anew).

        A page copied back stays the slot's own, so what a reset copies is every page
        any call since the image was mapped wrote: with different functions in one
        slot, that union would grow to the budget and every reset would copy pages the
        next call may never write (a copy costs about half a fault). So a slot keeps at
        most twice what its first reset copied (plus a few pages), then starts anew."""
        base, scan, regions = slot.base, slot.scan, slot.regions
        budget = KEEP_RESIDENT_BYTES // _PAGE
        if slot.first:  # what calls wrote keeps growing: at most twice the first's
            budget = min(budget, 2 * slot.first + _SLACK_PAGES)
        allowed = budget
        scan.start, scan.end = base, base + self._image_len
        scan.vec, scan.vec_len = ctypes.addressof(regions), _REGIONS
        # not the file's page: a page the slot wrote (or one KSM merged into the zero
        # page, which is not the image's either)
        scan.category_inverted = _PAGE_IS_FILE
        scan.category_mask = _PAGE_IS_FILE
        scan.category_anyof_mask = _PAGE_IS_PRESENT | _PAGE_IS_SWAPPED
        scan.return_mask = 0
        delta = self._image - base
        while True:  # each copy lets go of the GIL: a reset is often a background one
            scan.walk_end, scan.max_pages = 0, budget
            n = _ioctl(self._pagemap, _PAGEMAP_SCAN, ctypes.addressof(scan))
            if n < 0:
                return False
            found = memoryview(regions).cast("B").cast("Q")[: 3 * n].tolist()
            for start, end in zip(found[0::3], found[1::3], strict=True):
                ctypes.memmove(start, start + delta, end - start)
                budget -= (end - start) // _PAGE
            if scan.walk_end >= scan.end:
                slot.first = slot.first or max(1, allowed - budget)
                return True
            if n < _REGIONS or budget <= 0:  # stopped at the budget: too much to copy
                return False
            scan.start = scan.walk_end


def _open_pagemap() -> int:
    """``/proc/self/pagemap`` if the kernel answers ``PAGEMAP_SCAN`` on it, else -1."""
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1
    probe = _ScanArg(size=ctypes.sizeof(_ScanArg))
    if _ioctl(fd, _PAGEMAP_SCAN, ctypes.addressof(probe)) < 0:
        os.close(fd)
        return -1
    return fd


def _error(message: str) -> int:
    err = ffi.wasmtime_error_new(message.encode())
    return ctypes.cast(err, c_void_p).value or 0
