"""Helpers for the PDB reader tests: build real PDBs with clang-cl + lld-link, fetch a real MSVC-built PDB
from PyPI, and parse ``llvm-pdbutil dump`` output, the oracle every PDB test compares against.

Why parse llvm-pdbutil's text: it is LLVM's own reader of the format (a different implementation from
ours), it is in Debian's ``llvm`` package next to ``clang`` and ``lld``, and its ``dump`` output states
every fact we need (type records with field lists, bitfields, forward-reference targets; publics with
``segment:offset``; section headers; GUID/age) in a stable line format.
"""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from typing import Dict, List, NamedTuple, Optional, Tuple

PDBUTIL = shutil.which("llvm-pdbutil") or "/usr/bin/llvm-pdbutil"
CLANG = shutil.which("clang") or "/usr/bin/clang"
LLD_LINK = shutil.which("lld-link") or "/usr/bin/lld-link"

# The MSVC-built PDB of the tests: debugpy's Windows wheel ships the PDBs of its attach helpers.
DEBUGPY_VERSION = "1.8.0"
DEBUGPY_WHEEL = "debugpy-%s-cp311-cp311-win_amd64.whl" % DEBUGPY_VERSION
DEBUGPY_PDB_DIR = "debugpy/_vendored/pydevd/pydevd_attach_to_process/"
DEBUGPY_PDB = "inject_dll_amd64.pdb"          # the largest one (5.5 MB, 8k+ type records, C++ with the STL)


def run(args: List[str], cwd: Optional[str] = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def build_pdb(workdir: str, sources: Dict[str, str], name: str = "x") -> Tuple[str, str]:
    """Compile ``sources`` (file name -> text; ``.c`` or ``.cpp``) with clang-cl for x64 Windows with
    CodeView (/Z7) and link them into ``name.dll`` + ``name.pdb`` with lld-link. Returns (pdb, dll)."""
    objects = []
    for filename, text in sources.items():
        path = os.path.join(workdir, filename)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        run([CLANG, "--driver-mode=cl", "--target=x86_64-pc-windows-msvc", "/c", "/Z7", "/GS-", "/GR-", "/nologo",
             filename], cwd=workdir)
        objects.append(os.path.splitext(filename)[0] + ".obj")
    run([LLD_LINK, "/dll", "/noentry", "/nodefaultlib", "/debug", "/out:%s.dll" % name, "/pdb:%s.pdb" % name]
        + objects, cwd=workdir)
    return os.path.join(workdir, name + ".pdb"), os.path.join(workdir, name + ".dll")


def pdbutil(*args: str) -> str:
    return run([PDBUTIL] + list(args))


def cache_dir() -> str:
    path = os.environ.get("PYTRIAGE_TEST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pytriage-test")
    os.makedirs(path, exist_ok=True)
    return path


def debugpy_pdb(name: str = DEBUGPY_PDB) -> str:
    """Path of ``name`` from debugpy's win_amd64 wheel, downloaded from PyPI once into the cache dir."""
    directory = cache_dir()
    target = os.path.join(directory, "debugpy-%s-%s" % (DEBUGPY_VERSION, name))
    if os.path.exists(target):
        return target
    wheel = os.path.join(directory, DEBUGPY_WHEEL)
    if not os.path.exists(wheel):
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--platform", "win_amd64",
             "--python-version", "3.11", "debugpy==%s" % DEBUGPY_VERSION, "-d", directory, "-q"])
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(DEBUGPY_PDB_DIR + name)
    with open(target + ".tmp", "wb") as fh:
        fh.write(data)
    os.replace(target + ".tmp", target)
    return target


# -- llvm-pdbutil output parsers -----------------------------------------------------------------------------

def parse_summary(text: str) -> Dict[str, object]:
    """``dump --summary``: GUID (symbol-store form), info-stream age, signature."""
    guid = re.search(r"GUID: \{([0-9A-F-]+)\}", text).group(1).replace("-", "")
    return {"guid": guid, "age": int(re.search(r"^\s*Age: (\d+)", text, re.M).group(1)),
            "signature": int(re.search(r"^\s*Signature: (\d+)", text, re.M).group(1))}


