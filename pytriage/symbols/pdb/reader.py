"""``PdbFile``: one PDB as a :class:`SymbolSource` (types, publics/globals, identity), read lazily.

Why this shape: the symbolizer holds one source per module and asks it three things (a type layout, a
symbol's RVA, the symbol nearest an RVA); everything else here exists to answer those cheaply on a
PDB of any size. Opening reads the superblock, the stream directory, the info stream and the DBI
header, nothing more. The TPI stream, the publics and globals indexes and the section headers are
opened on the first question that needs them.

Every malformed input ends in a one-line :class:`SymbolError` naming the file and the stream/offset
(the decoders raise those themselves); as a last line of defence each public method also turns a
stray low-level exception (``struct.error``, ``IndexError``, ``RecursionError``, ``MemoryError`` ...)
into a ``SymbolError`` naming the file, so no caller ever sees a traceback from a bad PDB.
"""

import functools
import os
import struct
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from pytriage.errors import SymbolError
from pytriage.symbols.pdb import codeview as cv
from pytriage.symbols.pdb.codeview import CvDecodeError
from pytriage.symbols.pdb.dbi import DbiStream, SectionHeader
from pytriage.symbols.pdb.gsi import GlobalsStream, PublicsStream, SymbolRecords, resolve_procref
from pytriage.symbols.pdb.info import PdbInfo, read_info
from pytriage.symbols.pdb.msf import STREAM_DBI, STREAM_PDB, STREAM_TPI, MsfFile
from pytriage.symbols.pdb.tpi import TypeTable
from pytriage.symbols.source import SymbolSource
from pytriage.symbols.types import TypeLayout

_F = TypeVar("_F", bound=Callable[..., Any])
_LOW_LEVEL = (struct.error, IndexError, ValueError, OverflowError, RecursionError, MemoryError, CvDecodeError)
_DATA_SYMBOLS = (cv.S_GDATA32, cv.S_LDATA32, cv.S_GTHREAD32, cv.S_LTHREAD32)


def _guarded(method: _F) -> _F:
    """Turn any low-level decoding exception escaping ``method`` into a one-line ``SymbolError``."""
    @functools.wraps(method)
    def wrapper(self: "PdbFile", *args: Any, **kwargs: Any) -> Any:
        if self._msf.data is None:
            raise SymbolError("%s: PDB file is closed" % self.origin)
        try:
            return method(self, *args, **kwargs)
        except SymbolError:
            raise
        except _LOW_LEVEL as exc:
            raise SymbolError("%s: malformed PDB (%s: %s)" % (self.origin, type(exc).__name__,
                                                               str(exc).splitlines()[0][:200] if str(exc) else ""))
    return wrapper  # type: ignore[return-value]


