"""The x64 `_POOL_HEADER` (16 bytes) and pool tags, decoded from raw bytes.

Layout (DESIGN 7; checked in the tests against the corpus ntkrnlmp 19041 ISF): byte 0 PreviousSize,
byte 1 PoolIndex, byte 2 BlockSize, byte 3 PoolType (sizes in 16-byte units), PoolTag @+4,
ProcessBilled @+8.

PoolType in a header is not the POOL_TYPE a driver passes: 0 marks a free block; an allocated block
has bit 1 set (in use), bit 0 for paged pool, bit 2 for a cache-aligned allocation and bit 3 when the
allocation is charged to a process (ProcessBilled). Observed on the real 19041 corpus dump (nonpaged
blocks carry 2, paged ones 3, the inner header of a cache-aligned pair 6) and consistent with how
volatility3 tells paged from nonpaged pool (odd = paged).
"""

import struct
from dataclasses import dataclass
from typing import Optional

from pytriage.errors import PytriageError

HEADER_SIZE = 0x10
POOL_UNIT = 0x10
PAGE = 0x1000

IN_USE = 0x2
PAGED = 0x1
CACHE_ALIGNED = 0x4
QUOTA = 0x8
SESSION = 0x20

_TAG_PRINTABLE = set(range(0x20, 0x7F))


def tag_bytes(tag: int) -> bytes:
    return struct.pack("<I", tag & 0xFFFFFFFF)


def tag_text(tag: int) -> str:
    """The tag as WinDbg prints it: four characters, anything unprintable as a dot."""
    return "".join(chr(b) if b in _TAG_PRINTABLE else "." for b in tag_bytes(tag))


def tag_is_plausible(tag: int) -> bool:
    """Every byte printable ASCII, and not four spaces: what a compiler-built tag literal looks like.

    The high bit of the last byte is allowed: older kernels set it on "protected" tags.
    """
    raw = bytearray(tag_bytes(tag))
    raw[3] &= 0x7F
    return all(b in _TAG_PRINTABLE for b in raw) and bytes(raw) != b"    " and raw[0] != 0x20


def parse_tag(text: str) -> int:
    """A tag as users type it: ``Filt``, ``NDnd``, ``Tcp`` (padded with spaces like the C literal
    ``'Tcp '``), or a number ``0x746c6946`` (the value in the header, little-endian)."""
    raw = text.strip() if text.strip() else text
    if raw.lower().startswith("0x") and len(raw) > 4:
        try:
            value = int(raw, 16)
        except ValueError:
            raise PytriageError("not a pool tag: %r (four characters, or 0x and eight hex digits)" % text) from None
        if value > 0xFFFFFFFF:
            raise PytriageError("not a pool tag: %s is wider than 32 bits" % text)
        return value
    if not 1 <= len(text) <= 4 or any(ord(c) not in _TAG_PRINTABLE for c in text):
        raise PytriageError("not a pool tag: %r (one to four printable characters)" % text)
    return struct.unpack("<I", text.ljust(4).encode("ascii"))[0]


def pool_type_text(pool_type: int) -> str:
    """``Free``, ``Paged``, ``NonPaged``, plus ``CacheAligned`` / ``Quota`` / ``Session`` flags."""
    if pool_type == 0:
        return "Free"
    words = ["Paged" if pool_type & PAGED else "NonPaged"]
    for bit, name in ((CACHE_ALIGNED, "CacheAligned"), (QUOTA, "Quota"), (SESSION, "Session")):
        if pool_type & bit:
            words.append(name)
    if not pool_type & IN_USE:
        words.append("(in-use bit clear)")
    return " ".join(words)


@dataclass(frozen=True)
class PoolHeader:
    """One decoded header at ``va``; sizes are in bytes."""
    va: int
    raw: bytes
    previous_size: int
    pool_index: int
    block_size: int
    pool_type: int
    tag: int
    process_billed: int

    @property
    def free(self) -> bool:
        return self.pool_type == 0

    @property
    def state(self) -> str:
        return "free" if self.free else "allocated"

    @property
    def tag_text(self) -> str:
        return tag_text(self.tag)

    @property
    def type_text(self) -> str:
        return pool_type_text(self.pool_type)

    def plausible(self) -> bool:
        """Could this be a real header? A size, a tag that reads as text, a known PoolType shape."""
        return (self.block_size > 0 and tag_is_plausible(self.tag) and self.pool_type < 0x40
                and (self.pool_type == 0 or bool(self.pool_type & IN_USE)))

    def to_json(self) -> dict:
        return {"address": "0x%x" % self.va, "raw": self.raw.hex(), "previous_size": self.previous_size,
                "pool_index": self.pool_index, "block_size": self.block_size, "pool_type": self.pool_type,
                "pool_type_text": self.type_text, "tag": self.tag_text, "tag_value": "0x%08x" % self.tag,
                "process_billed": "0x%x" % self.process_billed}


def decode_header(raw: bytes, va: int) -> PoolHeader:
    if len(raw) < HEADER_SIZE:
        raise ValueError("a pool header is 16 bytes, got %d" % len(raw))
    previous, index, block, ptype, tag, billed = struct.unpack_from("<BBBBIQ", raw)
    return PoolHeader(va, bytes(raw[:HEADER_SIZE]), previous * POOL_UNIT, index, block * POOL_UNIT, ptype, tag,
                      billed)


def fill_pattern(data: bytes) -> Optional[bytes]:
    """The shortest unit (1, 2, 4 or 8 bytes) that ``data`` repeats, when it is one; else None.

    Zeroes are not a pattern (fresh memory is zero); a unit whose bytes are all equal is reported as
    one byte.
    """
    if len(data) < 8 or not any(data):
        return None
    for unit in (1, 2, 4, 8):
        pattern = data[:unit]
        if pattern * (len(data) // unit) + pattern[:len(data) % unit] == data:
            return pattern
    return None


def pattern_text(pattern: bytes) -> str:
    """``4f ("O")``: the hex bytes and, when they are text, the characters."""
    shown = "".join(chr(b) if b in _TAG_PRINTABLE else "." for b in pattern)
    if all(b in _TAG_PRINTABLE for b in pattern):
        return '%s ("%s")' % (pattern.hex(), shown)
    return pattern.hex()