def parse_yaml_ages(text: str) -> Tuple[int, int]:
    """``pdb2yaml --pdb-stream --dbi-stream``: (info-stream age, DBI age)."""
    info = re.search(r"PdbStream:.*?Age:\s+(\d+)", text, re.S).group(1)
    dbi = re.search(r"DbiStream:.*?Age:\s+(\d+)", text, re.S).group(1)
    return int(info), int(dbi)


class Public(NamedTuple):
    name: str
    segment: int
    offset: int
    flags: str


_PUBLIC = re.compile(r"^\s+\d+ \| S_PUB32 \[size = \d+\] `(.*)`\n\s+flags = (.*?), addr = (\d+):(\d+)$", re.M)


def parse_publics(text: str) -> List[Public]:
    """``dump --publics``: every S_PUB32 (llvm prints segment and offset in decimal)."""
    return [Public(m.group(1), int(m.group(3)), int(m.group(4)), m.group(2)) for m in _PUBLIC.finditer(text)]


class Section(NamedTuple):
    name: str
    virtual_size: int
    virtual_address: int


def parse_section_headers(text: str) -> Tuple[List[Section], List[Section]]:
    """``dump --section-headers``: (final section headers, original ones; empty without OMAP)."""
    final_part, _, original_part = text.partition("Original Section Headers")

    def sections(part: str) -> List[Section]:
        found = re.findall(r"SECTION HEADER #\d+\n\s+(\S*) name\n\s+([0-9A-F]+) virtual size\n"
                           r"\s+([0-9A-F]+) virtual address", part)
        return [Section(name, int(vsize, 16), int(va, 16)) for name, vsize, va in found]
    return sections(final_part), sections(original_part)


class TypeRecord(NamedTuple):
    index: int
    kind: str
    name: str
    body: str          # every line after the first, joined


_RECORD_HEAD = re.compile(r"^\s+0x([0-9A-F]+) \| (LF_\w+) \[size = \d+\](?: `(.*)`)?$")


def parse_types(text: str) -> Dict[int, TypeRecord]:
    """``dump --types``: type index -> record (kind, name, body text)."""
    records: Dict[int, TypeRecord] = {}
    current: Optional[Tuple[int, str, str]] = None
    body: List[str] = []
    for line in text.splitlines():
        head = _RECORD_HEAD.match(line)
        if head:
            if current:
                records[current[0]] = TypeRecord(current[0], current[1], current[2], "\n".join(body))
            current = (int(head.group(1), 16), head.group(2), head.group(3) or "")
            body = []
        elif current:
            body.append(line.strip())
    if current:
        records[current[0]] = TypeRecord(current[0], current[1], current[2], "\n".join(body))
    return records


UDT_KINDS = {"LF_STRUCTURE": "struct", "LF_CLASS": "class", "LF_INTERFACE": "class", "LF_UNION": "union",
             "LF_ENUM": "enum"}
# llvm-pdbutil's names of simple types -> (the C name pytriage uses, size on x64 Windows).
LLVM_SIMPLE_NAMES = {
    "void": ("void", 0), "char": ("char", 1), "signed char": ("signed char", 1),
    "unsigned char": ("unsigned char", 1), "wchar_t": ("wchar_t", 2), "char16_t": ("char16_t", 2),
    "char32_t": ("char32_t", 4), "short": ("short", 2), "unsigned short": ("unsigned short", 2),
    "long": ("long", 4), "unsigned long": ("unsigned long", 4), "int": ("int", 4), "unsigned": ("unsigned int", 4),
    "__int64": ("long long", 8), "unsigned __int64": ("unsigned long long", 8), "float": ("float", 4),
    "double": ("double", 8), "bool": ("bool", 1), "HRESULT": ("HRESULT", 4),
}


