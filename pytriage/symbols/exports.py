"""Export names as the symbol source of last resort (DESIGN 4: "Without symbols: PE export names").

Read from the export directory of the image in dump memory, or of the image file from the symbol store
(pefile). Exports name only exported functions, so a nearest-export answer can be far from the truth;
the symbolizer therefore only uses an export when the address lies inside the export's function as
far as we can tell (below the next export), and marks the source ``export`` in JSON output.
"""

import bisect
import struct
from typing import Iterator, List, Optional, Tuple

from pytriage.errors import MemoryReadError, SymbolError
from pytriage.symbols.pe_headers import data_directory, open_image_file
from pytriage.symbols.source import SymbolSource

_EXPORT_DIRECTORY = struct.Struct("<IIHHIIIIIII")     # IMAGE_EXPORT_DIRECTORY, 40 bytes
_MAX_EXPORTS = 1 << 16
_MAX_NAME = 512


class ExportSymbols(SymbolSource):
    kind = "export"

    def __init__(self, exports: List[Tuple[int, str]], origin: str) -> None:
        self.origin = origin
        self._by_rva = sorted(set(exports))
        self._by_name = {name: rva for rva, name in self._by_rva}

    def symbol_rva(self, name: str) -> Optional[int]:
        return self._by_name.get(name)

    def nearest_symbol(self, rva: int) -> Optional[Tuple[str, int]]:
        pos = bisect.bisect_right(self._by_rva, (rva, "\uffff")) - 1
        if pos < 0:
            return None
        address, name = self._by_rva[pos]
        return name, address

    def next_rva(self, rva: int) -> Optional[int]:
        """RVA of the first export above ``rva`` (where the function containing ``rva`` ends at the latest)."""
        pos = bisect.bisect_right(self._by_rva, (rva, "\uffff"))
        return self._by_rva[pos][0] if pos < len(self._by_rva) else None

    def symbols(self) -> Iterator[Tuple[str, int]]:
        for rva, name in self._by_rva:
            yield name, rva

    def __len__(self) -> int:
        return len(self._by_rva)


def _read_cstring(target, va: int) -> str:
    data = b""
    while len(data) < _MAX_NAME:
        chunk = target.read(va + len(data), min(64, 0x1000 - ((va + len(data)) & 0xFFF)))
        end = chunk.find(b"\0")
        if end >= 0:
            return (data + chunk[:end]).decode("ascii", "replace")
        data += chunk
    return data.decode("ascii", "replace")


def exports_from_memory(target, base: int) -> Optional[ExportSymbols]:
    """Exports of the image mapped at ``base``; None when its headers or export pages are not in the dump."""
    try:
        headers = target.read(base, 0x1000)
        rva, size = data_directory(headers, "IMAGE_DIRECTORY_ENTRY_EXPORT", "image at %x" % base)
        if not rva or size < _EXPORT_DIRECTORY.size:
            return None
        fields = _EXPORT_DIRECTORY.unpack(target.read(base + rva, _EXPORT_DIRECTORY.size))
        n_functions, n_names, functions_rva, names_rva, ordinals_rva = fields[6:11]
        if n_names > _MAX_EXPORTS or n_functions > _MAX_EXPORTS:
            return None
        names = struct.unpack("<%dI" % n_names, target.read(base + names_rva, 4 * n_names))
        ordinals = struct.unpack("<%dH" % n_names, target.read(base + ordinals_rva, 2 * n_names))
        functions = struct.unpack("<%dI" % n_functions, target.read(base + functions_rva, 4 * n_functions))
        exports = []
        for name_rva, ordinal in zip(names, ordinals):
            if ordinal < n_functions:
                exports.append((functions[ordinal], _read_cstring(target, base + name_rva)))
    except (MemoryReadError, SymbolError, struct.error):
        return None
    return ExportSymbols(exports, "exports of the image in the dump")


def exports_from_file(path: str) -> ExportSymbols:
    pe = open_image_file(path, "IMAGE_DIRECTORY_ENTRY_EXPORT")
    try:
        exports = []
        directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        for symbol in (directory.symbols if directory else [])[:_MAX_EXPORTS]:
            if symbol.name:
                exports.append((symbol.address, symbol.name.decode("ascii", "replace")))
        return ExportSymbols(exports, "exports of %s" % path)
    finally:
        pe.close()
