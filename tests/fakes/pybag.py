"""A fake ``pybag`` that answers from pytriage's offline engine, for PybagTarget tests on any OS.

What it reproduces, checked against pybag 2.2.15 (github dshikashio/Pybag, commit 4cf6cdd, "bump version to
2.2.15"; setup.py line 9). Only the names PybagTarget uses are here, with pybag's signatures and return types:

- ``pybag.CrashDbg()`` (pybag/crashdbg.py:4-10): ``load_dump(name)`` calls ``DebugClient.OpenDumpFile``,
  which in 2.2.15 only raises ``E_NOTIMPL_Error`` (pybag/dbgeng/idebugclient.py:171-174). Reproduced.
- ``pybag.KernelDbg()`` (pybag/kerneldbg.py:4-19): ``attach(connect_string, initial_break=False)``; the
  string is DbgEng's ``net:port=N,key=K`` (comment at kerneldbg.py:12). AttachKernel's errors are swallowed
  in the event thread (pybag/pydbg.py:108-114); with no target answering, later commands fail.
- ``DebuggerBase`` (pybag/pydbg.py:122 on):
  ``cmd(cmdline, quiet=True) -> str`` (pydbg.py:289-299: output captured through the output callbacks;
  ``Execute`` failures raise via ``check_err``); ``go(timeout=-1)`` and ``wait(timeout)`` (pydbg.py:177,278);
  ``read(addr, len=1) -> bytes`` (pydbg.py:308-310 -> DebugDataSpaces.ReadVirtual,
  idebugdataspaces.py:21-26: returns ``data[:BytesRead]``, so a partial read comes back short);
  ``symbol(name) -> int`` (pydbg.py:435-440: -1 when E_FAIL); ``module_list()`` (pydbg.py:684-686 ->
  modules.py:208-213): a list of ``((image_name, module_name, loaded_image_name), DEBUG_MODULE_PARAMETERS)``,
  the names from GetModuleNames (idebugsymbols.py:98-116), the parameters with ``Base``, ``Size``,
  ``TimeDateStamp``, ``Checksum`` (DbgEng's struct); ``reg[name]`` (registers.py:53-58: KeyError for an unknown
  name, the value an int for integer registers); ``Release()`` (pydbg.py:144).
  ``_dataspaces.ReadPhysical(offset, size)`` raises ``E_NOTIMPL_Error`` (idebugdataspaces.py:59-63); under it,
  ``_dataspaces._data`` is the comtypes interface whose ``ReadPhysical(Offset, Buffer, BufferSize,
  byref(BytesRead))`` returns the HRESULT (pybag's ``wrap_comclass`` turns COMError into the code,
  exception.py:62-78; the argument list is DbgEng's, tlb/dbgeng.idl).
- Exceptions (pybag/dbgeng/exception.py:10-60): ``DbgEngError(WindowsError)`` and ``E_FAIL_Error``,
  ``E_NOTIMPL_Error``, ``E_UNEXPECTED_Error``... ; an HRESULT not in pybag's table raises a bare
  ``WindowsError(hr)`` (exception.py:56-58). WindowsError is OSError; this fake raises OSError.
  An unreadable address: DbgEng's ReadVirtual fails with HRESULT_FROM_WIN32(ERROR_READ_FAULT) (0x8007001E;
  our belief, not checked against the real engine), which pybag raises as ``WindowsError(hr)``.
- ``.sympath``'s output ("Symbol search path is: ..." then the expanded path in lower case), as the same engine
  printed it (pybag's ``GetSymbolPath`` only raises ``E_NOTIMPL_Error``, idebugsymbols.py:231-235).
- Command output shapes (``vertarget``, ``.bugcheck``, ``.dumpdebug``) and DbgEng's module names for the kernel
  and HAL (``ntkrnlmp.exe``, ``hal.exe``) as Microsoft's dbgeng 10.0.15063 printed them for the ``basic``
  scenario under wine (../shared/tools/dbgeng-wine).

The fake counts its calls and the bytes it served (``calls``, ``bytes_served``) so tests can hold read budgets.
"""

import builtins
import ctypes
import re
from collections import Counter
from typing import Dict, Optional

from pytriage.commands.render import format_uptime, windows_version_line
from pytriage.errors import MemoryReadError, PytriageError, format_address
from pytriage.target.offline import OfflineDumpTarget

__all__ = ["UserDbg", "KernelDbg", "CrashDbg", "DbgEng"]