class LlvmTypes:
    """The oracle's view of a TPI stream: layouts and type shapes computed from llvm-pdbutil's dump only."""

    def __init__(self, text: str) -> None:
        self.records = parse_types(text)

    def udt(self, index: int) -> Dict[str, object]:
        record = self.records[index]
        body = record.body
        unique = re.search(r"unique name: `(.*)`", body)
        forward = re.search(r"forward ref \((?:->|<-|=) 0x([0-9A-F]+)\)", body)
        field_list = re.search(r"field list: (0x[0-9A-F]+|<no type>)", body)
        size = re.search(r"sizeof (\d+)", body)
        underlying = re.search(r"underlying type: 0x([0-9A-F]+)", body)
        return {
            "kind": UDT_KINDS[record.kind], "name": record.name, "unique": unique.group(1) if unique else "",
            "forward_to": int(forward.group(1), 16) if forward else None,
            "field_list": int(field_list.group(1), 16) if field_list and field_list.group(1) != "<no type>" else 0,
            "size": int(size.group(1)) if size else 0,
            "scoped": bool(re.search(r"options:.*\bscoped\b", body)),
            "underlying": int(underlying.group(1), 16) if underlying else 0,
        }

    def definitions(self) -> List[int]:
        """Type indexes of every struct/class/union/enum definition (not forward references)."""
        return [ti for ti, r in sorted(self.records.items())
                if r.kind in UDT_KINDS and self.udt(ti)["forward_to"] is None]

    def resolve(self, index: int) -> int:
        """Forward reference -> the definition llvm-pdbutil found for it (itself when none)."""
        if index in self.records and self.records[index].kind in UDT_KINDS:
            target = self.udt(index)["forward_to"]
            if target is not None and target in self.records:
                return target
        return index

    def members(self, field_list: int) -> List[Tuple[str, tuple]]:
        """Members of a field list, following LF_INDEX continuations: ``("member", (name, type, offset))``,
        ``("base", (type, offset))``, ``("vfptr", (type,))``, ``("enumerate", (name, value))``."""
        items: List[Tuple[str, tuple]] = []
        seen = set()
        while field_list and field_list not in seen:
            seen.add(field_list)
            body = self.records[field_list].body
            nxt = 0
            for m in re.finditer(r"- LF_MEMBER \[name = `(.*?)`, Type = 0x([0-9A-F]+)(?: \(.*?\))?, offset = (\d+),"
                                 r"|- LF_BCLASS\n\s*type = 0x([0-9A-F]+), offset = (\d+),"
                                 r"|- LF_VFUNCTAB type = 0x([0-9A-F]+)"
                                 r"|- LF_ENUMERATE \[(.*?) = (-?\d+)\]"
                                 r"|- LF_INDEX continuation = 0x([0-9A-F]+)", body):
                if m.group(1) is not None:
                    items.append(("member", (m.group(1), int(m.group(2), 16), int(m.group(3)))))
                elif m.group(4) is not None:
                    items.append(("base", (int(m.group(4), 16), int(m.group(5)))))
                elif m.group(6) is not None:
                    items.append(("vfptr", (int(m.group(6), 16),)))
                elif m.group(7) is not None:
                    items.append(("enumerate", (m.group(7), int(m.group(8)))))
                else:
                    nxt = int(m.group(9), 16)
            field_list = nxt
        return items

    def bitfield(self, index: int) -> Optional[Tuple[int, int, int]]:
        """(underlying type, bit offset, bit count) if ``index`` is an LF_BITFIELD."""
        record = self.records.get(index)
        if record is None or record.kind != "LF_BITFIELD":
            return None
        m = re.search(r"type = 0x([0-9A-F]+).*?, bit offset = (\d+), # bits = (\d+)", record.body)
        return int(m.group(1), 16), int(m.group(2)), int(m.group(3))

    def shape(self, index: int, anonymous_name, depth: int = 0) -> Optional[tuple]:
        """A comparable description of type ``index``: (kind, name, size, count, modifiers, target shape).

        ``anonymous_name(name, definition index)`` gives the name pytriage uses for an unnamed type.
        Returns None for types the oracle cannot describe (llvm's ``<unknown simple type>``).
        """
        if depth > 16:
            return ("...",)
        if index < 0x1000:
            mode = (index >> 8) & 0xF
            names = re.findall(r"0x%04X \((.*?)\)" % index, "\n".join(r.body for r in self._with_simple(index)))
            if not names or names[0] == "<unknown simple type>":
                return None
            name = names[0]
            if index == 0x0103:
                return ("base", "std::nullptr_t", 8, 0, (), None)
            if mode:
                base, base_size = LLVM_SIMPLE_NAMES[name.rstrip("*")]
                return ("pointer", "", {4: 4, 6: 8}[mode], 0, (), ("base", base, base_size, 0, (), None))
            base, base_size = LLVM_SIMPLE_NAMES[name]
            return ("base", base, base_size, 0, (), None)
        record = self.records[index]
        body = record.body
        if record.kind == "LF_POINTER":
            m = re.search(r"referent = 0x([0-9A-F]+).*?, mode = (.*?), opts = (.*?), kind = ptr(\d+)", body)
            mods = tuple(x for x in ("const", "volatile", "unaligned") if x in m.group(3).split(" | "))
            return ("pointer", "", int(m.group(4)) // 8, 0, mods,
                    self.shape(int(m.group(1), 16), anonymous_name, depth + 1))
        if record.kind == "LF_MODIFIER":
            m = re.search(r"referent = 0x([0-9A-F]+).*?, modifiers = (.*)$", body)
            inner = self.shape(int(m.group(1), 16), anonymous_name, depth + 1)
            if inner is None:
                return None
            mods = set(inner[4]) | {x.strip() for x in m.group(2).split("|") if x.strip()}
            return inner[:4] + (tuple(x for x in ("const", "volatile", "unaligned") if x in mods),) + inner[5:]
        if record.kind == "LF_ARRAY":
            m = re.search(r"size: (\d+), index type: 0x[0-9A-F]+.*?, element type: 0x([0-9A-F]+)", body)
            element = self.shape(int(m.group(2), 16), anonymous_name, depth + 1)
            size = int(m.group(1))
            element_size = element[2] if element else None
            count = size // element_size if element_size else None
            return ("array", "", size, count, (), element)
        if record.kind in ("LF_PROCEDURE", "LF_MFUNCTION"):
            return ("function", "", 0, 0, (), None)
        if record.kind in UDT_KINDS:
            definition = self.resolve(index)
            info = self.udt(definition)
            name = anonymous_name(info["name"], definition)
            if info["kind"] == "enum":
                underlying = self.shape(info["underlying"], anonymous_name, depth + 1)
                return ("enum", name, underlying[2] if underlying else None, 0, (), None)
            return (info["kind"], name, info["size"] if info["forward_to"] is None else 0, 0, (), None)
        return ("base", "<%s>" % record.kind, 0, 0, (), None)

    def _with_simple(self, index: int) -> List[TypeRecord]:
        """Records whose text names simple type ``index`` with its llvm name (any one is enough)."""
        key = "0x%04X (" % index
        cache = self.__dict__.setdefault("_simple_cache", {})
        if index not in cache:
            cache[index] = next((r for r in self.records.values() if key in r.body), None)
        found = cache[index]
        return [found] if found else []


