"""GUIDs the way symbol stores spell them: one place for the byte order every reader and writer shares.

A GUID is stored (CodeView RSDS record, PDB info stream) as Data1 u32, Data2 u16, Data3 u16 little-endian
then Data4's 8 bytes; stores print the first three as numbers and Data4 byte by byte, so
``{1C19FDDB-27BB-3399-D9B4-5973EFEAFCF3}`` is the directory ``1C19FDDB27BB3399D9B45973EFEAFCF3<age>``.
Getting this wrong in one place and right in another would make a correct PDB "not found", so every
module converts through these functions.
"""

import re
import struct

from pytriage.errors import SymbolError

_HEX32 = re.compile(r"^[0-9A-Fa-f]{32}$")


def guid_hex(raw: bytes) -> str:
    """16 GUID bytes in Windows memory order -> 32 upper-case hex digits (the store spelling)."""
    if len(raw) != 16:
        raise SymbolError("a GUID is 16 bytes, got %d" % len(raw))
    data1, data2, data3 = struct.unpack_from("<IHH", raw, 0)
    return "%08X%04X%04X%s" % (data1, data2, data3, bytes(raw[8:16]).hex().upper())


def normalize_guid(guid: str) -> str:
    """``guid`` as 32 upper-case hex digits; accepts dashes and braces (``{1c19fddb-27bb-...}``)."""
    text = guid.strip().strip("{}").replace("-", "") if isinstance(guid, str) else ""
    if not _HEX32.match(text):
        raise SymbolError("invalid PDB GUID %r: expected 32 hex digits" % (guid,))
    return text.upper()


def guid_raw(guid: str) -> bytes:
    """The store spelling back to the 16 bytes in Windows memory order (what an RSDS record holds)."""
    text = normalize_guid(guid)
    return struct.pack("<IHH", int(text[0:8], 16), int(text[8:12], 16), int(text[12:16], 16)) + \
        bytes.fromhex(text[16:32])
