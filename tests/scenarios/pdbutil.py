"""Run LLVM's ``llvm-pdbutil`` on a PDB and parse what it prints, strictly.

``llvm-pdbutil`` is the independent reader for the PDBs ``pytriage.scenarios.pdb_writer`` writes: it
parses every stream with LLVM's own PDB library, and it resolves forward references through the TPI hash
stream (``forward ref (-> 0x1003)``), so a wrong hash shows. The parsers raise on any line they do not
recognise where they expect data, so a change in the tool's output fails loudly instead of comparing
nothing.
"""

import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

PDBUTIL = shutil.which("llvm-pdbutil")

# llvm-pdbutil's names of simple types -> the ISF base type names volatility3 uses.
SIMPLE_NAMES = {
    "unsigned char": "unsigned char", "char": "char", "signed char": "char", "unsigned short": "unsigned short",
    "short": "short", "unsigned long": "unsigned long", "long": "long", "unsigned": "unsigned int", "int": "int",
    "unsigned __int64": "unsigned long long", "__int64": "long long", "wchar_t": "wchar", "void": "void",
    "bool": "bool", "float": "float", "double": "double"}


class PdbUtilError(AssertionError):
    pass


def run(*args: str) -> str:
    if PDBUTIL is None:
        raise PdbUtilError("llvm-pdbutil is not installed (Debian package llvm; scripts/test installs it)")
    proc = subprocess.run([PDBUTIL] + list(args), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or proc.stderr.strip():
        raise PdbUtilError("llvm-pdbutil %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr[-2000:]))
    return proc.stdout


def sections_of(text: str) -> Dict[str, List[str]]:
    """Split a ``dump`` output into its titled sections (a title line underlined with ``====``)."""
    lines = text.splitlines()
    out: Dict[str, List[str]] = {}
    current: Optional[str] = None
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and lines[i].strip() and re.match(r"^=+$", lines[i + 1]):
            current = lines[i].strip()
            out[current] = []
            i += 2
            continue
        if lines[i].strip():
            if current is None:
                raise PdbUtilError("output before the first section: %r" % lines[i])
            out[current].append(lines[i])
        i += 1
    return out


def parse_summary(lines: List[str]) -> Dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^  ([A-Za-z ]+): (.*)$", line)
        if not m:
            raise PdbUtilError("summary line not understood: %r" % line)
        out[m.group(1)] = m.group(2)
    return out


@dataclass
class Public:
    name: str
    function: bool
    segment: int
    offset: int


def parse_publics(lines: List[str]) -> List[Public]:
    if not lines or lines[0].strip() != "Records":
        raise PdbUtilError("publics section does not start with Records: %r" % lines[:1])
    out = []
    body = lines[1:]
    if len(body) % 2:
        raise PdbUtilError("publics: odd number of lines")
    for head, detail in zip(body[0::2], body[1::2]):
        m = re.match(r"^\s+\d+ \| S_PUB32 \[size = \d+\] `(.*)`$", head)
        d = re.match(r"^\s+flags = (none|function|code|code \| function), addr = (\d{4}):(\d+)$", detail)
        if not m or not d:
            raise PdbUtilError("public not understood: %r / %r" % (head, detail))
        out.append(Public(m.group(1), "function" in d.group(1), int(d.group(2)), int(d.group(3))))
    return out


@dataclass
class SectionHeader:
    name: str
    virtual_size: int
    virtual_address: int
    size_of_raw_data: int
    pointer_to_raw_data: int
    characteristics: int


_SECTION_FIELDS = ["name", "virtual size", "virtual address", "size of raw data", "file pointer to raw data",
                   "file pointer to relocation table", "file pointer to line numbers", "number of relocations",
                   "number of line numbers", "flags"]


def parse_section_headers(lines: List[str]) -> List[SectionHeader]:
    out = []
    i = 0
    while i < len(lines):
        m = re.match(r"^  SECTION HEADER #(\d+)$", lines[i])
        if not m or int(m.group(1)) != len(out) + 1:
            raise PdbUtilError("section header line not understood: %r" % lines[i])
        values = []
        for j, label in enumerate(_SECTION_FIELDS):
            f = re.match(r"^\s+(\S+) %s$" % re.escape(label), lines[i + 1 + j])
            if not f:
                raise PdbUtilError("section header field not understood: %r" % lines[i + 1 + j])
            values.append(f.group(1))
        i += 1 + len(_SECTION_FIELDS)
        while i < len(lines) and re.match(r"^\s+IMAGE_SCN_\w+$", lines[i]):
            i += 1
        out.append(SectionHeader(values[0], int(values[1], 16), int(values[2], 16), int(values[3], 16),
                                 int(values[4], 16), int(values[9], 16)))
    return out


@dataclass
class TypeRecord:
    index: int
    kind: str
    name: str
    lines: List[str] = field(default_factory=list)


_RECORD = re.compile(r"^\s+0x([0-9A-F]+) \| (LF_\w+) \[size = \d+(?:, hash = 0x[0-9A-F]+)?\](?: `(.*)`)?$")
_TYPEREF = r"0x([0-9A-F]{4})(?: \(([^)]*)\))?"


def parse_types(lines: List[str]) -> Dict[int, TypeRecord]:
    if not lines or not re.match(r"^\s+Showing \d+ records$", lines[0]):
        raise PdbUtilError("types section does not start with the record count: %r" % lines[:1])
    records: Dict[int, TypeRecord] = {}
    current: Optional[TypeRecord] = None
    for line in lines[1:]:
        m = _RECORD.match(line)
        if m:
            current = TypeRecord(int(m.group(1), 16), m.group(2), m.group(3) or "")
            records[current.index] = current
        elif current is not None and line.startswith(" " * 11):
            current.lines.append(line.strip())
        elif re.match(r"^\s+(Header Version|Hash Stream Index|Aux Hash Stream Index|Hash Key Size|Num Hash Buckets"
                      r"|Type Index Offsets|TI: 0x[0-9A-F]+, Offset|Hash Adjusters)", line):
            current = None
        else:
            raise PdbUtilError("types line not understood: %r" % line)
    return records


class TypeView:
    """Answers questions about parsed TPI records the way the ISF describes types."""

    def __init__(self, records: Dict[int, TypeRecord]) -> None:
        self.records = records

    def _attr(self, record: TypeRecord, pattern: str) -> "re.Match[str]":
        for line in record.lines:
            m = re.search(pattern, line)
            if m:
                return m
        raise PdbUtilError("0x%X %s: no %r in %s" % (record.index, record.kind, pattern, record.lines))

    def tag(self, record: TypeRecord) -> Dict[str, Any]:
        """Name, unique name, field list, forward-ref target and size of a struct/class/union/enum."""
        unique = self._attr(record, r"^unique name: `(.*)`$").group(1)
        fieldlist = self._attr(record, r"field list: (<no type>|0x[0-9A-F]+)").group(1)
        out: Dict[str, Any] = {"name": record.name, "unique": unique,
                               "fieldlist": None if fieldlist == "<no type>" else int(fieldlist, 16)}
        if record.kind == "LF_ENUM":
            out["underlying"] = self._attr(record, r"underlying type: " + _TYPEREF).group(2)
            return out
        options = self._attr(record, r"^options: (.*), sizeof (\d+)$")
        forward = re.search(r"forward ref \(-> 0x([0-9A-F]+)\)", options.group(1))
        out["forward"] = "forward ref" in options.group(1)
        out["definition"] = int(forward.group(1), 16) if forward else None
        out["size"] = int(options.group(2))
        return out

    def definition(self, name: str) -> Tuple[TypeRecord, Dict[str, Any]]:
        found = [(r, self.tag(r)) for r in self.records.values()
                 if r.kind in ("LF_STRUCTURE", "LF_CLASS", "LF_UNION", "LF_ENUM") and r.name == name]
        defs = [(r, t) for r, t in found if not t.get("forward")]
        if len(defs) != 1:
            raise PdbUtilError("%d definitions of %s" % (len(defs), name))
        return defs[0]

    def fields(self, fieldlist: int) -> List[Tuple[str, ...]]:
        """Members of a field list, following LF_INDEX continuations: ("member", name, type index (hex),
        simple type name or "", offset) or ("enumerate", name, value)."""
        out: List[Tuple[str, ...]] = []
        record = self.records[fieldlist]
        if record.kind != "LF_FIELDLIST":
            raise PdbUtilError("0x%X is %s, not a field list" % (fieldlist, record.kind))
        for line in record.lines:
            m = re.match(r"^- LF_MEMBER \[name = `(.*)`, Type = " + _TYPEREF + r", offset = (\d+), attrs = public\]$",
                         line)
            e = re.match(r"^- LF_ENUMERATE \[(.*) = (-?\d+)\]$", line)
            c = re.match(r"^- LF_INDEX continuation = 0x([0-9A-F]+)$", line)
            if m:
                out.append(("member", m.group(1), m.group(2), m.group(3) or "", m.group(4)))
            elif e:
                out.append(("enumerate", e.group(1), e.group(2)))
            elif c:
                out.extend(self.fields(int(c.group(1), 16)))
            else:
                raise PdbUtilError("field list line not understood: %r" % line)
        return out

    def size_of(self, ti: int, simple_name: Optional[str] = None) -> int:
        if ti < 0x1000:
            sizes = {"unsigned char": 1, "char": 1, "signed char": 1, "bool": 1, "unsigned short": 2, "short": 2,
                     "wchar_t": 2, "unsigned long": 4, "long": 4, "unsigned": 4, "int": 4, "float": 4,
                     "unsigned __int64": 8, "__int64": 8, "double": 8}
            return 8 if (simple_name or "").endswith("*") else sizes[simple_name or ""]
        record = self.records[ti]
        if record.kind == "LF_POINTER":
            return 8
        if record.kind in ("LF_STRUCTURE", "LF_CLASS", "LF_UNION"):
            tag = self.tag(record)
            return self.tag(self.records[tag["definition"]])["size"] if tag["forward"] else tag["size"]
        if record.kind == "LF_ARRAY":
            return int(self._attr(record, r"^size: (\d+),").group(1))
        raise PdbUtilError("no size for 0x%X %s" % (ti, record.kind))

    def describe(self, ti: int, simple_name: Optional[str] = None) -> Dict[str, Any]:
        """The ISF type descriptor of a type index (what volatility3's pdbconv would write for it)."""
        if ti < 0x1000:
            name = simple_name or ""
            if name.endswith("*"):
                return {"kind": "pointer", "subtype": {"kind": "base", "name": SIMPLE_NAMES[name[:-1]]}}
            return {"kind": "base", "name": SIMPLE_NAMES[name]}
        record = self.records[ti]
        if record.kind == "LF_POINTER":
            m = self._attr(record, r"^referent = " + _TYPEREF + r", mode = pointer, opts = None, kind = ptr64$")
            return {"kind": "pointer", "subtype": self.describe(int(m.group(1), 16), m.group(2))}
        if record.kind in ("LF_STRUCTURE", "LF_CLASS", "LF_UNION"):
            kind = {"LF_STRUCTURE": "struct", "LF_CLASS": "class", "LF_UNION": "union"}[record.kind]
            return {"kind": kind, "name": record.name}
        if record.kind == "LF_ENUM":
            return {"kind": "enum", "name": record.name}
        if record.kind == "LF_ARRAY":
            m = self._attr(record, r"^size: (\d+), index type: 0x0023 \(unsigned __int64\), element type: " + _TYPEREF
                           + "$")
            element = int(m.group(2), 16)
            count = int(m.group(1)) // self.size_of(element, m.group(3))
            return {"kind": "array", "count": count, "subtype": self.describe(element, m.group(3))}
        if record.kind == "LF_BITFIELD":
            m = self._attr(record, r"^type = " + _TYPEREF + r", bit offset = (\d+), # bits = (\d+)$")
            return {"kind": "bitfield", "bit_position": int(m.group(3)), "bit_length": int(m.group(4)),
                    "type": self.describe(int(m.group(1), 16), m.group(2))}
        if record.kind == "LF_PROCEDURE":
            return {"kind": "function"}
        raise PdbUtilError("cannot describe 0x%X %s" % (ti, record.kind))


@dataclass
class PdbDump:
    summary: Dict[str, str]
    publics: List[Public]
    sections: List[SectionHeader]
    types: TypeView


def dump(path: str) -> PdbDump:
    """``llvm-pdbutil dump --summary --publics --types --section-headers`` of ``path``, parsed."""
    parts = sections_of(run("dump", "--summary", "--publics", "--types", "--section-headers", path))
    expected = ["Summary", "Public Symbols", "Types (TPI Stream)", "Section Headers", "Original Section Headers"]
    if sorted(parts) != sorted(expected):
        raise PdbUtilError("unexpected sections %s" % sorted(parts))
    if parts["Original Section Headers"] != ["  PDB does not contain the requested image section header type"]:
        raise PdbUtilError("original section headers: %s" % parts["Original Section Headers"])
    return PdbDump(parse_summary(parts["Summary"]), parse_publics(parts["Public Symbols"]),
                   parse_section_headers(parts["Section Headers"]), TypeView(parse_types(parts["Types (TPI Stream)"])))


def check_isf_types(view: TypeView, isf: Dict[str, Any]) -> int:
    """Every ISF struct/union/enum is in the TPI with the same size, members, offsets and member types;
    every forward reference resolves (through the TPI hash) to its definition. Returns the types checked."""
    prefixes = {"struct": ".?AU", "class": ".?AV", "union": ".?AT", "enum": ".?AW4"}
    kinds = {"struct": "LF_STRUCTURE", "class": "LF_CLASS", "union": "LF_UNION"}
    for name, udt in isf.get("user_types", {}).items():
        record, tag = view.definition(name)
        assert record.kind == kinds[udt["kind"]], (name, record.kind)
        assert tag["unique"] == prefixes[udt["kind"]] + name + "@@"
        assert tag["size"] == udt["size"], name
        members = view.fields(tag["fieldlist"])
        expected = sorted(udt["fields"].items(),
                          key=lambda kv: (kv[1]["offset"], kv[1]["type"].get("bit_position", 0), kv[0]))
        assert [(m[1], int(m[4])) for m in members] == [(n, f["offset"]) for n, f in expected], name
        for member, (fname, f) in zip(members, expected):
            assert view.describe(int(member[2], 16), member[3]) == f["type"], (name, fname)
    for name, enum in isf.get("enums", {}).items():
        record, tag = view.definition(name)
        assert tag["unique"] == ".?AW4%s@@" % name
        assert SIMPLE_NAMES[tag["underlying"]] == enum["base"], name
        values = sorted((m[1], int(m[2])) for m in view.fields(tag["fieldlist"]))
        assert values == sorted(enum["constants"].items()), name
    for record in view.records.values():
        if record.kind in ("LF_STRUCTURE", "LF_CLASS", "LF_UNION"):
            tag = view.tag(record)
            if tag["forward"] and record.name in isf.get("user_types", {}):
                assert tag["definition"] == view.definition(record.name)[0].index, record.name
    return len(isf.get("user_types", {})) + len(isf.get("enums", {}))


def section_rva(sections: List[SectionHeader], segment: int, offset: int) -> int:
    return sections[segment - 1].virtual_address + offset


def msf_streams(path: str) -> List[bytes]:
    """The streams of an MSF file, read straight from its directory (for byte-level comparisons)."""
    with open(path, "rb") as fh:
        data = fh.read()
    block_size, _fpm, _blocks, directory_bytes, _unknown, block_map = struct.unpack_from("<6I", data, 32)
    count = (directory_bytes + block_size - 1) // block_size
    directory_blocks = struct.unpack_from("<%dI" % count, data, block_map * block_size)
    directory = b"".join(data[b * block_size:(b + 1) * block_size] for b in directory_blocks)[:directory_bytes]
    n = struct.unpack_from("<I", directory)[0]
    sizes = [0 if s == 0xFFFFFFFF else s for s in struct.unpack_from("<%dI" % n, directory, 4)]
    position = 4 + 4 * n
    out = []
    for size in sizes:
        k = (size + block_size - 1) // block_size
        blocks = struct.unpack_from("<%dI" % k, directory, position)
        position += 4 * k
        out.append(b"".join(data[b * block_size:(b + 1) * block_size] for b in blocks)[:size])
    return out


def stream_numbers(path: str) -> Dict[str, int]:
    """Stream purpose -> number, as ``llvm-pdbutil dump --streams`` names them."""
    out = {}
    for line in sections_of(run("dump", "--streams", path))["Streams"]:
        m = re.match(r"^\s+Stream\s+(\d+) \(\s*\d+ bytes\): \[(.*)\]$", line)
        if m:
            out[m.group(2)] = int(m.group(1))
        elif not re.match(r"^\s+Blocks: \[", line):
            raise PdbUtilError("streams line not understood: %r" % line)
    return out
