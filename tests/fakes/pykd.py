"""A fake ``pykd`` module answering from pytriage's offline engine on a dump file, counting what it serves.

Only the part of pykd that ``PykdTarget`` (and the ``!py`` entry points' output) uses is reproduced, with
the real names, argument order, return types and exception classes. Where each fact comes from (pykd
0.3.4.15, https://github.com/ivellioscolin/pykd at commit 98980c44, and its C++ core kdlibcpp,
https://github.com/ivellioscolin/kdlibcpp at commit e54598d2):

  Memory
  - ``loadBytes(offset, count, phyAddr=False) -> list`` of unsigned ints 0..255 (one per byte): pykd/pymod.cpp
    l.345 (args "offset", "count", "phyAddr"; 2 or 3 arguments, l.54), pykd/pymemaccess.cpp l.33 (builds a
    Python list from a byte vector). ``loadQWords(offset, count, phyAddr=False) -> list`` of 8-byte ints
    (count = number of qwords): pymod.cpp l.351. ``ptrQWord(offset) -> int``: pymod.cpp l.305,
    pymemaccess.h l.50. ``isValid(offset) -> bool``: pymod.cpp l.278, kdlib/source/win/dbgmem.cpp l.140.
  - A failed read raises ``pykd.MemoryException``, whose only argument is kdlib's text
    "Memory exception at 0x<hex> target virtual address" ("... physical address" for phyAddr):
    kdlib/include/kdlib/exceptions.h l.42-69; pykd/dbgexcept.h l.84-88 (raised with ``e.what()`` only:
    the Python exception has no address attribute). The address is the request's start when ReadVirtual
    fails, or the first byte past a partial read: kdlib/source/win/dbgmem.cpp l.54-82.
  - Exception tree: ``DbgException`` (base) > ``MemoryException``, ``SymbolException`` > ``TypeException``,
    ``CallException``, ``CPUException``: pykd/dbgexcept.h l.142-149 (PyErr_NewExceptionWithDoc, so they
    derive from ``Exception``).

  Modules
  - ``getModulesList() -> list`` of ``pykd.module``: pymod.cpp l.604, pykd/pymodule.cpp l.11 (one per
    loaded module, by DbgEng's module index: load order, the kernel first).
  - ``module`` methods: ``name()`` (DbgEng module name, "nt", "tcpip": DEBUG_MODNAME_MODULE),
    ``image()`` (DEBUG_MODNAME_IMAGE: the image file name, without a directory in kernel mode),
    ``begin()``, ``end()``, ``size()``, ``timestamp()``, ``checksum()``: pymod.cpp l.846-900,
    kdlib/source/win/dbgmod.cpp l.138-206.

  Crash facts and target kind
  - ``bugCheckData() -> tuple (code, arg1, arg2, arg3, arg4)``: pymod.cpp l.271, pykd/pydbgeng.cpp l.179
    (IDebugControl::ReadBugCheckData, kdlib dbgeng.cpp l.930).
  - ``reg(name) -> int`` (DbgEng register names: "rip", "rsp", "efl" ...; an unknown name raises
    DbgException): pymod.cpp l.467, pykd/pycpucontext.cpp l.12.
  - ``isDumpAnalyzing() -> bool``, ``isKernelDebugging() -> bool``: pymod.cpp l.185-188, pydbgeng.h l.92-103.
  - ``getDumpType() -> dumpType`` (raises DbgException on a live target; pymod.cpp l.205); ``dumpType``
    enum values Small/KernelSmall 1024, Default/Kernel 1025, Full/KernelFull 1026, Image 1027: pymod.cpp l.1539,
    kdlib dbgeng.cpp l.516-533, kdlib/include/kdlib/dbgtypedef.h l.242-251.
  - ``getCPUType() -> CPUType`` (I386 0, AMD64 1, ARM64 2, ARM 3): pymod.cpp l.497 and the enum at l.1393,
    dbgtypedef.h l.46-52. ``is64bitSystem() -> bool``: pymod.cpp l.261.
  - ``getSystemVersion() -> systemVersion`` with ``win32Major``, ``win32Minor``, ``servicePack``,
    ``buildNumber``, ``buildString``: pymod.cpp l.269 and l.1186-1206, pydbgeng.cpp l.44.
  - ``currentTime() -> int``: seconds since 1970 (IDebugControl2::GetCurrentTimeDate; on a dump, its time):
    pymod.cpp l.267, kdlib dbgeng.cpp l.869.
  - ``getOffset(name) -> int``; an unknown symbol raises ``SymbolException``: pymod.cpp l.422.
  - ``getNumberThreads() -> int`` (in kernel mode DbgEng's threads are the processors): pymod.cpp l.578,
    kdlib dbgeng.cpp l.1322 (IDebugSystemObjects::GetNumberThreads).

  Symbols
  - ``getSymbolPath() -> str``: the session's symbol path (``.sympath``): pymod.cpp l.614, pykd/pysymengine.h
    l.17-21 (kdlib::getSymbolPath). Tests set it through ``symbol_path``.

  Output
  - ``dprint(str, dml=False)``, ``dprintln(str, dml=False)``: write to ``sys.stdout`` (``writedml`` when dml
    is set and the stream has it): pymod.cpp l.234-237, pykd/pydbgio.h l.12-27.

Not reproduced (PykdTarget does not call them): dbgCommand, typed variables, symbols beyond the three
kernel anchors the dump header knows (getOffset answers only nt!PsLoadedModuleList, nt!PsActiveProcessHead,
nt!KdDebuggerDataBlock), breakpoints, execution control.
"""