class PdbFile(SymbolSource):
    """A PDB file. ``guid``/``age`` identify it; ``type_layout``/``symbol_rva``/``nearest_symbol`` answer
    the symbolizer. Use as a context manager or call :meth:`close` (the file stays mapped until then)."""

    kind = "pdb"

    def __init__(self, path: str) -> None:
        self.origin = path
        self._msf = MsfFile(path)
        try:
            self._info: PdbInfo = read_info(self._msf.stream(STREAM_PDB, "PDB info stream"))
            self._dbi: Optional[DbiStream] = None
            if self._msf.has_stream(STREAM_DBI) and self._msf.stream_size(STREAM_DBI):
                self._dbi = DbiStream(self._msf, self._msf.stream(STREAM_DBI, "DBI stream"))
        except _LOW_LEVEL as exc:
            self._msf.close()
            raise SymbolError("%s: malformed PDB (%s: %s)" % (path, type(exc).__name__, exc))
        except BaseException:
            self._msf.close()
            raise
        self._types: Optional[TypeTable] = None
        self._records: Optional[SymbolRecords] = None
        self._publics: Optional[PublicsStream] = None
        self._globals: Optional[GlobalsStream] = None
        self._typedefs: Dict[str, Optional[int]] = {}

    # -- identity -------------------------------------------------------------------------------------------
    @property
    def guid(self) -> str:
        """32 upper-case hex digits, no dashes (``1C19FDDB27BB3399D9B45973EFEAFCF3``)."""
        return self._info.guid

    @property
    def signature(self) -> int:
        return self._info.signature

    @property
    def info_age(self) -> int:
        """Age in the PDB info stream (stream 1). Stripping a PDB (pdbcopy) raises it above the image's."""
        return self._info.age

    @property
    def age(self) -> int:
        """The age the image's CodeView record and the symbol store key use: the DBI stream's age.

        Microsoft's public PDBs show why this is not the info stream's age: amdppm.pdb has info age 3 but
        DBI age 1, and it is stored (and matched by the debugger) as ``...EFEAFCF31``.
        """
        return self._dbi.age if self._dbi is not None else self._info.age

    @property
    def version(self) -> int:
        return self._info.version

    @property
    def machine(self) -> int:
        """``IMAGE_FILE_MACHINE_*`` from the DBI header (0x8664 for x64), 0 without a DBI stream."""
        return self._dbi.machine if self._dbi is not None else 0

    @property
    def named_streams(self) -> Dict[str, int]:
        return dict(self._info.named_streams)

    @property  # type: ignore[misc]
    @_guarded
    def sections(self) -> List[SectionHeader]:
        """The image's section headers as the PDB copied them (final layout, after any OMAP)."""
        return list(self._dbi.sections) if self._dbi is not None else []

    # -- lazily opened parts --------------------------------------------------------------------------------
    def _type_table(self) -> Optional[TypeTable]:
        if self._types is None and self._msf.stream_size(STREAM_TPI):
            source = "pdb:%s" % os.path.basename(self.origin)
            self._types = TypeTable(self._msf, self._msf.stream(STREAM_TPI, "TPI stream"), source, self._typedef)
        return self._types

    def _symbol_records(self) -> Optional[SymbolRecords]:
        if self._records is None and self._dbi is not None and self._dbi.symbol_record_stream is not None:
            number = self._dbi.symbol_record_stream
            if self._msf.has_stream(number):
                self._records = SymbolRecords(self._msf.stream(number, "symbol record stream"))
        return self._records

    def _publics_stream(self) -> Optional[PublicsStream]:
        if self._publics is None and self._dbi is not None and self._dbi.public_stream is not None:
            records = self._symbol_records()
            if records is not None and self._msf.has_stream(self._dbi.public_stream):
                self._publics = PublicsStream(self._msf.stream(self._dbi.public_stream, "publics stream"),
                                              records, self._dbi)
        return self._publics

    def _globals_stream(self) -> Optional[GlobalsStream]:
        if self._globals is None and self._dbi is not None and self._dbi.global_stream is not None:
            records = self._symbol_records()
            if records is not None and self._msf.has_stream(self._dbi.global_stream):
                self._globals = GlobalsStream(self._msf.stream(self._dbi.global_stream, "globals stream"), records)
        return self._globals

    def _typedef(self, name: str) -> Optional[int]:
        """Type index an ``S_UDT`` (typedef) named ``name`` stands for, from the globals index."""
        if name not in self._typedefs:
            result = None
            globals_stream = self._globals_stream()
            if globals_stream is not None:
                for symbol in globals_stream.lookup(name):
                    if symbol.kind == cv.S_UDT:
                        result = symbol.type_index
                        break
            self._typedefs[name] = result
        return self._typedefs[name]

    # -- SymbolSource ---------------------------------------------------------------------------------------
    @_guarded
    def type_layout(self, name: str) -> Optional[TypeLayout]:
        """Struct/union/class/enum by tag (``_NET_BUFFER_LIST``), typedef (``NET_BUFFER_LIST``) or the
        ``name#0xTI`` form this reader gives anonymous types; forward references resolved."""
        types = self._type_table()
        return types.layout_by_name(name) if types is not None else None

    @_guarded
    def symbol_rva(self, name: str) -> Optional[int]:
        """RVA of the public, global variable or function ``name`` (exact, case-sensitive)."""
        if self._dbi is None:
            return None
        publics = self._publics_stream()
        if publics is not None:
            for symbol in publics.lookup(name):
                rva = self._dbi.rva(symbol.segment, symbol.offset)
                if rva is not None:
                    return rva
        globals_stream = self._globals_stream()
        if globals_stream is not None:
            for symbol in globals_stream.lookup(name):
                rva = self._global_rva(symbol)
                if rva is not None:
                    return rva
        return None

    def _global_rva(self, symbol: Any) -> Optional[int]:
        assert self._dbi is not None
        if symbol.kind in _DATA_SYMBOLS:
            return self._dbi.rva(symbol.segment, symbol.offset)
        if symbol.kind in (cv.S_PROCREF, cv.S_LPROCREF):
            target = resolve_procref(symbol, self._dbi)
            if target is not None:
                return self._dbi.rva(target.segment, target.offset)
        return None

    @_guarded
    def nearest_symbol(self, rva: int) -> Optional[Tuple[str, int]]:
        """``(public name, its RVA)`` at or closest below ``rva`` (binary search of the address map)."""
        publics = self._publics_stream()
        return publics.nearest(rva) if publics is not None else None

    def symbols(self) -> Iterator[Tuple[str, int]]:
        """Every public, then every global variable and function not already listed, as ``(name, rva)``."""
        return iter(self._all_symbols())

    @_guarded
    def _all_symbols(self) -> List[Tuple[str, int]]:
        result: List[Tuple[str, int]] = []
        if self._dbi is None:
            return result
        seen = set()
        publics = self._publics_stream()
        if publics is not None:
            for symbol in publics.all():
                rva = self._dbi.rva(symbol.segment, symbol.offset)
                if rva is not None and (symbol.name, rva) not in seen:
                    seen.add((symbol.name, rva))
                    result.append((symbol.name, rva))
        globals_stream = self._globals_stream()
        if globals_stream is not None:
            for symbol in globals_stream.all():
                if symbol.kind in _DATA_SYMBOLS or symbol.kind in (cv.S_PROCREF, cv.S_LPROCREF):
                    rva = self._global_rva(symbol)
                    if rva is not None and (symbol.name, rva) not in seen:
                        seen.add((symbol.name, rva))
                        result.append((symbol.name, rva))
        return result

    # -- extras ---------------------------------------------------------------------------------------------
    @_guarded
    def type_names(self) -> List[str]:
        """Every defined struct/union/class/enum name (decodes all type record headers)."""
        types = self._type_table()
        return types.type_names() if types is not None else []

    @_guarded
    def type_layout_at(self, type_index: int) -> Optional[TypeLayout]:
        """The struct/union/class/enum record at ``type_index`` (forward reference resolved), or None.

        For records a name does not reach: a second definition of the same name, or tools that already
        hold a type index (from a symbol record, say)."""
        types = self._type_table()
        if types is None or not types.begin <= type_index < types.end:
            return None
        return types.layout(type_index)

    @_guarded
    def publics(self) -> List[Tuple[str, int, int, int]]:
        """Every ``S_PUB32`` as ``(name, segment, offset, flags)``, in address-map order."""
        publics = self._publics_stream()
        if publics is None:
            return []
        return [(s.name, s.segment, s.offset, s.flags) for s in publics.all()]

    @_guarded
    def rva_of(self, segment: int, offset: int) -> Optional[int]:
        """``segment:offset`` of a symbol record -> RVA (section table and OMAP applied)."""
        return self._dbi.rva(segment, offset) if self._dbi is not None else None

    def close(self) -> None:
        self._msf.close()

    def __enter__(self) -> "PdbFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "PdbFile(%r, guid=%s, age=%d)" % (self.origin, self._info.guid, self.age)


def open_pdb(path: str) -> PdbFile:
    """Open ``path`` as a PDB; a missing, unreadable or malformed file raises ``SymbolError``."""
    return PdbFile(path)
