"""`PykdTarget`: the Target interface over pykd, the Python extension running inside WinDbg/CDB/KD.

Inside the debugger every read is a DbgEng call, and over KDNET a round trip to the target machine, so
this backend asks pykd for whole pages (the base class caches them) with ONE ``loadBytes`` call per request.
Everything else comes from pykd's own API (module list, bugcheck data, registers, version, dump type);
``dbgCommand`` is not used: no fact this backend needs lacks an API. pykd is imported only when a
``PykdTarget`` is built without a module, so the core package never needs pykd installed (DESIGN 2).

The pykd API this relies on (pykd 0.3.4.15; cited in ``tests/fakes/pykd.py``): ``loadBytes``,
``getModulesList`` and the ``module`` methods, ``bugCheckData``, ``reg``, ``isDumpAnalyzing``,
``isKernelDebugging``, ``getDumpType``/``dumpType``, ``getCPUType``/``CPUType``, ``is64bitSystem``,
``getSystemVersion``, ``currentTime``, ``getOffset``, ``getNumberThreads`` and the exceptions
``DbgException`` > ``MemoryException`` / ``SymbolException``.
"""

import ntpath
import re
from typing import Callable, Dict, List, Optional, Tuple

from pytriage.dump.processors import KDBG_READ_SIZE
from pytriage.dump.processors import processor_contexts as _processor_contexts
from pytriage.dump.threads import thread_start as _thread_start
from pytriage.errors import MemoryReadError, PytriageError, UnsupportedDumpError, format_address
from pytriage.target.base import Target
from pytriage.target.model import Module

# kdlib's MemoryException text: "Memory exception at 0x<hex> target virtual|physical address". The Python
# exception carries only that text, so the failing address is taken back out of it.
_MEMORY_AT = re.compile(r"at 0x([0-9a-fA-F]+)")

# DbgEng register names -> the names of pytriage's AMD64 context record (pytriage.dump.structs order).
# ``context_flags`` has no register behind it and is left out.
_AMD64_REGISTERS = (("rax", "rax"), ("rcx", "rcx"), ("rdx", "rdx"), ("rbx", "rbx"), ("rsi", "rsi"),
                    ("rdi", "rdi"), ("rip", "rip"), ("rsp", "rsp"), ("rbp", "rbp"), ("r8", "r8"), ("r9", "r9"),
                    ("r10", "r10"), ("r11", "r11"), ("r12", "r12"), ("r13", "r13"), ("r14", "r14"),
                    ("r15", "r15"), ("rflags", "efl"), ("cs", "cs"), ("ss", "ss"), ("ds", "ds"), ("es", "es"),
                    ("fs", "fs"), ("gs", "gs"), ("mxcsr", "mxcsr"))

_KERNEL_ANCHORS = ("PsLoadedModuleList", "PsActiveProcessHead", "KdDebuggerDataBlock")


