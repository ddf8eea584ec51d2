"""`KernelDump`: one opened kernel dump file - header, physical memory, virtual memory, modules.

Opening validates the header and every offset/size it will later rely on against the file length, but
reads no memory: the bitmap rank index, translations and the module list are built on first use.
"""

import struct
from typing import Callable, Dict, List, Optional, Tuple

from pytriage.dump import structs as S
from pytriage.dump.context import parse_context
from pytriage.dump.filemap import DumpFile
from pytriage.dump.header import DumpHeader, read_header
from pytriage.dump.modules import walk_loaded_modules
from pytriage.dump.paging import PageTranslator
from pytriage.dump.physical import BitmapPhysicalMemory, PhysicalMemory, RunPhysicalMemory
from pytriage.dump.processors import (
    KDBG_READ_SIZE,
    ProcessorContext,
    context_from_prcb,
    kdbg_fields,
    processor_contexts,
)
from pytriage.dump.threads import ThreadStart, thread_start
from pytriage.dump.triage import TriageDump
from pytriage.errors import DumpFormatError, MemoryReadError, UnsupportedDumpError, format_address
from pytriage.target.model import ModuleList, make_module

BITMAP_TYPES = (2, 5, 6)
MAX_PFN = 1 << 40          # 4 PB of physical memory: anything larger is corruption


