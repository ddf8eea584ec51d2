"""`pytriage db DUMP ADDR`: raw bytes like WinDbg's `db` (virtual, or physical with --physical).

Useful on its own (what is at this address in the dump?) and as the thing tests and users compare with
the debugger's own `db` output, line for line.
"""

from typing import List, Optional

from pytriage.commands.render import format_address
from pytriage.errors import MemoryReadError
from pytriage.target.base import Target


def _printable(byte: int) -> str:
    return chr(byte) if 0x20 <= byte < 0x7F else "."


def hexdump_lines(address: int, data: bytes, physical: bool = False) -> List[str]:
    """16 bytes a line, a dash between the two halves, the text column: exactly `db`'s shape."""
    lines = []
    for offset in range(0, len(data), 16):
        row = data[offset:offset + 16]
        cells = ["%02x" % b for b in row] + ["  "] * (16 - len(row))
        left, right = " ".join(cells[:8]), " ".join(cells[8:])
        sep = "-" if len(row) > 8 else " "
        where = ("#%x" % (address + offset)) if physical else format_address(address + offset)
        lines.append("%s  %s%s%s  %s" % (where, left, sep, right, "".join(_printable(b) for b in row)))
    return lines


def dump_bytes(target: Target, address: int, length: int, physical: bool = False) -> List[str]:
    """Read and format; a read that fails part-way shows what was read and `??` for the rest, like db."""
    data: Optional[bytes] = None
    try:
        data = target.read_physical(address, length) if physical else target.read(address, length)
    except MemoryReadError:
        # fall back to line-by-line so the readable part is still shown
        lines: List[str] = []
        for offset in range(0, length, 16):
            try:
                chunk = (target.read_physical if physical else target.read)(address + offset, min(16, length - offset))
                lines.extend(hexdump_lines(address + offset, chunk, physical))
            except MemoryReadError:
                where = ("#%x" % (address + offset)) if physical else format_address(address + offset)
                lines.append("%s  %s" % (where, " ".join(["??"] * min(16, length - offset))))
        if all("??" in line for line in lines):
            raise
        return lines
    return hexdump_lines(address, data, physical)
