"""`OfflineDumpTarget`: the Target interface over our own dump reader (no debugger, any OS)."""

from typing import Dict, List, Optional, Tuple

from pytriage.dump.kernel_dump import KernelDump
from pytriage.target.base import Target
from pytriage.target.model import Module, ModuleList


class OfflineDumpTarget(Target):
    def __init__(self, dump: KernelDump, cache_pages: int = 2048) -> None:
        super().__init__(cache_pages)
        self.dump = dump
        self.machine = dump.header.machine
        self.pointer_size = 8 if dump.header.is64 else 4
        self.os_build = dump.header.build
        self.dump_kind = ("triage" if dump.triage is not None else "full" if dump.header.dump_type == 1
                          else "bitmap" if dump.physical is not None else "header-only")
        self._listing: Optional[ModuleList] = None
        self.crash_time = dump.header.crash_time

    @classmethod
    def open(cls, path: str) -> "OfflineDumpTarget":
        return cls(KernelDump(path))

    def close(self) -> None:
        self.dump.close()

    def _read_backend(self, va: int, size: int) -> bytes:
        return self.dump.read_virtual(va, size)

    def read_physical(self, pa: int, size: int) -> bytes:
        self.stats.read_calls += 1
        data = self.dump.read_physical(pa, size)
        self.stats.bytes_read += len(data)
        return data

    def saved_ranges(self) -> Optional[List[Tuple[int, int]]]:
        if self.dump.triage is None:
            return None
        return [(r.start, r.size) for r in self.dump.triage.regions()]

    def module_list(self) -> ModuleList:
        """Modules with their source and warnings; read through the cache so ``--stats`` counts it."""
        if self._listing is None:
            self._listing = self.dump.load_modules(self.read)
        return self._listing

    def modules(self) -> List[Module]:
        return self.module_list().modules

    def bugcheck(self) -> Tuple[int, Tuple[int, int, int, int]]:
        return self.dump.bugcheck()

    def context_record(self) -> Dict[str, int]:
        return self.dump.context_record()

    def processor_contexts(self) -> list:
        return self.dump.processor_contexts(self.read)

    def thread_start(self, thread: int):
        return self.dump.thread_start(thread, self.read)

    def kernel_anchors(self) -> Dict[str, int]:
        header = self.dump.header
        anchors = {"PsLoadedModuleList": header.ps_loaded_module_list,
                   "PsActiveProcessHead": header.ps_active_process_head,
                   "KdDebuggerDataBlock": header.kd_debugger_data_block}
        return {name: va for name, va in anchors.items() if va}