import sys
import types
from collections import Counter
from typing import List, Optional, Tuple

from pytriage.errors import MemoryReadError, PytriageError
from pytriage.target.offline import OfflineDumpTarget


class DbgException(Exception):
    """pykd's base exception."""


class MemoryException(DbgException):
    """Target memory access exception (carries only kdlib's message)."""


class SymbolException(DbgException):
    pass


class TypeException(SymbolException):
    pass


class CallException(DbgException):
    pass


class CPUException(DbgException):
    pass


class _EnumValue(int):
    """A boost.python enum value: an int with a ``name``."""

    def __new__(cls, value: int, name: str, type_name: str):
        obj = int.__new__(cls, value)
        obj.name = name
        obj._type_name = type_name
        return obj

    def __repr__(self) -> str:
        return "pykd.%s.%s" % (self._type_name, self.name)

    __str__ = __repr__


def _enum(type_name: str, **values: int) -> type:
    return type(type_name, (), {name: _EnumValue(v, name, type_name) for name, v in values.items()})


CPUType = _enum("CPUType", I386=0, AMD64=1, ARM64=2, ARM=3)
dumpType = _enum("dumpType", Small=1024, Default=1025, Full=1026, Image=1027, KernelSmall=1024, Kernel=1025,
                 KernelFull=1026)


class systemVersion:
    def __init__(self, major: int, minor: int, build: int) -> None:
        self.win32Major = major
        self.win32Minor = minor
        self.servicePack = 0
        self.buildNumber = build
        self.buildString = "%d" % build


class module:
    """``pykd.module``: one loaded module; every method call is counted like a pykd call."""

    def __init__(self, fake: "FakePykd", info) -> None:
        self._fake = fake
        self._info = info

    def _count(self, what: str) -> None:
        self._fake.calls["module." + what] += 1

    def name(self) -> str:
        self._count("name")
        return self._info.debugger_name

    def image(self) -> str:
        self._count("image")
        return self._info.name

    def begin(self) -> int:
        self._count("begin")
        return self._info.base

    def end(self) -> int:
        self._count("end")
        return self._info.end

    def size(self) -> int:
        self._count("size")
        return self._info.size

    def timestamp(self) -> int:
        self._count("timestamp")
        return self._info.timestamp or 0

    def checksum(self) -> int:
        self._count("checksum")
        return self._info.checksum or 0


