"""What a PE image or PDB on disk says it is, for files found outside a store's key directories.

A file filed under a store key is vouched for by the key. A *flat* file (``DIR/name.pdb`` in a plain
symbol directory) is not: a copy from another build would give wrong symbols without any error, so
before one is used its own headers are read and compared with what the dump asked for.
"""

import struct
from typing import Optional, Tuple

from pytriage.errors import SymbolError


def image_identity(path: str) -> Optional[Tuple[int, int]]:
    """(TimeDateStamp, SizeOfImage) from a PE file's headers, or None when it is not a PE file.

    Used to accept a *flat* file (``DIR/name.sys``), which has no store key to vouch for it.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(0x40)
            if len(head) < 0x40 or head[:2] != b"MZ":
                return None
            pe = struct.unpack_from("<I", head, 0x3C)[0]
            if pe > 0x10000000:
                return None
            fh.seek(pe)
            headers = fh.read(24 + 60)
        if len(headers) < 24 + 60 or headers[:4] != b"PE\x00\x00":
            return None
        timestamp = struct.unpack_from("<I", headers, 8)[0]
        magic, = struct.unpack_from("<H", headers, 24)
        if magic not in (0x10B, 0x20B):
            return None
        size_of_image = struct.unpack_from("<I", headers, 24 + 56)[0]
        return timestamp, size_of_image
    except (OSError, struct.error):
        return None


def pdb_guid(path: str) -> Optional[str]:
    """GUID (store spelling) from a PDB's info stream, or None when it is not a readable MSF 7.00 PDB.

    Used to accept a *flat* PDB (``DIR/name.pdb``), which has no store key to vouch for it. Opening a
    ``PdbFile`` reads only the superblock, the stream directory and the small info/DBI headers.
    """
    from pytriage.symbols.pdb.reader import open_pdb  # the PDB reader is only loaded when needed

    try:
        with open_pdb(path) as pdb:
            return pdb.guid
    except SymbolError:
        return None
