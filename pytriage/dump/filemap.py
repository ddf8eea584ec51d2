"""Read-only, bounds-checked view of a dump file.

The file is memory-mapped so that opening a multi-GB dump costs nothing and a page read is a slice;
every access is checked against the file length first so a truncated file gives a ``DumpFormatError``
naming the offset instead of an ``IndexError`` or a short read that silently yields wrong data.
"""

import mmap
import os
import struct
from typing import Optional

from pytriage.errors import DumpFormatError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class DumpFile:
    """A memory-mapped dump file (never written: ``ACCESS_READ``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise DumpFormatError("cannot open %s: %s" % (path, exc.strerror or exc)) from None
        try:
            self.size = os.fstat(self._fh.fileno()).st_size
            if self.size == 0:
                raise DumpFormatError("%s is empty" % path, 0)
            self._map: Optional[mmap.mmap] = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        except DumpFormatError:
            self._fh.close()
            raise
        except (OSError, ValueError) as exc:
            self._fh.close()
            raise DumpFormatError("cannot map %s: %s" % (path, exc)) from None
        self.view = memoryview(self._map)

    def close(self) -> None:
        if self._map is not None:
            try:
                self.view.release()
                self._map.close()
            except BufferError:
                pass   # a caller still holds a slice: the map is freed with it (read-only, nothing to flush)
            self._map = None
            self._fh.close()

    def check(self, offset: int, size: int, what: str) -> None:
        """Raise a ``DumpFormatError`` unless ``[offset, offset+size)`` lies inside the file."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise DumpFormatError(
                "%s (0x%x bytes) lies past the end of the file (size 0x%x)" % (what, size, self.size), offset
            )

    def read(self, offset: int, size: int, what: str = "data") -> bytes:
        self.check(offset, size, what)
        return bytes(self.view[offset:offset + size])

    def u16(self, offset: int, what: str = "field") -> int:
        self.check(offset, 2, what)
        return _U16.unpack_from(self.view, offset)[0]

    def u32(self, offset: int, what: str = "field") -> int:
        self.check(offset, 4, what)
        return _U32.unpack_from(self.view, offset)[0]

    def u64(self, offset: int, what: str = "field") -> int:
        self.check(offset, 8, what)
        return _U64.unpack_from(self.view, offset)[0]

    def __enter__(self) -> "DumpFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
