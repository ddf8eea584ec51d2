"""`PybagTarget`: the Target interface over pybag (DbgEng driven over COM from Python; Windows only).

Used for headless dump analysis (``pytriage batch --engine dbgeng``: ``PybagTarget.open_dump``) and live kernel
attach over KDNET (``pytriage live --kdnet port=...,key=...``: ``PybagTarget.attach_kdnet``). pybag is imported
only when one of those is called, never when pytriage is imported: the core must run on any OS.

Only memory reads go to the target; everything else (module list, processor contexts, thread starts, the
stack) is computed by pytriage's own code from those reads, so the analysis is the same one the offline engine
runs, and the page cache of ``Target`` counts every byte a slow KDNET link has to carry.

pybag 2.2.15 (github dshikashio/Pybag) gaps this adapter works around:

- ``CrashDbg.load_dump`` cannot open anything: ``DebugClient.OpenDumpFile`` raises ``E_NOTIMPL_Error``
  (pybag/dbgeng/idebugclient.py). We run DbgEng's ``.opendump`` command through ``cmd`` and ``go()``.
- ``IDebugControl.ReadBugCheckData`` is wrapped with 32-bit outputs for the four 64-bit arguments
  (pybag/dbgeng/idebugcontrol.py), which truncates them and overruns the buffers. We parse ``.bugcheck``.
- ``IDebugDataSpaces.ReadPhysical``, ``ReadDebuggerData``, ``GetSystemVersion*`` and
  ``GetCurrentTimeDate`` raise ``E_NOTIMPL_Error``. Physical reads go to the raw COM method underneath the
  wrapper (same four arguments as ``ReadVirtual``); the facts come from ``vertarget`` and ``.dumpdebug``.
- ``read`` may return fewer bytes than asked (DbgEng stops at the first unreadable page and pybag returns the
  prefix); a short answer is turned into ``MemoryReadError`` at the first missing byte.
- Failures surface as ``OSError`` subclasses (``DbgEngError``) or a bare ``WindowsError(hresult)`` for codes
  pybag does not know; we catch ``OSError`` for reads and map it to ``MemoryReadError``.
- ``KernelDbg.attach`` swallows ``AttachKernel`` errors in its event thread and waits forever for the
  target; we ask for an initial break and check with ``vertarget`` that a kernel answered.
- ``IDebugSymbols.GetSymbolPath`` raises ``E_NOTIMPL_Error`` (pybag/dbgeng/idebugsymbols.py); the session's
  symbol path (the default for ``--symbols``) is read from the ``.sympath`` command's first line.
- DbgEng renames the kernel and HAL images (``ntkrnlmp.exe``, ``hal.exe``) in its module list, so the module
  list is walked from ``PsLoadedModuleList`` like the offline engine does; DbgEng's list is only a fallback.
"""

import calendar
import datetime
import re
from typing import Callable, Dict, List, Optional, Tuple

from pytriage.dump.modules import walk_loaded_modules
from pytriage.dump.processors import KDBG_READ_SIZE, processor_contexts
from pytriage.dump.threads import thread_start
from pytriage.errors import MemoryReadError, PytriageError, UnsupportedDumpError, format_address
from pytriage.target.base import Target
from pytriage.target.model import Module, ModuleList, debugger_module_name

# the registers of the crash context, as DbgEng names them -> pytriage's CONTEXT names
_REGISTERS = [("rax", "rax"), ("rcx", "rcx"), ("rdx", "rdx"), ("rbx", "rbx"), ("rsi", "rsi"), ("rdi", "rdi"),
              ("rip", "rip"), ("rsp", "rsp"), ("rbp", "rbp"), ("r8", "r8"), ("r9", "r9"), ("r10", "r10"),
              ("r11", "r11"), ("r12", "r12"), ("r13", "r13"), ("r14", "r14"), ("r15", "r15"),
              ("efl", "rflags"), ("cs", "cs"), ("ss", "ss"), ("ds", "ds"), ("es", "es"), ("fs", "fs"),
              ("gs", "gs"), ("mxcsr", "mxcsr")]
_MACHINES = {"x64": "AMD64", "x86": "I386", "arm64": "ARM64"}
_DUMP_KINDS = [("bitmap", "bitmap"), ("full", "full"), ("mini", "triage"), ("small", "triage")]
_HEX = r"(?:0x)?([0-9a-fA-F`]+)"


def _hex(text: str) -> int:
    return int(text.replace("`", ""), 16)


