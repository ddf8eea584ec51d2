"""The one interface analysis code reads a target through (DESIGN 2.1).

A backend (offline dump, pykd, pybag, fake) implements ``_read_backend``, module listing and the crash
facts; this base class adds the page cache and the read statistics. On a live KDNET target every
backend call is a round trip at ~2 MB/s, so reads are page-granular, cached, and counted.
"""

import bisect
import struct
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from pytriage.errors import MemoryReadError, UnsupportedDumpError
from pytriage.target.model import Module, ReadStats

PAGE = 0x1000
_PARTIAL = b""   # cache marker: this page cannot be read whole, read the exact range instead


class Target:
    """Read-only view of a crashed (or live) Windows kernel."""

    machine = "AMD64"
    pointer_size = 8
    os_build: Optional[int] = None      # the Windows build (19041), when the backend knows it
    dump_kind: Optional[str] = None     # "full", "bitmap", "triage"...; None on a live target
    is_live = False                     # a live kernel: slow reads, so costly scans only when asked
    crash_time: Optional[float] = None  # the crash as Unix seconds (a dump's SystemTime); None live or unknown

    def __init__(self, cache_pages: int = 2048) -> None:
        self.stats = ReadStats()
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_pages = cache_pages
        self._module_bases: Optional[List[Tuple[int, int, Module]]] = None
        self._module_starts: List[int] = []
        self._modules_overlap = False
        self._unwind_catalog: Optional[Tuple[object, object]] = None    # (symbol store, UnwindCatalog)

    # -- what a backend provides ----------------------------------------------------------------------
    def _read_backend(self, va: int, size: int) -> bytes:
        """Read exactly ``size`` bytes or raise ``MemoryReadError`` (no caching here)."""
        raise NotImplementedError

    def modules(self) -> List[Module]:
        raise NotImplementedError

    def bugcheck(self) -> Tuple[int, Tuple[int, int, int, int]]:
        raise NotImplementedError

    def context_record(self) -> Dict[str, int]:
        """Registers of the crash context (the dump's saved CONTEXT, or the current thread live)."""
        raise NotImplementedError

    def registers(self) -> Dict[str, int]:
        return self.context_record()

    def kernel_anchors(self) -> Dict[str, int]:
        """Addresses of kernel variables the target knows without symbols (the dump header's
        ``PsLoadedModuleList``, ``PsActiveProcessHead``, ``KdDebuggerDataBlock``). The symbolizer uses them
        to recognise the right kernel symbol table when the kernel's own headers are not in the dump."""
        return {}

    def saved_ranges(self) -> Optional[List[Tuple[int, int]]]:
        """``(start, size)`` of every saved virtual range when the backend keeps only pieces of memory
        (a triage dump); None when memory is whole (full/bitmap dumps, live targets)."""
        return None

    def read_physical(self, pa: int, size: int) -> bytes:
        raise UnsupportedDumpError("this target cannot read physical memory")

    def debugger_symbol_path(self) -> Optional[str]:
        """The symbol path the debugger driving this target uses (its ``.sympath``), or None.

        Inside WinDbg the user already set a symbol path; commands use it when ``--symbols`` is not given,
        so `!pytriage` names the same PDBs `k` does. Offline targets have no debugger: None."""
        return None

    def processor_contexts(self) -> list:
        """Each processor's ``KPRCB.Context`` registers (``pytriage.dump.processors.ProcessorContext``):
        where ``r``/``k`` and ``~Ns`` start in the debugger. Backends that know them override this."""
        raise UnsupportedDumpError("this target does not expose per-processor contexts")

    def thread_start(self, thread: int):
        """Where a walk of the thread at ``thread`` starts (``pytriage.dump.threads.ThreadStart``): its
        processor's context when it was running, else the switch frame at ``KTHREAD.KernelStack``."""
        raise UnsupportedDumpError("this target does not expose thread contexts")

    def stack(self, context: Optional[Dict[str, int]] = None, symbolizer=None, limits=None):
        """The call stack from ``context`` (default: the crash context), unwound by pytriage
        (``pytriage.analysis.stack_walk.StackWalk``: frames, how each was found, why the walk stopped).

        ``symbolizer`` (optional) names the frames, supplies ``_KTRAP_FRAME`` and, through its symbol
        store, the image files of modules whose unwind data is not in the target; ``limits`` is a
        ``WalkLimits``. A debugger backend may override this to return the debugger's own stack.
        """
        from pytriage.analysis.function_table import UnwindCatalog  # analysis sits above the target layer
        from pytriage.analysis.stack_walk import walk_stack

        store = getattr(symbolizer, "store", None)
        cached = self._unwind_catalog                          # one per symbol store: reused by later walks
        if cached is None or cached[0] is not store:
            cached = self._unwind_catalog = (store, UnwindCatalog(self, store))
        return walk_stack(self, context if context is not None else self.context_record(),
                          symbolizer=symbolizer, limits=limits, catalog=cached[1])

    # -- reads, through the cache -----------------------------------------------------------------------
    def _page(self, page_va: int) -> bytes:
        cached = self._cache.get(page_va)
        if cached is not None:
            self._cache.move_to_end(page_va)
            self.stats.cache_hits += 1
            return cached
        self.stats.read_calls += 1
        try:
            data = self._read_backend(page_va, PAGE)
        except MemoryReadError:
            self.stats.failed_reads += 1
            data = _PARTIAL
        else:
            self.stats.bytes_read += len(data)
        self._cache[page_va] = data
        if len(self._cache) > self._cache_pages:
            self._cache.popitem(last=False)
        return data

    def _read_exact(self, va: int, size: int) -> bytes:
        self.stats.read_calls += 1
        try:
            data = self._read_backend(va, size)
        except MemoryReadError:
            self.stats.failed_reads += 1
            raise
        self.stats.bytes_read += len(data)
        return data

    def read(self, va: int, size: int) -> bytes:
        """``size`` bytes at virtual address ``va``; ``MemoryReadError`` names the first bad byte."""
        if size < 0:
            raise ValueError("negative read size")
        va &= 0xFFFFFFFFFFFFFFFF
        out = bytearray()
        while size > 0:
            page_va = va & ~(PAGE - 1)
            offset = va - page_va
            chunk = min(size, PAGE - offset)
            page = self._page(page_va)
            if page is _PARTIAL or len(page) < PAGE:
                out += self._read_exact(va, chunk)      # partly saved page (triage blocks)
            else:
                out += page[offset:offset + chunk]
            va = (va + chunk) & 0xFFFFFFFFFFFFFFFF
            size -= chunk
        return bytes(out)

    def is_valid(self, va: int, size: int = 1) -> bool:
        try:
            self.read(va, size)
        except MemoryReadError:
            return False
        return True

    def read_u8(self, va: int) -> int:
        return self.read(va, 1)[0]

    def read_u16(self, va: int) -> int:
        return struct.unpack("<H", self.read(va, 2))[0]

    def read_u32(self, va: int) -> int:
        return struct.unpack("<I", self.read(va, 4))[0]

    def read_u64(self, va: int) -> int:
        return struct.unpack("<Q", self.read(va, 8))[0]

    def read_pointer(self, va: int) -> int:
        return self.read_u64(va) if self.pointer_size == 8 else self.read_u32(va)

    # -- modules ------------------------------------------------------------------------------------------
    def module_at(self, va: int) -> Optional[Module]:
        if self._module_bases is None:
            self._module_bases = sorted(((m.base, m.end, m) for m in self.modules()), key=lambda row: row[0])
            self._module_starts = [row[0] for row in self._module_bases]
            rows = self._module_bases
            self._modules_overlap = any(a[1] > b[0] for a, b in zip(rows, rows[1:]))
        if not self._modules_overlap:       # binary search: a stack scan asks about every qword it reads
            index = bisect.bisect_right(self._module_starts, va) - 1
            if index >= 0 and va < self._module_bases[index][1]:
                return self._module_bases[index][2]
            return None
        for base, end, module in self._module_bases:
            if base <= va < end:
                return module
        return None

    def module_by_name(self, name: str) -> Optional[Module]:
        wanted = name.lower()
        for module in self.modules():
            if wanted in (module.debugger_name.lower(), module.name.lower()):
                return module
        return None