class KernelDump:
    """A Windows kernel crash dump opened read-only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = DumpFile(path)
        try:
            self.header: DumpHeader = read_header(self.file)
            self.physical: Optional[PhysicalMemory] = None
            self.triage: Optional[TriageDump] = None
            self.unsupported_reason: Optional[str] = None
            self._translator: Optional[PageTranslator] = None
            self._modules: Optional[ModuleList] = None
            self._setup_memory()
        except BaseException:
            self.file.close()
            raise

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "KernelDump":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening ------------------------------------------------------------------------------------
    def _setup_memory(self) -> None:
        h = self.header
        if not h.is64:
            self.unsupported_reason = "32-bit (PAGEDUMP) dumps: only the header is read"
            return
        if h.machine not in ("AMD64", "ARM64"):
            self.unsupported_reason = "machine type %s is not supported" % h.machine
            return
        if h.dump_type == 1:
            self._setup_full()
        elif h.dump_type in BITMAP_TYPES:
            self._setup_bitmap()
        elif h.dump_type == 4:
            self.triage = TriageDump(self.file)
        else:
            self.unsupported_reason = "DumpType %d (%s): only the header is read" % (h.dump_type, h.dump_type_name)
            return
        if h.machine == "ARM64" and self.physical is not None:
            self.unsupported_reason = "ARM64 page tables are not supported: header, bugcheck and context only"

    def _setup_full(self) -> None:
        fields = self.header.fields
        count = int(fields["NumberOfRuns"])  # type: ignore[arg-type]
        if count > S.H64_MAX_RUNS:
            raise DumpFormatError("PhysicalMemoryBlock.NumberOfRuns %d is more than the header holds (%d)"
                                  % (count, S.H64_MAX_RUNS), 0x88)
        runs: List[Tuple[int, int]] = []
        total = 0
        for i in range(count):
            at = S.H64_RUNS_OFFSET + 16 * i
            base, pages = struct.unpack_from("<QQ", self.file.view, at)
            if base + pages > MAX_PFN:
                raise DumpFormatError("physical memory run %d (BasePage 0x%x, PageCount 0x%x) is absurd"
                                      % (i, base, pages), at)
            runs.append((base, pages))
            total += pages
        needed = S.HEADER64_SIZE + total * S.PAGE_SIZE
        if needed > self.file.size:
            raise DumpFormatError("physical memory runs need 0x%x bytes but the file has 0x%x (truncated)"
                                  % (needed, self.file.size), self.file.size)
        self.physical = RunPhysicalMemory(self.file, runs, S.HEADER64_SIZE)

    def _setup_bitmap(self) -> None:
        bmp = S.BITMAP_HEADER.parse(self.file.view, S.HEADER64_SIZE)
        if bmp["Signature"] not in (b"SDMP", b"FDMP") or bmp["ValidDump"] != b"DUMP":
            raise DumpFormatError("bad bitmap dump signature %r/%r (expected SDMP or FDMP, DUMP)"
                                  % (bmp["Signature"], bmp["ValidDump"]), S.HEADER64_SIZE)
        bits = int(bmp["Pages"])  # type: ignore[arg-type]
        first = int(bmp["FirstPage"])  # type: ignore[arg-type]
        present = int(bmp["TotalPresentPages"])  # type: ignore[arg-type]
        if bits > MAX_PFN:
            raise DumpFormatError("bitmap size %d bits is absurd" % bits, S.HEADER64_SIZE + 0x30)
        self.file.check(S.BITMAP_OFFSET, (bits + 7) // 8, "page bitmap")
        bitmap_end = S.BITMAP_OFFSET + (bits + 7) // 8
        if first < bitmap_end:
            raise DumpFormatError("FirstPage 0x%x overlaps the page bitmap (ends at 0x%x)" % (first, bitmap_end),
                                  S.HEADER64_SIZE + 0x20)
        capacity = max(0, (self.file.size - first) // S.PAGE_SIZE)
        if present > capacity:
            raise DumpFormatError("bitmap header claims %d pages but the file holds only %d (truncated?)"
                                  % (present, capacity), S.HEADER64_SIZE + 0x28)
        self.physical = BitmapPhysicalMemory(self.file, S.BITMAP_OFFSET, bits, first, capacity)

    # -- facts --------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.header.dump_type_name

    def bugcheck(self) -> Tuple[int, Tuple[int, int, int, int]]:
        return self.header.bugcheck_code, self.header.bugcheck_parameters  # type: ignore[return-value]

    def context_record(self) -> Dict[str, int]:
        """Registers of the CONTEXT saved in the header (for triage dumps: the exception context)."""
        if not self.header.is64:
            raise UnsupportedDumpError("32-bit dumps: the context record is not decoded")
        return parse_context(self.file.view, self.header.machine, S.H64_CONTEXT_OFFSET)

    def processor_contexts(self, read: Optional[Callable[[int, int], bytes]] = None) -> List[ProcessorContext]:
        """Each processor's ``KPRCB.Context`` registers (DESIGN 5: every processor's context where the dump
        has them). Triage dumps keep only the crashing processor's KPRCB; ``read`` defaults to
        ``read_virtual`` (the Target passes its cached, counted reader)."""
        self._require_memory()
        if self.header.machine != "AMD64":
            raise UnsupportedDumpError("processor contexts are read for x64 dumps only")
        read = read or self.read_virtual
        if self.triage is not None:
            kdbg = self.triage.debugger_data()
            fields = kdbg_fields(kdbg, "copy in the triage dump")
            prcb_offset = int(self.triage.header["PrcbOffset"])  # type: ignore[arg-type]
            if not prcb_offset:
                raise DumpFormatError("this triage dump saved no KPRCB (PrcbOffset is 0)")
            copy = self.file.read(prcb_offset, max(fields["OffsetPrcbContext"], fields["OffsetPrcbNumber"],
                                                   fields["OffsetPrcbCurrentThread"]) + 8, "KPRCB copy")
            number = struct.unpack_from("<H", copy, fields["OffsetPrcbNumber"])[0]
            return [context_from_prcb(read, number, None, copy, fields["OffsetPrcbContext"],
                                      fields["OffsetPrcbCurrentThread"] or None)]
        kdbg, where = self.debugger_data(read)
        return processor_contexts(read, kdbg, self.header.processors, where)

    def debugger_data(self, read: Optional[Callable[[int, int], bytes]] = None) -> Tuple[bytes, str]:
        """The KDDEBUGGER_DATA64 bytes (a triage dump's copy, else the block in memory) and where they are."""
        self._require_memory()
        if self.triage is not None:
            return self.triage.debugger_data(), "copy in the triage dump"
        read = read or self.read_virtual
        return (read(self.header.kd_debugger_data_block, KDBG_READ_SIZE),
                "at %s" % format_address(self.header.kd_debugger_data_block))

    def thread_start(self, thread: int, read: Optional[Callable[[int, int], bytes]] = None) -> ThreadStart:
        """Where a stack walk of the thread at ``thread`` starts (WinDbg ``.thread``): see ``dump.threads``."""
        if self.header.machine != "AMD64":
            raise UnsupportedDumpError("thread contexts are read for x64 dumps only")
        read = read or self.read_virtual
        kdbg, where = self.debugger_data(read)
        return thread_start(read, kdbg, where, thread, self.processor_contexts(read))

    def exception_record(self) -> Dict[str, object]:
        if not self.header.is64:
            raise UnsupportedDumpError("32-bit dumps: the exception record is not decoded")
        return S.EXCEPTION_RECORD64.parse(self.file.view, S.H64_EXCEPTION_OFFSET)

    # -- memory -------------------------------------------------------------------------------------
    def _require_memory(self) -> None:
        if self.unsupported_reason:
            raise UnsupportedDumpError("memory of this dump cannot be read: %s" % self.unsupported_reason)

    def read_physical(self, pa: int, size: int) -> bytes:
        self._require_memory()
        if self.physical is None:
            raise UnsupportedDumpError("a %s dump holds no physical memory" % self.kind)
        return self.physical.read(pa, size)

    @property
    def translator(self) -> PageTranslator:
        if self._translator is None:
            self._require_memory()
            assert self.physical is not None
            self._translator = PageTranslator(self.physical, self.header.directory_table_base)
        return self._translator

    def translate(self, va: int) -> int:
        self._require_memory()
        if self.physical is None:
            raise UnsupportedDumpError("a triage dump has no page tables: virtual addresses map to saved blocks")
        return self.translator.translate(va)

    def read_virtual(self, va: int, size: int) -> bytes:
        """Read kernel virtual memory (crossing pages is fine; every page must be readable)."""
        self._require_memory()
        if size < 0:
            raise ValueError("negative read size")
        if self.triage is not None:
            return self.triage.read(va, size)
        if size <= S.PAGE_SIZE - (va & 0xFFF):
            return self._read_virtual_in_page(va, size)        # the common case
        out = bytearray()
        while size > 0:
            chunk = min(size, S.PAGE_SIZE - (va & 0xFFF))
            out += self._read_virtual_in_page(va, chunk)
            va += chunk
            size -= chunk
        return bytes(out)

    def _read_virtual_in_page(self, va: int, size: int) -> bytes:
        pa = self.translator.translate(va)
        assert self.physical is not None
        try:
            return self.physical.read(pa, size)
        except MemoryReadError as exc:
            raise MemoryReadError(va, "maps to physical 0x%x, %s" % (pa, exc.reason)) from None

    def read_virtual_page(self, page_va: int) -> bytes:
        """One whole 4 KB page (the unit the Target's cache stores)."""
        return self.read_virtual(page_va & ~0xFFF, S.PAGE_SIZE)

    # -- modules ------------------------------------------------------------------------------------
    def modules(self) -> ModuleList:
        if self._modules is None:
            self._modules = self.load_modules(self.read_virtual)
        return self._modules

    def load_modules(self, read: Callable[[int, int], bytes]) -> ModuleList:
        """List modules, reading virtual memory through ``read`` (a Target passes its cached reader)."""
        if self.triage is not None:
            result = ModuleList(source="triage dump driver list")
            for i, drv in enumerate(self.triage.drivers()):
                result.modules.append(make_module(drv.name, drv.base, drv.size, drv.timestamp, drv.checksum, i))
            return result
        if self.unsupported_reason:
            return ModuleList(source="none", warnings=["module list unavailable: %s" % self.unsupported_reason])
        return walk_loaded_modules(read, self.header.ps_loaded_module_list)


def open_dump(path: str) -> KernelDump:
    """Open a kernel dump; raises ``DumpFormatError`` with the offending file offset on bad input."""
    return KernelDump(path)