HRESULT_READ_FAULT = -2147024866      # 0x8007001E as comtypes reports it (signed)
E_FAIL = -2147467259                  # 0x80004005


class _Exceptions:
    """pybag.dbgeng.exception"""

    class DbgEngError(OSError):
        pass

    class E_FAIL_Error(DbgEngError):
        pass

    class E_NOTIMPL_Error(DbgEngError):
        pass

    class E_UNEXPECTED_Error(DbgEngError):
        pass

    class E_NOINTERFACE_Error(DbgEngError):
        pass


class dbgeng:                         # noqa: N801  (pybag.dbgeng is a package: pybag.dbgeng.exception)
    exception = _Exceptions


class DbgEng:
    """pybag.DbgEng (pybag/dbgeng/core.py): only the constants the debugger methods default to."""
    WAIT_INFINITE = 0xFFFFFFFF
    DEBUG_STATUS_GO = 1


# connect string -> dump path: a "live" kernel for KernelDbg.attach, served from a scenario dump
KDNET_TARGETS: Dict[str, str] = {}


def serve_kdnet(connect_string: str, dump_path: str) -> None:
    KDNET_TARGETS[connect_string] = dump_path


class _ModuleParameters:
    """DEBUG_MODULE_PARAMETERS (the fields PybagTarget reads)."""

    def __init__(self, base: int, size: int, timestamp: int, checksum: int) -> None:
        self.Base = base
        self.Size = size
        self.TimeDateStamp = timestamp
        self.Checksum = checksum
        self.Flags = 0


class _Registers:
    """pybag.dbgeng.registers.Registers: ``reg["rax"]``; DbgEng calls the flags register ``efl``."""

    def __init__(self, dbg: "_DebuggerBase") -> None:
        self._dbg = dbg

    def __getitem__(self, key: str) -> int:
        self._dbg.calls["reg"] += 1
        context = self._dbg._require().context_record()
        name = "rflags" if key == "efl" else key
        if name not in context or name == "context_flags":
            raise KeyError(key)
        return context[name]


class _ComDataSpaces:
    """The comtypes IDebugDataSpaces under pybag's wrapper: methods return the HRESULT."""

    def __init__(self, dbg: "_DebuggerBase") -> None:
        self._dbg = dbg

    def ReadPhysical(self, offset: int, buffer, size: int, bytes_read) -> int:   # noqa: N802
        self._dbg.calls["ReadPhysical"] += 1
        target = self._dbg._require()
        try:
            data = target.dump.read_physical(offset, size)
        except MemoryReadError as exc:
            if exc.address <= offset:
                return E_FAIL
            data = target.dump.read_physical(offset, exc.address - offset)
        except PytriageError:
            return E_FAIL
        ctypes.memmove(buffer, data, len(data))
        bytes_read._obj.value = len(data)
        self._dbg.bytes_served += len(data)
        return 0


class _DataSpaces:
    """pybag.dbgeng.idebugdataspaces.DebugDataSpaces"""

    def __init__(self, dbg: "_DebuggerBase") -> None:
        self._data = _ComDataSpaces(dbg)

    def ReadPhysical(self, offset: int, size: int) -> bytes:   # noqa: N802
        raise _Exceptions.E_NOTIMPL_Error("Not implemented")


