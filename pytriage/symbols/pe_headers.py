"""PE headers through pefile, for the symbol layer's two readers of images (CodeView identity, exports).

Both need the same two things: one data directory's (RVA, size) from the header bytes of an image in
dump memory, and an image *file* (from the symbol store) parsed with one directory. Header bytes come
from the crashed machine, so anything pefile raises on them, or a directory table shorter than the entry
asked for, ends here as a ``SymbolError`` or as "no such directory", never as a traceback.
"""

import struct
from typing import Tuple

import pefile

from pytriage.errors import SymbolError

# What pefile raises on hostile header bytes besides PEFormatError.
_PARSE_ERRORS = (pefile.PEFormatError, ValueError, IndexError, struct.error)


def data_directory(headers: bytes, name: str, where: str) -> Tuple[int, int]:
    """``(rva, size)`` of the data directory ``name`` (``"IMAGE_DIRECTORY_ENTRY_DEBUG"``); ``(0, 0)`` when
    the header's table is too short to hold it; ``SymbolError`` when the bytes are not a PE header."""
    # (no pe.close(): with data= there is no file to release, and close() runs a full garbage collection)
    try:
        pe = pefile.PE(data=headers, fast_load=True)
        directories = pe.OPTIONAL_HEADER.DATA_DIRECTORY
    except _PARSE_ERRORS as exc:
        raise SymbolError("%s: not a PE image: %s" % (where, exc)) from None
    except AttributeError:
        raise SymbolError("%s: not a PE image: no optional header" % where) from None
    index = pefile.DIRECTORY_ENTRY[name]
    if index >= len(directories):
        return 0, 0
    return directories[index].VirtualAddress, directories[index].Size


def open_image_file(path: str, name: str) -> pefile.PE:
    """The image file at ``path`` with the data directory ``name`` parsed; the caller closes it (the file
    stays mapped until then)."""
    try:
        pe = pefile.PE(path, fast_load=True)
    except (OSError,) + _PARSE_ERRORS as exc:
        raise SymbolError("%s: not a readable PE image: %s" % (path, exc)) from None
    try:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY[name]])
    except _PARSE_ERRORS as exc:
        pe.close()
        raise SymbolError("%s: not a readable PE image: %s" % (path, exc)) from None
    return pe