class PykdTarget(Target):
    """A kernel target seen through pykd: a dump opened in WinDbg, or a live kernel over KD/KDNET."""

    def __init__(self, pykd_module=None, cache_pages: int = 2048) -> None:
        super().__init__(cache_pages)
        if pykd_module is None:
            import pykd as pykd_module  # only here: the core must import without pykd installed
        self.pykd = pykd_module
        self._modules: Optional[List[Module]] = None
        self._context: Optional[Dict[str, int]] = None
        self._anchors: Optional[Dict[str, int]] = None
        self._processors: Optional[list] = None
        p = pykd_module
        if not self._call("isKernelDebugging", p.isKernelDebugging):
            raise UnsupportedDumpError("the debugger is not on a kernel target: pytriage reads kernel targets only")
        cpu = self._call("getCPUType", p.getCPUType)
        self.machine = next((name for name in ("AMD64", "ARM64", "I386", "ARM")
                             if hasattr(p.CPUType, name) and cpu == getattr(p.CPUType, name)), str(cpu))
        self.pointer_size = 8 if self._call("is64bitSystem", p.is64bitSystem) else 4
        self.is_live = not self._call("isDumpAnalyzing", p.isDumpAnalyzing)
        try:
            self.os_build = int(self._call("getSystemVersion", p.getSystemVersion).buildNumber)
        except PytriageError:
            self.os_build = None
        if not self.is_live:
            kind = self._call("getDumpType", p.getDumpType)
            # DbgEng's kernel dump qualifiers: small = triage, default = kernel summary (a bitmap dump),
            # full = complete memory (which may itself be a bitmap-format file: DbgEng does not say).
            kinds = {p.dumpType.KernelSmall: "triage", p.dumpType.Kernel: "bitmap", p.dumpType.KernelFull: "full"}
            self.dump_kind = kinds.get(kind, str(kind))
            # GetCurrentTimeDate on a dump is the dump's time: whole seconds (the header keeps 100 ns units).
            self.crash_time = float(self._call("currentTime", p.currentTime))

    # -- pykd calls, with pykd's exceptions turned into pytriage's one-line errors -----------------------------
    def _call(self, what: str, fn: Callable, *args, physical: bool = False, address: Optional[int] = None):
        try:
            return fn(*args)
        except self.pykd.MemoryException as exc:
            raise self._memory_error(exc, address, physical) from None
        except self.pykd.DbgException as exc:
            raise PytriageError("pykd.%s failed: %s" % (what, _one_line(exc))) from None

    @staticmethod
    def _memory_error(exc: BaseException, fallback: Optional[int], physical: bool) -> MemoryReadError:
        """pykd names the address kdlib could not read (the request's start, or the first byte past a
        partial read): keep it, so the error names the same byte the offline reader would."""
        found = _MEMORY_AT.search(str(exc))
        address = int(found.group(1), 16) if found else (fallback or 0)
        return MemoryReadError(address, "not readable through the debugger (pykd.MemoryException)", physical)

    # -- memory -----------------------------------------------------------------------------------------------
    def _read_backend(self, va: int, size: int) -> bytes:
        """One ``loadBytes`` call for the whole range (the base class asks page by page and caches)."""
        if size == 0:
            return b""
        data = bytes(self._call("loadBytes", self.pykd.loadBytes, va, size, address=va))
        if len(data) != size:
            raise MemoryReadError((va + len(data)) & 0xFFFFFFFFFFFFFFFF, "the debugger returned %d of %d bytes"
                                  % (len(data), size))
        return data

    def read_physical(self, pa: int, size: int) -> bytes:
        """Physical reads are not cached (few, and only for MDL pages); counted like the offline backend."""
        if size == 0:
            return b""
        self.stats.read_calls += 1
        try:
            data = bytes(self._call("loadBytes", self.pykd.loadBytes, pa, size, True, physical=True, address=pa))
        except MemoryReadError:
            self.stats.failed_reads += 1
            raise
        self.stats.bytes_read += len(data)
        if len(data) != size:
            raise MemoryReadError(pa + len(data), "the debugger returned %d of %d bytes" % (len(data), size), True)
        return data

    def debugger_symbol_path(self) -> Optional[str]:
        """``pykd.getSymbolPath()`` (pykd/pymod.cpp, "Returns current symbol path"): the session's ``.sympath``."""
        path = str(self._call("getSymbolPath", self.pykd.getSymbolPath) or "").strip()
        return path or None

    # -- crash facts ------------------------------------------------------------------------------------------
    def modules(self) -> List[Module]:
        """The debugger's own module list (what ``lm`` shows): no target memory read for it.

        ``image()`` is DbgEng's image name, which in kernel mode has no directory, so ``image_path`` is
        that name (the loader's full path is not in pykd's API)."""
        if self._modules is None:
            out = []
            for m in self._call("getModulesList", self.pykd.getModulesList):
                image = str(self._call("module.image", m.image))
                out.append(Module(name=ntpath.basename(image) or image, base=int(self._call("module.begin", m.begin)),
                                  size=int(self._call("module.size", m.size)),
                                  timestamp=int(self._call("module.timestamp", m.timestamp)),
                                  checksum=int(self._call("module.checksum", m.checksum)),
                                  image_path=image, debugger_name=str(self._call("module.name", m.name))))
            self._modules = out
        return self._modules

    def bugcheck(self) -> Tuple[int, Tuple[int, int, int, int]]:
        data = [int(v) for v in self._call("bugCheckData", self.pykd.bugCheckData)]
        params = (data[1:] + [0, 0, 0, 0])[:4]
        return data[0], (params[0], params[1], params[2], params[3])

    def context_record(self) -> Dict[str, int]:
        """The debugger's current register context: on a dump just opened, the crash context (a ``.cxr``
        or ``~Ns`` typed before the command changes it, as it changes ``r``)."""
        if self.machine != "AMD64":
            raise UnsupportedDumpError("registers are read for x64 targets only, not %s" % self.machine)
        if self._context is None:
            self._context = {ours: int(self._call("reg", self.pykd.reg, theirs)) for ours, theirs in _AMD64_REGISTERS}
        return dict(self._context)

    def kernel_anchors(self) -> Dict[str, int]:
        """The kernel variables the dump header would name, from the debugger's symbols (none without them)."""
        if self._anchors is None:
            self._anchors = {}
            for name in _KERNEL_ANCHORS:
                try:
                    va = int(self._call("getOffset", self.pykd.getOffset, "nt!" + name))
                except PytriageError:
                    continue
                if va:
                    self._anchors[name] = va
        return dict(self._anchors)

    def _debugger_data(self) -> Tuple[bytes, str]:
        va = self.kernel_anchors().get("KdDebuggerDataBlock")
        if not va:
            raise UnsupportedDumpError("nt!KdDebuggerDataBlock is unknown to the debugger (are nt symbols loaded?)")
        return self.read(va, KDBG_READ_SIZE), "at %s" % format_address(va)

    def processor_contexts(self) -> list:
        """Each KPRCB's context, found like the offline reader does (KDDEBUGGER_DATA64 -> KiProcessorBlock).
        In kernel mode DbgEng's "threads" are the processors, so ``getNumberThreads`` is the count."""
        if self.machine != "AMD64":
            raise UnsupportedDumpError("processor contexts are read for x64 targets only")
        if self._processors is None:
            kdbg, where = self._debugger_data()
            count = int(self._call("getNumberThreads", self.pykd.getNumberThreads))
            self._processors = _processor_contexts(self.read, kdbg, count, where)
        return list(self._processors)

    def thread_start(self, thread: int):
        if self.machine != "AMD64":
            raise UnsupportedDumpError("thread contexts are read for x64 targets only")
        kdbg, where = self._debugger_data()
        return _thread_start(self.read, kdbg, where, thread, self.processor_contexts())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
