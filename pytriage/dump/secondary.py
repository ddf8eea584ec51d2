"""Bugcheck secondary data ("DumpBlob") stored after the primary dump data.

Drivers that register a ``KbCallbackSecondaryDumpData`` callback (NDIS and Wi-Fi drivers among them)
add tagged blobs when the machine crashes; the kernel appends them after the dump proper:

    DUMP_BLOB_FILE_HEADER  { ULONG Signature1 'Dump'; ULONG Signature2 'Blob'; ULONG HeaderSize;
                             ULONG BuildNumber }
    DUMP_BLOB_HEADER * n   { ULONG HeaderSize; GUID Tag; ULONG DataSize; ULONG PrePad; ULONG PostPad }
                           each followed by PrePad + DataSize + PostPad bytes.

There is no blob count: the list ends at the end of the file, so a blob that runs past the end is how a
truncated file shows. Walking it reads only the small headers (at most ``MAX_BLOBS``), never the data.
"""

import struct
import uuid
from typing import List, NamedTuple

from pytriage.dump.filemap import DumpFile
from pytriage.errors import DumpFormatError

FILE_SIGNATURE = b"DumpBlob"
BLOB_HEADER_SIZE = 0x20
MAX_BLOBS = 4096


class SecondaryBlob(NamedTuple):
    tag: str              # GUID of the callback that wrote it, registry format
    data_offset: int      # file offset of the data (after PrePad)
    size: int
    header_offset: int


def find_secondary_data(dump: DumpFile, start: int) -> List[SecondaryBlob]:
    """Blobs from ``start`` (the end of the primary data) to the end of the file.

    Returns [] when nothing follows or what follows is not a blob area. Raises ``DumpFormatError``
    naming the offset when a blob header or its data runs past the end of the file (truncation).
    """
    if start + len(FILE_SIGNATURE) + 8 > dump.size:
        return []
    if dump.read(start, len(FILE_SIGNATURE)) != FILE_SIGNATURE:
        return []
    header_size = dump.u32(start + 8, "DUMP_BLOB_FILE_HEADER.HeaderSize")
    if header_size < 16 or header_size > 0x1000:
        raise DumpFormatError("secondary data header size 0x%x is absurd" % header_size, start + 8)
    blobs: List[SecondaryBlob] = []
    cursor = start + header_size
    while cursor < dump.size:
        if len(blobs) >= MAX_BLOBS:
            raise DumpFormatError("more than %d secondary data blobs: corrupt" % MAX_BLOBS, cursor)
        if cursor + BLOB_HEADER_SIZE > dump.size:
            raise DumpFormatError("secondary data blob header cut off (file truncated?)", cursor)
        raw = dump.read(cursor, BLOB_HEADER_SIZE)
        blob_header_size, = struct.unpack_from("<I", raw, 0)
        data_size, pre_pad, post_pad = struct.unpack_from("<III", raw, 20)
        if blob_header_size < BLOB_HEADER_SIZE or blob_header_size > 0x1000:
            raise DumpFormatError("secondary data blob header size 0x%x is absurd" % blob_header_size, cursor)
        end = cursor + blob_header_size + pre_pad + data_size + post_pad
        if end > dump.size:
            raise DumpFormatError("secondary data blob (0x%x bytes) runs past the end of the file (size 0x%x): "
                                  "truncated" % (data_size, dump.size), cursor)
        tag = str(uuid.UUID(bytes_le=bytes(raw[4:20])))
        blobs.append(SecondaryBlob(tag, cursor + blob_header_size + pre_pad, data_size, cursor))
        cursor = end
    return blobs
