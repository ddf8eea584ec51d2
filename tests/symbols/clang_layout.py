"""Record layouts as clang computes them for x86_64-pc-windows-msvc (``-fdump-record-layouts``).

The oracle for every hand-written layout: clang implements the MSVC x64 ABI, so the offsets it prints
for public WDK declarations are the offsets Windows drivers are compiled with.
"""

import re
import subprocess
from typing import Dict, Tuple

_LINE = re.compile(r"^\s*(\d+)(?::(\d+)-(\d+))? \|( +)(.*)$")
_SIZE = re.compile(r"\[sizeof=(\d+), align=(\d+)")
_NAMED = re.compile(r"^(?:struct|union) ([A-Za-z_]\w*)$")

Layout = Tuple[int, Dict[str, Tuple[int, int]]]   # (sizeof in bytes, field -> (bit offset, bit width or 0))


def clang_record_layouts(source_path: str) -> Dict[str, Layout]:
    """Top-level named records -> size and leaf fields, anonymous members flattened as C sees them.

    Bit offsets are absolute from the start of the record; width 0 means "not a bitfield".
    """
    out = subprocess.run(["clang", "--target=x86_64-pc-windows-msvc", "-c", "-o", "/dev/null",
                          "-Xclang", "-fdump-record-layouts", source_path],
                         check=True, capture_output=True, text=True).stdout
    layouts: Dict[str, Layout] = {}
    for block in out.split("*** Dumping AST Record Layout")[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        head = _LINE.match(lines[0])
        named = _NAMED.match(head.group(5).strip()) if head else None
        if not named or named.group(1) in layouts:
            continue
        fields: Dict[str, Tuple[int, int]] = {}
        flatten = {0: True}          # depth -> are members at this depth visible by name in the record?
        for line in lines[1:]:
            size = _SIZE.search(line)
            if size:
                layouts[named.group(1)] = (int(size.group(1)), fields)
                break
            m = _LINE.match(line)
            if not m:
                raise AssertionError("unexpected clang layout line: %r" % line)
            depth = (len(m.group(4)) - 1) // 2
            decl = m.group(5).strip()
            visible = flatten.get(depth - 1, False)
            anonymous = "(anonymous at" in decl
            flatten[depth] = visible and anonymous
            if anonymous or not visible:
                continue
            name = decl.split()[-1]
            byte = int(m.group(1))
            if m.group(2) is not None:
                lo, hi = int(m.group(2)), int(m.group(3))
                fields[name] = (byte * 8 + lo, hi - lo + 1)
            else:
                fields[name] = (byte * 8, 0)
    return layouts
