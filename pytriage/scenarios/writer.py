"""Write a ``PhysicalImage`` as a Windows x64 kernel dump file: full (DumpType 1) or bitmap (DumpType 5).

The header is first filled with the "PAGE" pattern, as Windows leaves unused header bytes, then the
fields are set. Zero pages are written as sparse holes, so a multi-GB dump costs little disk.
RequiredDumpSpace is the file size (dbgeng refuses physical reads without it).
"""

import struct
from typing import Dict

from pytriage.dump import structs as S
from pytriage.scenarios.memory import PAGE, PhysicalImage

DUMP_TYPE_FULL = 1
DUMP_TYPE_BITMAP = 5


def _header(fields: Dict[str, object], phys: PhysicalImage, context: bytes, exception: bytes,
            dump_type: int) -> bytearray:
    header = bytearray(b"PAGE" * (S.HEADER64_SIZE // 4))
    values = dict(fields)
    values.update({"Signature": b"PAGE", "ValidDump": b"DU64", "DumpType": dump_type,
                   "NumberOfRuns": len(phys.runs), "NumberOfPages": sum(c for _, c in phys.runs)})
    packed = S.DUMP_HEADER64.pack(values)
    for name, offset, st in S.DUMP_HEADER64.fields:
        if name in values:
            header[offset:offset + st.size] = packed[offset:offset + st.size]
    header[0x3C:0x40] = b"\0\0\0\0"                     # padding after BugCheckCode
    header[0x8C:0x90] = b"\0\0\0\0"                     # padding after NumberOfRuns
    runs_area = bytearray(S.H64_CONTEXT_OFFSET - S.H64_RUNS_OFFSET)
    for i, (base, count) in enumerate(phys.runs):
        struct.pack_into("<QQ", runs_area, 16 * i, base, count)
    header[S.H64_RUNS_OFFSET:S.H64_CONTEXT_OFFSET] = runs_area
    header[S.H64_CONTEXT_OFFSET:S.H64_CONTEXT_OFFSET + len(context)] = context
    header[S.H64_EXCEPTION_OFFSET:S.H64_EXCEPTION_OFFSET + len(exception)] = exception
    return header


def write_full(path: str, fields: Dict[str, object], phys: PhysicalImage, context: bytes, exception: bytes) -> int:
    total_pages = sum(count for _, count in phys.runs)
    size = S.HEADER64_SIZE + total_pages * PAGE
    header = _header(dict(fields, RequiredDumpSpace=size), phys, context, exception, DUMP_TYPE_FULL)
    with open(path, "wb") as fh:
        fh.write(header)
        offset = S.HEADER64_SIZE
        for base, count in phys.runs:                  # header order = file order
            for pfn in sorted(p for p in phys.pages if base <= p < base + count):
                data = phys.page_bytes(pfn)
                if data is not None:
                    fh.seek(offset + (pfn - base) * PAGE)
                    fh.write(data)
            offset += count * PAGE
        fh.truncate(size)
    return size


def write_bitmap(path: str, fields: Dict[str, object], phys: PhysicalImage, context: bytes, exception: bytes,
                 signature: bytes = b"SDMP") -> int:
    present = list(phys.present_pfns())
    bit_count = max(base + count for base, count in phys.runs)
    bitmap = bytearray((bit_count + 7) // 8)
    for pfn in present:
        bitmap[pfn >> 3] |= 1 << (pfn & 7)
    first_page = (S.BITMAP_OFFSET + len(bitmap) + PAGE - 1) // PAGE * PAGE
    size = first_page + len(present) * PAGE
    header = _header(dict(fields, RequiredDumpSpace=size), phys, context, exception, DUMP_TYPE_BITMAP)
    bmp = bytearray(b"PAGE" * (0x38 // 4) + b"PAGE"[:0x38 % 4])
    bmp[0:8] = signature + b"DUMP"
    struct.pack_into("<QQQ", bmp, 0x20, first_page, len(present), bit_count)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(bmp)
        fh.write(bitmap)
        for index, pfn in enumerate(present):
            data = phys.page_bytes(pfn)
            if data is not None:
                fh.seek(first_page + index * PAGE)
                fh.write(data)
        fh.truncate(size)
    return size