class _DebuggerBase:
    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.bytes_served = 0
        self.reg = _Registers(self)
        self._dataspaces = _DataSpaces(self)
        self._target: Optional[OfflineDumpTarget] = None
        self._pending: Optional[str] = None
        self._live = False
        self.released = False
        self.symbol_path = ""          # the engine's symbol path (_NT_SYMBOL_PATH at start-up): tests set it

    # -- the session ---------------------------------------------------------------------------------------
    def _require(self) -> OfflineDumpTarget:
        if self._target is None:
            raise _Exceptions.E_UNEXPECTED_Error("The target was not accessible")
        return self._target

    def go(self, timeout=-1):
        self.calls["go"] += 1
        if self._pending is not None:
            self._target, self._pending = OfflineDumpTarget.open(self._pending), None
        return True

    def wait(self, timeout=DbgEng.WAIT_INFINITE):
        self.calls["wait"] += 1
        return True

    def Release(self) -> None:   # noqa: N802
        self.calls["Release"] += 1
        self.released = True
        if self._target is not None:
            self._target.close()

    # -- commands --------------------------------------------------------------------------------------------
    def cmd(self, cmdline: str, quiet: bool = True) -> str:
        self.calls["cmd"] += 1
        self.calls["cmd " + cmdline.split()[0]] += 1
        m = re.match(r'^\.opendump\s+"?([^"]+)"?\s*$', cmdline)
        if m:
            self._pending = m.group(1)
            return "\nLoading Dump File [%s]\n" % m.group(1)
        if cmdline == ".sympath":
            path = self.symbol_path or "<empty>"
            return "Symbol search path is: %s\nExpanded Symbol search path is: %s\n" % (path, path.lower())
        target = self._require()
        if cmdline == "vertarget":
            return self._vertarget(target)
        if cmdline == ".bugcheck":
            code, args = target.bugcheck()
            return "Bugcheck code %08X\nArguments %s\n" % (code, " ".join(format_address(a) for a in args))
        if cmdline == ".dumpdebug" and not self._live:
            return self._dumpdebug(target)
        raise _Exceptions.E_FAIL_Error("The operation could not be performed")

    def _vertarget(self, target: OfflineDumpTarget) -> str:
        h = target.dump.header
        kernel = target.modules()[0].base if target.modules() else 0
        lines = [windows_version_line(h.build, h.major_version, h.processors, h.machine),
                 "Kernel base = 0x%s PsLoadedModuleList = 0x%s" % (format_address(kernel),
                                                                  format_address(h.ps_loaded_module_list))]
        if not self._live and h.system_time_utc:
            from pytriage.commands.info import windbg_session_time
            lines.append("Debug session time: %s" % windbg_session_time(h.system_time_utc))
        lines.append("System Uptime: %s" % format_uptime(h.uptime_seconds))
        return "\n".join(lines) + "\n"

    @staticmethod
    def _dumpdebug(target: OfflineDumpTarget) -> str:
        h = target.dump.header
        kind = {"bitmap": "Bitmap Dump Analysis - full address space is available",
                "full": "Full Dump Analysis", "triage": "Mini Dump Analysis"}.get(target.dump_kind or "", "Dump")
        rows = [("PsLoadedModuleList", format_address(h.ps_loaded_module_list)),
                ("PsActiveProcessHead", format_address(h.ps_active_process_head)),
                ("NumberProcessors", "%08x" % h.processors),
                ("KdDebuggerDataBlock", format_address(h.kd_debugger_data_block))]
        return "----- 64 bit Kernel %s\n\nDUMP_HEADER64:\n%s\n" % (kind, "\n".join("%-20s%s" % r for r in rows))

    # -- data ------------------------------------------------------------------------------------------------
    def read(self, addr: int, len: int = 1) -> bytes:   # noqa: A002  (pybag's parameter name)
        self.calls["read"] += 1
        target = self._require()
        try:
            data = target.dump.read_virtual(addr, len)
        except MemoryReadError as exc:
            if exc.address <= addr:
                raise OSError(HRESULT_READ_FAULT) from None
            data = target.dump.read_virtual(addr, exc.address - addr)    # DbgEng returns the readable prefix
        self.bytes_served += builtins.len(data)
        return data

    def symbol(self, name: str) -> int:
        self.calls["symbol"] += 1
        target = self._require()
        if name.startswith("nt!"):
            return target.kernel_anchors().get(name[3:], -1)
        return -1

    def module_list(self):
        self.calls["module_list"] += 1
        rows = []
        for index, module in enumerate(self._require().modules()):
            image = module.image_path or module.name
            if index == 0:
                image = "ntkrnlmp.exe"
            elif module.name.lower() == "hal.dll":
                image = "hal.exe"
            rows.append(((image, module.debugger_name, image.rsplit("\\", 1)[-1]),
                         _ModuleParameters(module.base, module.size, module.timestamp or 0, module.checksum or 0)))
        return rows



class CrashDbg(_DebuggerBase):
    def load_dump(self, name: str) -> None:
        self.calls["load_dump"] += 1
        raise _Exceptions.E_NOTIMPL_Error("Not implemented")     # DebugClient.OpenDumpFile in 2.2.15


class KernelDbg(_DebuggerBase):
    def attach(self, connect_string: str, initial_break: bool = False) -> None:
        self.calls["attach"] += 1
        self.initial_break = initial_break
        self._live = True
        path = KDNET_TARGETS.get(connect_string)
        if path is not None:           # otherwise: no kernel answered; pybag swallows the error
            self._target = OfflineDumpTarget.open(path)

    def detach(self) -> None:
        self.calls["detach"] += 1


class UserDbg(_DebuggerBase):
    pass