def typeref_shape(ref) -> Optional[tuple]:
    """The same comparable description built from a pytriage ``TypeRef``."""
    if ref is None:
        return None
    if ref.kind == "base":
        return ("base", ref.name, ref.size, 0, ref.modifiers, None)
    if ref.kind == "pointer":
        return ("pointer", "", ref.size, 0, ref.modifiers, typeref_shape(ref.target))
    if ref.kind == "array":
        return ("array", "", ref.size, ref.count if ref.target and ref.target.size else None, ref.modifiers,
                typeref_shape(ref.target))
    if ref.kind == "function":
        return ("function", "", 0, 0, ref.modifiers, None)
    if ref.kind == "enum":
        return ("enum", ref.name, ref.size, 0, ref.modifiers, None)
    return (ref.kind, ref.name, ref.size, 0, ref.modifiers, None)


def shapes_equal(expected: Optional[tuple], ours: Optional[tuple]) -> bool:
    """Compare two shapes; parts the oracle leaves unknown (None) match anything."""
    if expected is None:
        return True
    if ours is None or len(expected) != len(ours):
        return False
    for a, b in zip(expected, ours):
        if isinstance(a, tuple) or isinstance(b, tuple):
            if a is None or b is None:
                if a is not None:
                    return False
                continue
            if not shapes_equal(a, b):
                return False
        elif a is not None and a != b:
            return False
    return True