class FakePykd(types.ModuleType):
    """The ``pykd`` module over a dump: ``calls`` counts each function, ``bytes_served`` the memory handed out."""

    def __init__(self, dump_path: str) -> None:
        super().__init__("pykd")
        self._target = OfflineDumpTarget.open(dump_path)
        self._dump = self._target.dump
        self.calls: Counter = Counter()
        self.bytes_served = 0
        self.reads: List[Tuple[int, int, bool]] = []     # (address, count, physical) of every load* call
        for cls in (DbgException, MemoryException, SymbolException, TypeException, CallException, CPUException,
                    module, systemVersion):
            setattr(self, cls.__name__, cls)
        self.CPUType = CPUType
        self.dumpType = dumpType
        self.symbol_path = ""          # what the user's .sympath would be: tests set it

    def close(self) -> None:
        self._target.close()

    # -- memory -----------------------------------------------------------------------------------------------
    def _load(self, offset: int, count: int, phyAddr: bool) -> bytes:
        self.reads.append((offset, count, bool(phyAddr)))
        try:
            data = self._dump.read_physical(offset, count) if phyAddr else self._dump.read_virtual(offset, count)
        except MemoryReadError as exc:
            raise MemoryException("Memory exception at 0x%x target %s address"
                                  % (exc.address, "physical" if phyAddr else "virtual")) from None
        except PytriageError as exc:                      # e.g. no physical memory in a triage dump
            raise DbgException(str(exc)) from None
        self.bytes_served += len(data)
        return data

    def loadBytes(self, offset: int, count: int, phyAddr: bool = False) -> list:
        self.calls["loadBytes"] += 1
        return list(self._load(offset, count, phyAddr))

    def loadQWords(self, offset: int, count: int, phyAddr: bool = False) -> list:
        self.calls["loadQWords"] += 1
        raw = self._load(offset, 8 * count, phyAddr)
        return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]

    def ptrQWord(self, offset: int) -> int:
        self.calls["ptrQWord"] += 1
        return int.from_bytes(self._load(offset, 8, False), "little")

    def isValid(self, offset: int) -> bool:
        self.calls["isValid"] += 1
        try:
            self._dump.read_virtual(offset, 1)
        except PytriageError:
            return False
        return True

    # -- modules and crash facts ------------------------------------------------------------------------------
    def getModulesList(self) -> list:
        self.calls["getModulesList"] += 1
        listing = self._dump.load_modules(self._dump.read_virtual)
        return [module(self, m) for m in listing.modules]

    def bugCheckData(self) -> tuple:
        self.calls["bugCheckData"] += 1
        code, params = self._dump.bugcheck()
        return (code,) + tuple(params)

    def reg(self, name: str) -> int:
        self.calls["reg"] += 1
        registers = self._dump.context_record()
        key = {"efl": "rflags"}.get(name.lower(), name.lower())
        if key not in registers or key == "context_flags":
            raise DbgException("IDebugRegister::GetIndexByName failed for %r" % name)
        return registers[key]

    def isDumpAnalyzing(self) -> bool:
        self.calls["isDumpAnalyzing"] += 1
        return True

    def isKernelDebugging(self) -> bool:
        self.calls["isKernelDebugging"] += 1
        return True

    def getDumpType(self):
        self.calls["getDumpType"] += 1
        if self._dump.triage is not None:
            return dumpType.KernelSmall
        return dumpType.Kernel if self._dump.header.dump_type == 5 else dumpType.KernelFull

    def getCPUType(self):
        self.calls["getCPUType"] += 1
        return getattr(CPUType, self._dump.header.machine)

    def is64bitSystem(self) -> bool:
        self.calls["is64bitSystem"] += 1
        return bool(self._dump.header.is64)

    def getSystemVersion(self) -> systemVersion:
        self.calls["getSystemVersion"] += 1
        return systemVersion(10, 0, self._dump.header.build)

    def currentTime(self) -> int:
        self.calls["currentTime"] += 1
        if self._target.crash_time is None:
            raise DbgException("IDebugControl2::GetCurrentTimeDate failed")
        return int(self._target.crash_time)

    def getOffset(self, name: str) -> int:
        self.calls["getOffset"] += 1
        header = self._dump.header
        known = {"nt!PsLoadedModuleList": header.ps_loaded_module_list,
                 "nt!PsActiveProcessHead": header.ps_active_process_head,
                 "nt!KdDebuggerDataBlock": header.kd_debugger_data_block}
        if not known.get(name):
            raise SymbolException("symbol %s not found" % name)
        return known[name]

    def getNumberThreads(self) -> int:
        self.calls["getNumberThreads"] += 1
        return self._dump.header.processors

    def getSymbolPath(self) -> str:   # noqa: N802 - pykd's name
        self.calls["getSymbolPath"] += 1
        return self.symbol_path

    # -- output -----------------------------------------------------------------------------------------------
    def dprint(self, str: str, dml: bool = False) -> None:      # noqa: A002 - pykd's argument name
        self.calls["dprint"] += 1
        out = sys.stdout
        if dml and hasattr(out, "writedml"):
            out.writedml(str)
        else:
            out.write(str)

    def dprintln(self, str: str, dml: bool = False) -> None:    # noqa: A002 - pykd's argument name
        self.calls["dprintln"] += 1
        self.dprint(str + "\n", dml)
        self.calls["dprint"] -= 1


def install(dump_path: str, modules: Optional[dict] = None) -> FakePykd:
    """A fake pykd over ``dump_path``, put in ``sys.modules["pykd"]`` (or ``modules``) so ``import pykd`` finds it.
    Call ``uninstall(fake)`` to take it out again."""
    fake = FakePykd(dump_path)
    (sys.modules if modules is None else modules)["pykd"] = fake
    return fake


def uninstall(fake: FakePykd) -> None:
    if sys.modules.get("pykd") is fake:
        del sys.modules["pykd"]
    fake.close()