def _field(text: str, pattern: str) -> Optional[int]:
    m = re.search(pattern, text, re.MULTILINE)
    return _hex(m.group(1)) if m else None


def _session_time(text: str) -> Optional[float]:
    """vertarget's ``Debug session time: Sun Feb 21 01:38:22.987 2021 (UTC + 0:00)`` as Unix seconds.

    DbgEng prints milliseconds only, so this is the crash time to the millisecond (the offline engine has
    the header's 100 ns units)."""
    m = re.search(r"^Debug session time: \w+ (\w+) +(\d+) (\d+):(\d+):(\d+)\.(\d+) (\d+) \(UTC ([+-]) (\d+):(\d+)\)",
                  text, re.MULTILINE)
    if not m:
        return None
    month, day, hh, mm, ss, ms, year, sign, zh, zm = m.groups()
    try:
        when = datetime.datetime.strptime("%s %s %s" % (month, day, year), "%b %d %Y")
    except ValueError:
        return None
    seconds = calendar.timegm(when.timetuple()) + int(hh) * 3600 + int(mm) * 60 + int(ss)
    zone = (int(zh) * 3600 + int(zm) * 60) * (1 if sign == "+" else -1)
    return seconds - zone + int(ms) / 1000.0


def import_pybag():
    """``import pybag``, turning its import-time failures into one line.

    pybag imports ``winreg`` and loads dbgeng.dll from a WinDbg install when imported, so off Windows or
    without the Debugging Tools it fails with ImportError, RuntimeError or OSError."""
    try:
        import pybag  # noqa: F401  (Windows only; optional extra pytriage[dbgeng])
    except (ImportError, RuntimeError, OSError) as exc:
        raise PytriageError("pybag (DbgEng for Python, Windows only) is not usable: %s" % (
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None
    return pybag


class PybagTarget(Target):
    """A dump opened, or a kernel attached, by DbgEng through a pybag debugger object (``dbg``)."""

    def __init__(self, dbg, live: bool = False, cache_pages: int = 2048) -> None:
        super().__init__(cache_pages)
        self.dbg = dbg
        self.is_live = live
        self._vertarget = self._command("vertarget")
        self._dumpdebug = "" if live else self._command(".dumpdebug")
        self._listing: Optional[ModuleList] = None
        self._kdbg: Optional[Tuple[bytes, str]] = None
        m = re.search(r"Kernel Version (\d+) .*? (\S+)\s*$", self._vertarget, re.MULTILINE)
        if m is None:
            raise PytriageError("DbgEng has no kernel target (vertarget printed no kernel version)")
        self.os_build = int(m.group(1))
        self.machine = _MACHINES.get(m.group(2).lower(), m.group(2))
        self.pointer_size = 4 if self.machine == "I386" else 8
        procs = re.search(r"\((\d+) procs\)", self._vertarget)
        self.processors = int(procs.group(1)) if procs else 1
        if not live:
            first = self._dumpdebug.strip().splitlines()[0].lower() if self._dumpdebug.strip() else ""
            self.dump_kind = next((kind for word, kind in _DUMP_KINDS if " %s " % word in first), None)
            self.crash_time = _session_time(self._vertarget)
            self.processors = _field(self._dumpdebug, r"^NumberProcessors\s+" + _HEX) or self.processors

    # -- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open_dump(cls, path: str, pybag_module=None) -> "PybagTarget":
        """Open a kernel dump headless with ``pybag.CrashDbg``.

        pybag's own ``load_dump`` is tried first (a later pybag may implement OpenDumpFile); when it raises,
        DbgEng's ``.opendump`` command opens the file and ``go()`` lets the engine load it."""
        pybag = pybag_module if pybag_module is not None else import_pybag()
        try:
            dbg = pybag.CrashDbg()
        except Exception as exc:   # COM or thread start-up failure inside pybag: report it in one line
            raise PytriageError("pybag could not start DbgEng: %s" % (exc or type(exc).__name__)) from None
        if '"' in path or any(ord(ch) < 0x20 for ch in path):
            # DbgEng's command parser has no escape for a quote inside a quoted path (and Windows file names
            # cannot hold one): refuse instead of running a command line the path could rewrite.
            raise PytriageError("cannot open %r through DbgEng: the path holds a quote or a control character"
                                % path)
        try:
            dbg.load_dump(path)
        except OSError:
            try:
                dbg.cmd('.opendump "%s"' % path)
                dbg.go()
            except OSError as exc:
                raise PytriageError("DbgEng could not open %s: %s" % (path, exc or type(exc).__name__)) from None
        return cls(dbg, live=False)

    @classmethod
    def attach_kdnet(cls, connect_string: str, pybag_module=None) -> "PybagTarget":
        """Attach to a live kernel over KDNET (``port=50000,key=1.2.3.4``, with or without ``net:``).

        The target must be broken in to be read, so the attach asks DbgEng for an initial break; pybag hides
        AttachKernel's errors, so ``vertarget`` then proves a kernel is there."""
        pybag = pybag_module if pybag_module is not None else import_pybag()
        options = connect_string if connect_string.lower().startswith("net:") else "net:" + connect_string
        try:
            dbg = pybag.KernelDbg()
            dbg.attach(options, initial_break=True)
        except Exception as exc:
            raise PytriageError("KDNET attach (%s) failed: %s" % (options, exc or type(exc).__name__)) from None
        return cls(dbg, live=True)

    def close(self) -> None:
        """A live kernel is detached first (pybag's ``KernelDbg.detach``: ``EndSession(ACTIVE_DETACH)``), so the
        machine runs on instead of staying broken in once pytriage is done with it."""
        if self.is_live and hasattr(self.dbg, "detach"):
            try:
                self.dbg.detach()
            except OSError:
                pass               # the link is gone already: nothing left to let go of
        self.dbg.Release()

    def debugger_symbol_path(self) -> Optional[str]:
        """The engine's symbol path, from ``.sympath``'s "Symbol search path is: ..." line (pybag does not
        implement GetSymbolPath); None when it is empty."""
        found = re.search(r"^Symbol search path is: (.*)$", self._command(".sympath"), re.MULTILINE)
        path = found.group(1).strip() if found else ""
        return None if not path or path == "<empty>" else path

    # -- DbgEng calls ---------------------------------------------------------------------------------------
    def _command(self, line: str) -> str:
        """Output of one DbgEng command (only for facts no pybag API returns correctly)."""
        try:
            return self.dbg.cmd(line)
        except OSError as exc:
            raise PytriageError("DbgEng command %r failed: %s" % (line, exc or type(exc).__name__)) from None

    def _read_backend(self, va: int, size: int) -> bytes:
        try:
            data = self.dbg.read(va, size)
        except OSError as exc:
            raise MemoryReadError(va, "DbgEng cannot read it (%s)" % (exc or type(exc).__name__)) from None
        if len(data) < size:
            raise MemoryReadError(va + len(data), "DbgEng read only 0x%x of 0x%x bytes" % (len(data), size))
        return bytes(data)

    def read_physical(self, pa: int, size: int) -> bytes:
        """Physical memory through IDebugDataSpaces::ReadPhysical (pybag's wrapper raises E_NOTIMPL, so
        the COM method under it is called with a ctypes buffer, as pybag's ReadVirtual does)."""
        import ctypes

        self.stats.read_calls += 1
        try:
            return self._count(self.dbg._dataspaces.ReadPhysical(pa, size), pa, size)
        except OSError:
            pass                                    # E_NOTIMPL_Error in pybag 2.2.15: use the raw method
        buffer = ctypes.create_string_buffer(size)
        done = ctypes.c_ulong()
        hr = self.dbg._dataspaces._data.ReadPhysical(pa, buffer, size, ctypes.byref(done))
        if hr:
            self.stats.failed_reads += 1
            raise MemoryReadError(pa, "DbgEng cannot read it (HRESULT 0x%08x)" % (hr & 0xFFFFFFFF), physical=True)
        return self._count(buffer.raw[:done.value], pa, size)

    def _count(self, data: bytes, pa: int, size: int) -> bytes:
        if len(data) < size:
            self.stats.failed_reads += 1
            raise MemoryReadError(pa + len(data), "DbgEng read only 0x%x of 0x%x bytes" % (len(data), size),
                                  physical=True)
        self.stats.bytes_read += len(data)
        return bytes(data)

    # -- crash facts ------------------------------------------------------------------------------------------
    def bugcheck(self) -> Tuple[int, Tuple[int, int, int, int]]:
        """From ``.bugcheck``: pybag's ReadBugCheckData truncates the 64-bit arguments."""
        text = self._command(".bugcheck")
        code = _field(text, r"^Bugcheck code ([0-9a-fA-F]+)\s*$")
        m = re.search(r"^Arguments ((?:[0-9a-fA-F`]+ ?){4})\s*$", text, re.MULTILINE)
        if code is None or m is None:
            raise PytriageError("DbgEng's .bugcheck printed no bugcheck data: %r" % text.strip()[:200])
        args = [_hex(a) for a in m.group(1).split()]
        return code, (args[0], args[1], args[2], args[3])

    def context_record(self) -> Dict[str, int]:
        """The current thread's registers: on a dump DbgEng starts at the crash context, live at the thread
        that broke in. DbgEng has no register for CONTEXT.ContextFlags, so that key is absent."""
        regs: Dict[str, int] = {}
        for engine_name, name in _REGISTERS:
            try:
                value = self.dbg.reg[engine_name]
            except KeyError:
                continue                          # not a register of this machine
            except OSError as exc:
                raise PytriageError("DbgEng cannot read register %s: %s" % (engine_name, exc)) from None
            regs[name] = int(value)
        if not regs:
            raise UnsupportedDumpError("DbgEng gives no x64 registers for this target")
        return regs

    def kernel_anchors(self) -> Dict[str, int]:
        anchors = {"PsLoadedModuleList": self._anchor("PsLoadedModuleList"),
                   "PsActiveProcessHead": self._anchor("PsActiveProcessHead"),
                   "KdDebuggerDataBlock": self._anchor("KdDebuggerDataBlock")}
        return {name: va for name, va in anchors.items() if va}

    def _anchor(self, name: str) -> Optional[int]:
        """A kernel variable's address: the dump header (``.dumpdebug``), vertarget, else nt's symbols."""
        va = _field(self._dumpdebug, r"^%s\s+%s" % (name, _HEX))
        if va is None and name == "PsLoadedModuleList":
            va = _field(self._vertarget, r"PsLoadedModuleList = " + _HEX)
        if va is None:
            try:
                found = self.dbg.symbol("nt!" + name)
            except OSError:
                found = -1
            va = found if isinstance(found, int) and found > 0 else None
        return va

    # -- modules ----------------------------------------------------------------------------------------------
    def module_list(self) -> ModuleList:
        """Walk ``PsLoadedModuleList`` through our cached reads (the loader's names, as offline); DbgEng's
        module list when the head is unknown or the walk finds nothing."""
        if self._listing is None:
            head = self._anchor("PsLoadedModuleList")
            listing = walk_loaded_modules(self.read, head) if head else ModuleList(
                source="none", warnings=["PsLoadedModuleList address unknown"])
            if not listing.modules:
                engine = self._engine_modules()
                engine.warnings = listing.warnings + engine.warnings
                listing = engine
            self._listing = listing
        return self._listing

    def _engine_modules(self) -> ModuleList:
        result = ModuleList(source="DbgEng module list")
        try:
            rows = self.dbg.module_list()
        except OSError as exc:
            result.warnings.append("DbgEng module list unavailable: %s" % exc)
            return result
        for index, ((image, module_name, _loaded), params) in enumerate(rows):
            name = image.replace("/", "\\").rsplit("\\", 1)[-1]
            result.modules.append(Module(name=name, base=params.Base, size=params.Size,
                                         timestamp=params.TimeDateStamp, checksum=params.Checksum,
                                         image_path=image,
                                         debugger_name=module_name or debugger_module_name(name, index == 0)))
        return result

    def modules(self) -> List[Module]:
        return self.module_list().modules

    # -- processors and threads (pytriage's own decoding over our reads) ----------------------------------------
    def _debugger_data(self) -> Tuple[bytes, str]:
        if self._kdbg is None:
            va = self._anchor("KdDebuggerDataBlock")
            if va is None:
                raise UnsupportedDumpError("KdDebuggerDataBlock address unknown (no dump header, no nt symbols)")
            self._kdbg = (self.read(va, KDBG_READ_SIZE), "at %s" % format_address(va))
        return self._kdbg

    def processor_contexts(self) -> list:
        if self.machine != "AMD64":
            raise UnsupportedDumpError("processor contexts are read for x64 targets only")
        kdbg, where = self._debugger_data()       # not kept: live, the processors move on between commands
        return processor_contexts(self.read, kdbg, self.processors, where)

    def thread_start(self, thread: int):
        if self.machine != "AMD64":
            raise UnsupportedDumpError("thread contexts are read for x64 targets only")
        kdbg, where = self._debugger_data()
        reader: Callable[[int, int], bytes] = self.read
        return thread_start(reader, kdbg, where, thread, self.processor_contexts())
