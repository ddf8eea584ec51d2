"""Declarative binary layouts: each on-disk structure is declared once as a table of fields.

Why: header parsing with scattered ``struct.unpack_from`` calls hides the offsets; a table keeps them
readable next to the Windows definition and lets every parse be bounds-checked in one place (the
truncation errors then name the structure, the field and the file offset).
"""

import struct
from typing import Dict, Iterable, Tuple, Union

from pytriage.errors import DumpFormatError

FieldValue = Union[int, bytes]


class Layout:
    """A fixed-size structure: ``(name, offset, struct format)`` per field, little-endian."""

    def __init__(self, name: str, size: int, fields: Iterable[Tuple[str, int, str]]) -> None:
        self.name = name
        self.size = size
        self.fields = [(fname, off, struct.Struct("<" + fmt)) for fname, off, fmt in fields]
        self.offsets = {fname: off for fname, off, _ in self.fields}
        for fname, off, st in self.fields:
            if off + st.size > size:
                raise ValueError("%s.%s overflows the structure" % (name, fname))

    def parse(self, buf: Union[bytes, memoryview], offset: int = 0, base: int = 0) -> Dict[str, FieldValue]:
        """Unpack every field at ``buf[offset:]``; ``base`` is added to offsets in error messages."""
        if offset < 0 or offset + self.size > len(buf):
            raise DumpFormatError(
                "file too short for %s (needs 0x%x bytes)" % (self.name, self.size), base + offset
            )
        out: Dict[str, FieldValue] = {}
        for fname, off, st in self.fields:
            value = st.unpack_from(buf, offset + off)
            out[fname] = value[0] if len(value) == 1 else value  # type: ignore[assignment]
        return out

    def pack(self, values: Dict[str, FieldValue]) -> bytes:
        """Build the structure from ``values`` (missing fields are zero): used by the scenario writer."""
        out = bytearray(self.size)
        for fname, off, st in self.fields:
            if fname in values:
                value = values[fname]
                if isinstance(value, tuple):
                    st.pack_into(out, off, *value)
                else:
                    st.pack_into(out, off, value)
        return bytes(out)