# -- the clang-built fixtures ---------------------------------------------------------------------------------
# The public WDK declarations (wdm.h, ndis/nbl.h, x64; one hand transcription shared with the built-in layouts'
# test, tests/symbols/data/wdk_types.h), plus shapes the WDK does not exercise. Every type is used by value in
# an exported global, so each one is laid out and lands in the PDB.
WDK_TYPES_H = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "wdk_types.h")
with open(WDK_TYPES_H, encoding="utf-8") as _fh:
    WDK_C = _fh.read() + r"""
/* Shapes the WDK structures above do not exercise. */
enum Colour { Red = 1, Green = -2, Blue = 0x7fffffff, Small = -200, Big = 70000, Negative = -70000,
              Mid = 0x8000 };

struct Shapes {
    struct Shapes *self;
    const volatile int cv;
    volatile ULONG v;
    const char *const cp;
    char a[2][3][4];
    enum Colour colour;
    union { int i; float f; };
    union { int i2; short s2; } named_union;
    struct { int x, y; } point;
    ULONGLONG wide : 40, narrow : 24;
    int (*callback)(int, char *);
    struct _EPROCESS *opaque;
    UCHAR big[70000];
    ULONG after_big;
    LONG signed_bits : 3;
    __unaligned int *unaligned_ptr;
    unsigned short wide_char;
    double real;
    _Bool flag;
};

typedef union Variant {
    ULONG u;
    LONGLONG ll;
    UCHAR bytes[8];
} Variant;

__declspec(dllexport) LIST_ENTRY g_list;
__declspec(dllexport) MDL g_mdl;
__declspec(dllexport) POOL_HEADER g_pool;
__declspec(dllexport) NET_BUFFER g_nb;
__declspec(dllexport) NET_BUFFER_LIST g_nbl;
__declspec(dllexport) NET_BUFFER_LIST_CONTEXT g_nbl_context;
__declspec(dllexport) struct Shapes g_shapes;
__declspec(dllexport) Variant g_variant;
__declspec(dllexport) NDIS_NET_BUFFER_LIST_INFO g_info_id;
__declspec(dllexport) LARGE_INTEGER g_large;

static int twice(int x) { return 2 * x; }

__declspec(dllexport) ULONG_PTR Touch(PNET_BUFFER_LIST nbl, int n)
{
    return (ULONG_PTR)nbl->FirstNetBuffer + (ULONG_PTR)twice(n);
}

__declspec(dllexport) int Second(int n) { return n + 1; }
"""

# A field list longer than a record can hold (64 KB) is split by the compiler into LF_FIELDLIST records
# chained with LF_INDEX; members past offset 0x7FFF need an LF_USHORT numeric leaf for their offset.
WIDE_MEMBERS = 5000
WIDE_C = ("struct Wide {\n%s};\n__declspec(dllexport) struct Wide g_wide;\n"
          % "".join("    long long m%04d;\n" % i for i in range(WIDE_MEMBERS)))

CLASSES_CPP = r"""
namespace ns {
struct Base {
    int b;
    virtual int f();
    static int counter;
};
struct Derived : Base {
    int d;
    enum class Kind : unsigned char { A, B = 200 } kind;
    struct Inner { short s; } inner;
    int f() override;
    void overloaded(int);
    void overloaded(double);
};
template <typename T> struct Box { T value; Box *next; };
class Priv {
    int hidden;
public:
    int shown;
    int get() const { return hidden; }
};
}  // namespace ns

int ns::Base::f() { return b; }
int ns::Base::counter;
int ns::Derived::f() { return d; }
void ns::Derived::overloaded(int) {}
void ns::Derived::overloaded(double) {}

static int helper(int x) { return x * 3; }
extern "C" int _fltused = 0;          // what the CRT would define for code that touches doubles

extern "C" __declspec(dllexport) int UseClasses(ns::Derived *d, ns::Box<int> *bi, ns::Box<ns::Derived> *bd,
                                                ns::Priv *p)
{
    return d->f() + bi->value + bd->value.d + p->shown + p->get() + helper(d->d);
}
ns::Box<int> g_box_int;
ns::Box<ns::Derived> g_box_derived;
ns::Priv g_priv;
"""

SMALL_C = r"""
typedef unsigned long ULONG;
typedef struct _LIST_ENTRY { struct _LIST_ENTRY *Flink, *Blink; } LIST_ENTRY;
struct Opaque;
enum Mode { ModeA = 1, ModeB = -5 };
typedef struct _ITEM {
    LIST_ENTRY Links;
    ULONG Flags : 3, Kind : 5;
    const volatile short cv;
    char name[4][2];
    union { int i; float f; };
    union { int a; short b; } u;
    enum Mode mode;
    struct Opaque *opaque;
    struct _ITEM *(*next)(struct _ITEM *);
} ITEM;
__declspec(dllexport) ITEM g_item;
__declspec(dllexport) int GetFlags(ITEM *item) { return item->Flags; }
__declspec(dllexport) int GetKind(ITEM *item) { return item->Kind; }
"""

_BUILT: Dict[str, Tuple[str, str]] = {}


def clang_fixture(workdir_factory, which: str) -> Tuple[str, str]:
    """Build (once per process) ``"full"`` (WDK + shapes + wide + C++) or ``"small"``; returns (pdb, dll)."""
    if which not in _BUILT:
        workdir = str(workdir_factory.mktemp("pdb-%s" % which))
        if which == "full":
            sources = {"wdk.c": WDK_C, "wide.c": WIDE_C, "classes.cpp": CLASSES_CPP}
        else:
            sources = {"small.c": SMALL_C}
        _BUILT[which] = build_pdb(workdir, sources, which)
    return _BUILT[which]


_PROC = re.compile(r"^\s+\d+ \| S_[GL]PROC32(?:_ID)? \[size = \d+\] `(.*)`\n\s+parent = \d+, end = \d+, "
                   r"addr = (\d+):(\d+)", re.M)


def parse_procedures(text: str) -> List[Tuple[str, int, int]]:
    """``dump --symbols``: (name, segment, offset) of every S_GPROC32/S_LPROC32 in the module streams."""
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in _PROC.finditer(text)]


def anonymous_name(name: str, index: int) -> str:
    """The name pytriage gives a struct/union/enum: anonymous ones get their type index appended."""
    from pytriage.symbols.pdb.tpi import is_anonymous
    return "%s#0x%X" % (name, index) if is_anonymous(name) else name


def expected_fields(oracle: "LlvmTypes", definition: int) -> List[Tuple[str, int, Optional[int], Optional[int],
                                                                        Optional[tuple]]]:
    """(name, offset, bit position, bit length, type shape) of every data member, per llvm-pdbutil."""
    result = []
    for what, data in oracle.members(oracle.udt(definition)["field_list"]):
        if what == "member":
            name, ftype, offset = data
            bits = oracle.bitfield(ftype)
            if bits:
                ftype, position, length = bits
                result.append((name, offset, position, length, oracle.shape(ftype, anonymous_name)))
            else:
                result.append((name, offset, None, None, oracle.shape(ftype, anonymous_name)))
        elif what == "base":
            base_type, offset = data
            shape = oracle.shape(base_type, anonymous_name)
            result.append(("<base %s>" % shape[1], offset, None, None, shape))
        elif what == "vfptr":
            result.append(("__VFN_table", 0, None, None, oracle.shape(data[0], anonymous_name)))
    return result


def compare_all_udts(pdb, oracle: "LlvmTypes", limit: Optional[int] = None) -> int:
    """Compare every struct/class/union/enum definition llvm-pdbutil lists with ``pdb.type_layout``.

    Anonymous types are asked for as ``name#0xTI``; for names defined more than once the first definition
    is the one a name lookup returns. Returns the number of definitions compared; raises AssertionError
    with the first difference.
    """
    definitions = oracle.definitions()
    first_of_name: Dict[str, int] = {}
    for ti in definitions:
        first_of_name.setdefault(oracle.udt(ti)["name"], ti)
    compared = 0
    for ti in definitions:
        info = oracle.udt(ti)
        name = anonymous_name(info["name"], ti)
        if name == info["name"] and first_of_name[name] != ti:
            layout = pdb.type_layout_at(ti)     # a second definition of the same name: reachable by index only
        else:
            # Function-local ("scoped") types are hashed by their decorated unique name: ask by that.
            layout = pdb.type_layout(info["unique"] if info["scoped"] and info["unique"] else name)
        assert layout is not None, "type_layout(%r) is None (llvm: 0x%X)" % (name, ti)
        assert layout.name == name
        if info["kind"] == "enum":
            underlying = oracle.shape(info["underlying"], anonymous_name)
            if underlying is not None:
                assert (layout.base, layout.size) == (underlying[1], underlying[2]), name
            expected_values = [data for what, data in oracle.members(info["field_list"]) if what == "enumerate"]
            assert [n for n, _ in layout.values] == [n for n, _ in expected_values], name
            mask = (1 << (8 * layout.size)) - 1 if layout.size else -1
            assert [v & mask for _, v in layout.values] == [v & mask for _, v in expected_values], name
        else:
            assert (layout.kind, layout.size) == (info["kind"], info["size"]), name
            ours = [(f.name, f.offset, f.bit_position, f.bit_length, f.type) for f in layout.fields]
            expected = expected_fields(oracle, ti)
            assert [e[:4] for e in expected] == [o[:4] for o in ours], name
            for exp, our in zip(expected, ours):
                assert shapes_equal(exp[4], typeref_shape(our[4])), "%s.%s: %r != %r" % (
                    name, exp[0], exp[4], typeref_shape(our[4]))
        compared += 1
        if limit is not None and compared >= limit:
            break
    return compared


def parse_stream_bytes(text: str) -> bytes:
    """``bytes --stream-data=N``: the raw bytes of one stream, as LLVM's MSF reader assembles them."""
    out = bytearray()
    for m in re.finditer(r"^\s+[0-9A-F]+: ((?:[0-9A-F]{2,8} ?)+)\s+\|", text, re.M):
        out += bytes.fromhex(m.group(1).replace(" ", ""))
    return bytes(out)


def stream_number(text: str, description: str) -> int:
    """``dump --streams``: the number of the stream llvm-pdbutil describes as ``description``."""
    return int(re.search(r"Stream\s+(\d+) \(\s*\d+ bytes\): \[%s\]" % re.escape(description), text).group(1))


class StreamMap(NamedTuple):
    """Where each stream's bytes sit in a (pristine) PDB file, to patch a stream in place."""
    block_size: int
    blocks: List[Tuple[int, ...]]
    sizes: List[int]

    def file_offset(self, stream: int, offset: int) -> int:
        block, within = divmod(offset, self.block_size)
        return self.blocks[stream][block] * self.block_size + within

    def patch(self, data: bytearray, stream: int, offset: int, raw: bytes) -> None:
        for i, byte in enumerate(raw):
            data[self.file_offset(stream, offset + i)] = byte


def stream_map(path: str) -> StreamMap:
    from pytriage.symbols.pdb.msf import MsfFile
    msf = MsfFile(path)
    try:
        return StreamMap(msf.block_size, list(msf._block_lists), list(msf._sizes))
    finally:
        msf.close()
