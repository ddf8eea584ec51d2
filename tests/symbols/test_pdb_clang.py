"""The PDB reader against PDBs built here by clang-cl + lld-link from known C/C++ declarations.

Oracles: llvm-pdbutil (LLVM's own reader: every type record, public, section header and the GUID/age)
and clang's record layout of the same C source (``-fdump-record-layouts``), so every offset we read out
of the PDB is checked against the compiler that produced it. Exact values for the WDK structures are
also written out below, from the public WDK headers' documented x64 layout.
"""

import os
import struct
from dataclasses import replace

import pytest

from pytriage.errors import SymbolError
from pytriage.symbols.pdb import PdbFile, open_pdb
from pytriage.symbols.pdb import codeview as cv
from pytriage.symbols.pdb.msf import MsfFile
from pytriage.symbols.pdb.tpi import simple_type_ref
from pytriage.symbols.source import SymbolSource
from pytriage.symbols.types import EnumLayout, StructLayout
from tests.symbols import pdbtools
from tests.symbols.clang_layout import clang_record_layouts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return pdbtools.clang_fixture(tmp_path_factory, "full")


@pytest.fixture(scope="module")
def pdb_path(built):
    return built[0]


@pytest.fixture(scope="module")
def pdb(pdb_path):
    with open_pdb(pdb_path) as opened:
        yield opened


@pytest.fixture(scope="module")
def oracle(pdb_path):
    return pdbtools.LlvmTypes(pdbtools.pdbutil("dump", "--types", pdb_path))


@pytest.fixture(scope="module")
def sections(pdb_path):
    return pdbtools.parse_section_headers(pdbtools.pdbutil("dump", "--section-headers", pdb_path))[0]


def same(a, b):
    """Equal layouts apart from ``source`` (which names the file they came from)."""
    return replace(a, source="") == replace(b, source="")


def _bits(field):
    if field.bit_length is not None:
        return field.offset * 8 + field.bit_position, field.bit_length
    return field.offset * 8, 0


# -- identity and container ----------------------------------------------------------------------------------

def test_identity_matches_llvm_summary(pdb, pdb_path):
    summary = pdbtools.parse_summary(pdbtools.pdbutil("dump", "--summary", pdb_path))
    info_age, dbi_age = pdbtools.parse_yaml_ages(pdbtools.pdbutil("pdb2yaml", "--pdb-stream", "--dbi-stream",
                                                                  pdb_path))
    assert pdb.guid == summary["guid"]
    assert len(pdb.guid) == 32 and pdb.guid == pdb.guid.upper()
    assert pdb.info_age == summary["age"] == info_age == 1
    assert pdb.age == dbi_age == 1
    assert pdb.signature == summary["signature"]
    assert pdb.machine == 0x8664
    assert isinstance(pdb, SymbolSource) and pdb.kind == "pdb" and pdb.origin == pdb_path
    assert "/names" in pdb.named_streams


def test_guid_bytes_are_in_symbol_store_order(pdb_path):
    # Data1 (LE u32), Data2, Data3 (LE u16), Data4 (8 bytes as stored) -- read the raw bytes ourselves.
    msf = MsfFile(pdb_path)
    try:
        raw = msf.stream(1).read(12, 16)
    finally:
        msf.close()
    d1, d2, d3 = struct.unpack("<IHH", raw[:8])
    with open_pdb(pdb_path) as pdb:
        assert pdb.guid == "%08X%04X%04X%s" % (d1, d2, d3, raw[8:].hex().upper())


def test_sections_match_llvm(pdb, sections):
    assert [(s.name, s.virtual_address, s.virtual_size) for s in pdb.sections] == \
        [(s.name, s.virtual_address, s.virtual_size) for s in sections]
    assert pdb.sections[0].name == ".text"


# -- publics and globals -------------------------------------------------------------------------------------

def test_publics_match_llvm(pdb, pdb_path, sections):
    expected = pdbtools.parse_publics(pdbtools.pdbutil("dump", "--publics", pdb_path))
    assert len(expected) >= 10
    assert sorted((p.name, p.segment, p.offset) for p in expected) == \
        sorted((name, seg, off) for name, seg, off, _flags in pdb.publics())
    for public in expected:
        rva = sections[public.segment - 1].virtual_address + public.offset
        assert pdb.symbol_rva(public.name) == rva, public.name
        name, found = pdb.nearest_symbol(rva)
        assert found == rva
        assert name in {p.name for p in expected if sections[p.segment - 1].virtual_address + p.offset == rva}
    touch = sections[0].virtual_address + next(p.offset for p in expected if p.name == "Touch")
    assert pdb.nearest_symbol(touch + 5) == ("Touch", touch)
    assert pdb.nearest_symbol(sections[0].virtual_address - 1) is None
    assert pdb.symbol_rva("NoSuchSymbol") is None


def test_static_functions_and_globals_resolve_through_the_globals_stream(pdb, pdb_path, sections):
    procedures = pdbtools.parse_procedures(pdbtools.pdbutil("dump", "--symbols", pdb_path))
    by_name = {name: sections[seg - 1].virtual_address + off for name, seg, off in procedures}
    # `twice` and `helper` are static: no S_PUB32, only an S_LPROCREF pointing into the module stream.
    assert pdb.symbol_rva("twice") == by_name["twice"]
    assert pdb.symbol_rva("helper") == by_name["helper"]
    assert pdb.symbol_rva("ns::Derived::f") == by_name["ns::Derived::f"]
    listed = dict(pdb.symbols())
    assert listed["twice"] == by_name["twice"] and listed["Touch"] == by_name["Touch"]
    assert listed["g_shapes"] == pdb.symbol_rva("g_shapes")


# -- types: everything against llvm-pdbutil, the WDK structures against clang and by hand --------------------

def test_every_type_matches_llvm_pdbutil(pdb, oracle):
    assert pdbtools.compare_all_udts(pdb, oracle) >= 40


WDK_TYPES = ["_LIST_ENTRY", "_MDL", "_POOL_HEADER", "_NET_BUFFER", "_NET_BUFFER_LIST", "_NET_BUFFER_LIST_CONTEXT",
             "_SLIST_HEADER", "_LARGE_INTEGER", "Shapes", "Variant", "_NET_BUFFER_DATA", "_NET_BUFFER_HEADER"]


@pytest.mark.parametrize("name", WDK_TYPES)
def test_layouts_equal_clangs_record_layout(pdb, built, name):
    source = os.path.join(os.path.dirname(built[0]), "wdk.c")
    size, fields = clang_record_layouts(source)[name]
    layout = pdb.type_layout(name)
    assert layout.size == size
    assert {f.name: _bits(f) for f in layout.fields} == fields


def test_wide_struct_with_lf_index_continuation_equals_clang(pdb, built):
    size, fields = clang_record_layouts(os.path.join(os.path.dirname(built[0]), "wide.c"))["Wide"]
    layout = pdb.type_layout("Wide")
    assert len(layout.fields) == pdbtools.WIDE_MEMBERS == len(fields)
    assert layout.size == size == 8 * pdbtools.WIDE_MEMBERS
    assert {f.name: _bits(f) for f in layout.fields} == fields
    assert layout.fields[-1].name == "m4999" and layout.fields[-1].offset == 39992


def test_net_buffer_list_exact_offsets(pdb):
    nbl = pdb.type_layout("_NET_BUFFER_LIST")
    assert isinstance(nbl, StructLayout) and nbl.kind == "struct" and nbl.source == "pdb:full.pdb"
    offsets = {f.name: f.offset for f in nbl.fields}
    assert offsets == {
        "Next": 0x0, "FirstNetBuffer": 0x8, "Link": 0x0, "NetBufferListHeader": 0x0, "Context": 0x10,
        "ParentNetBufferList": 0x18, "NdisPoolHandle": 0x20, "NdisReserved": 0x30, "ProtocolReserved": 0x40,
        "MiniportReserved": 0x60, "Scratch": 0x70, "SourceHandle": 0x78, "NblFlags": 0x80, "ChildRefCount": 0x84,
        "Flags": 0x88, "Status": 0x8C, "NdisReserved2": 0x8C, "NetBufferListInfo": 0x90}
    assert nbl.size == 0x150                       # 0x90 + 23 * 8 = 0x148, rounded up to the 16-byte alignment
    info = nbl.field("NetBufferListInfo").type
    assert (info.kind, info.count, info.size, info.target.kind, info.target.target.name) == \
        ("array", 23, 184, "pointer", "void")
    nxt = nbl.field("Next").type
    assert (nxt.kind, nxt.size, nxt.target.kind, nxt.target.name, nxt.target.size) == \
        ("pointer", 8, "struct", "_NET_BUFFER_LIST", nbl.size)
    link = nbl.field("Link").type
    assert (link.kind, link.name, link.size) == ("union", "_SLIST_HEADER", 16)
    header = nbl.field("NetBufferListHeader").type
    assert (header.kind, header.name, header.size) == ("union", "_NET_BUFFER_LIST_HEADER", 16)
    # The typedef name reaches the same layout through the globals stream's S_UDT.
    assert pdb.type_layout("NET_BUFFER_LIST") == nbl
    assert pdb.type_layout("PNET_BUFFER_LIST") is None      # a pointer typedef is not a layout


def test_net_buffer_and_mdl_exact_offsets(pdb):
    nb = pdb.type_layout("_NET_BUFFER")
    assert nb.size == 0xB0
    offsets = {f.name: f.offset for f in nb.fields}
    assert {k: offsets[k] for k in ("Next", "CurrentMdl", "CurrentMdlOffset", "DataLength", "stDataLength",
                                    "MdlChain", "DataOffset", "Link", "NetBufferHeader", "ChecksumBias",
                                    "Reserved", "NdisPoolHandle", "NdisReserved", "ProtocolReserved",
                                    "MiniportReserved", "DataPhysicalAddress", "SharedMemoryInfo",
                                    "ScatterGatherList")} == {
        "Next": 0, "CurrentMdl": 8, "CurrentMdlOffset": 0x10, "DataLength": 0x18, "stDataLength": 0x18,
        "MdlChain": 0x20, "DataOffset": 0x28, "Link": 0, "NetBufferHeader": 0, "ChecksumBias": 0x30,
        "Reserved": 0x32, "NdisPoolHandle": 0x38, "NdisReserved": 0x40, "ProtocolReserved": 0x50,
        "MiniportReserved": 0x80, "DataPhysicalAddress": 0xA0, "SharedMemoryInfo": 0xA8, "ScatterGatherList": 0xA8}
    sgl = nb.field("ScatterGatherList").type
    assert (sgl.kind, sgl.target.kind, sgl.target.name, sgl.target.size) == \
        ("pointer", "struct", "_SCATTER_GATHER_LIST", 0)     # forward-declared only
    mdl = pdb.type_layout("_MDL")
    assert mdl.size == 0x30
    assert [(f.name, f.offset, f.type.describe()) for f in mdl.fields] == [
        ("Next", 0x0, "_MDL *"), ("Size", 0x8, "short"), ("MdlFlags", 0xA, "short"),
        ("AllocationProcessorNumber", 0xC, "unsigned short"), ("Reserved", 0xE, "unsigned short"),
        ("Process", 0x10, "_EPROCESS *"), ("MappedSystemVa", 0x18, "void *"), ("StartVa", 0x20, "void *"),
        ("ByteCount", 0x28, "unsigned long"), ("ByteOffset", 0x2C, "unsigned long")]
    assert mdl.field("Process").type.target.size == 0
    assert pdb.type_layout("_EPROCESS") is None
    entry = pdb.type_layout("_LIST_ENTRY")
    assert [(f.name, f.offset, f.type.describe(), f.type.size) for f in entry.fields] == \
        [("Flink", 0, "_LIST_ENTRY *", 8), ("Blink", 8, "_LIST_ENTRY *", 8)]


def test_pool_header_bitfields(pdb):
    pool = pdb.type_layout("_POOL_HEADER")
    assert pool.size == 0x10
    got = [(f.name, f.offset, f.bit_position, f.bit_length, f.type.name) for f in pool.fields]
    assert got == [
        ("PreviousSize", 0, 0, 8, "unsigned short"), ("PoolIndex", 0, 8, 8, "unsigned short"),
        ("BlockSize", 2, 0, 8, "unsigned short"), ("PoolType", 2, 8, 8, "unsigned short"),
        ("Ulong1", 0, None, None, "unsigned long"), ("PoolTag", 4, None, None, "unsigned long"),
        ("ProcessBilled", 8, None, None, ""), ("AllocatorBackTraceIndex", 8, None, None, "unsigned short"),
        ("PoolTagHash", 0xA, None, None, "unsigned short")]
    assert pool.field("PoolType").is_bitfield and not pool.field("PoolTag").is_bitfield
    slist = pdb.type_layout("_SLIST_HEADER")
    assert slist.kind == "union" and slist.size == 16
    header = pdb.type_layout(slist.field("HeaderX64").type.name)
    assert [(f.name, f.offset, f.bit_position, f.bit_length) for f in header.fields] == [
        ("Depth", 0, 0, 16), ("Sequence", 0, 16, 48), ("Reserved", 8, 0, 4), ("NextEntry", 8, 4, 60)]


def test_shapes(pdb):
    shapes = pdb.type_layout("Shapes")
    f = {field.name: field for field in shapes.fields}
    assert f["self"].type.target.name == "Shapes" and f["self"].type.target.size == shapes.size
    assert (f["cv"].type.name, f["cv"].type.modifiers) == ("int", ("const", "volatile"))
    assert (f["v"].type.name, f["v"].type.modifiers) == ("unsigned long", ("volatile",))
    cp = f["cp"].type
    assert (cp.kind, cp.modifiers, cp.target.name, cp.target.modifiers) == ("pointer", ("const",), "char", ("const",))
    a = f["a"].type
    assert (a.describe(), a.size, a.count, a.target.count, a.target.target.count) == ("char[4][3][2]", 24, 2, 3, 4)
    assert (f["colour"].type.kind, f["colour"].type.name, f["colour"].type.size) == ("enum", "Colour", 4)
    assert f["i"].offset == f["f"].offset                          # anonymous union members, flattened
    named_union = f["named_union"].type
    assert named_union.kind == "union" and named_union.name.startswith("Shapes::<unnamed-tag>#0x")
    assert [(m.name, m.offset) for m in pdb.type_layout(named_union.name).fields] == [("i2", 0), ("s2", 0)]
    point = pdb.type_layout(f["point"].type.name)
    assert point.kind == "struct" and [(m.name, m.offset) for m in point.fields] == [("x", 0), ("y", 4)]
    assert (f["wide"].bit_position, f["wide"].bit_length, f["narrow"].bit_position, f["narrow"].bit_length) == \
        (0, 40, 40, 24)
    assert f["wide"].type.name == "unsigned long long"
    assert (f["signed_bits"].type.name, f["signed_bits"].bit_length) == ("long", 3)
    assert (f["callback"].type.kind, f["callback"].type.target.kind) == ("pointer", "function")
    assert (f["opaque"].type.target.name, f["opaque"].type.target.size) == ("_EPROCESS", 0)
    assert (f["big"].type.size, f["big"].type.count) == (70000, 70000)
    assert f["after_big"].offset > 0x8000                            # offset needs an LF_ULONG numeric leaf
    assert f["unaligned_ptr"].type.describe() == "int *"       # clang does not record __unaligned in CodeView
    assert (f["real"].type.name, f["real"].type.size) == ("double", 8)
    assert (f["flag"].type.name, f["flag"].type.size) == ("bool", 1)


def test_enums(pdb):
    colour = pdb.type_layout("Colour")
    assert isinstance(colour, EnumLayout) and (colour.size, colour.base) == (4, "int")
    assert colour.values == (("Red", 1), ("Green", -2), ("Blue", 0x7FFFFFFF), ("Small", -200), ("Big", 70000),
                             ("Negative", -70000), ("Mid", 0x8000))
    assert colour.name_of(-2) == "Green"
    info = pdb.type_layout("_NDIS_NET_BUFFER_LIST_INFO")
    assert info.name_of(23) == "MaxNetBufferListInfo"
    assert ("TcpOffloadBytesTransferred", 0) in info.values and ("NblReAuthWfpFlowContext", 16) in info.values
    kind = pdb.type_layout("ns::Derived::Kind")
    assert (kind.size, kind.base, kind.values) == (1, "unsigned char", (("A", 0), ("B", 200)))


def test_cpp_classes(pdb):
    derived = pdb.type_layout("ns::Derived")
    assert derived.kind == "struct" and derived.size == 24
    assert [(f.name, f.offset) for f in derived.fields] == [
        ("<base ns::Base>", 0), ("d", 16), ("kind", 20), ("inner", 22)]
    base = pdb.type_layout("ns::Base")
    assert [(f.name, f.offset, f.type.kind) for f in base.fields] == [("__VFN_table", 0, "pointer"), ("b", 8, "base")]
    assert "counter" not in [f.name for f in base.fields]                 # static member: no offset
    box = pdb.type_layout("ns::Box<ns::Derived>")
    assert [(f.name, f.offset, f.type.name, f.type.size) for f in box.fields] == [
        ("value", 0, "ns::Derived", 24), ("next", 24, "", 8)]
    assert box.field("next").type.target.name == "ns::Box<ns::Derived>"
    priv = pdb.type_layout("ns::Priv")
    assert priv.kind == "class" and [f.name for f in priv.fields] == ["hidden", "shown"]
    assert pdb.type_layout(".?AVPriv@ns@@") == priv                     # by decorated unique name


def test_unknown_and_suffixed_names(pdb):
    assert pdb.type_layout("NoSuchType") is None
    assert pdb.type_layout("Shapes::<unnamed-tag>#0x1") is None
    assert pdb.type_layout("Shapes#0x9999999") is None
    shapes = pdb.type_layout("Shapes")
    suffixed = shapes.field("point").type.name
    assert pdb.type_layout(suffixed.replace("<unnamed-tag>", "<other>")) is None


def test_one_lookup_decodes_few_records(pdb_path):
    """LAZY: answering one layout must not decode the type stream (it holds thousands of records)."""
    with open_pdb(pdb_path) as fresh:
        decoded = []
        fresh.type_layout("_LIST_ENTRY")          # opens the TPI stream
        table = fresh._type_table()
        original = table.record

        def counting(ti):
            decoded.append(ti)
            return original(ti)
        table.record = counting
        table._records.clear()
        layout = fresh.type_layout("_MDL")
        assert layout.size == 0x30
        assert len(set(decoded)) < 20 < table.count, sorted(set(decoded))


def test_lookups_without_the_tpi_hash_stream_give_the_same_answers(pdb, pdb_path, tmp_path, oracle):
    """Fallback: no hash stream (index 0xFFFF) -> one header scan; same layouts for every type."""
    broken = str(tmp_path / "nohash.pdb")
    with open(pdb_path, "rb") as fh:
        data = bytearray(fh.read())
    msf = MsfFile(pdb_path)
    try:
        tpi_at = msf._block_lists[2][0] * msf.block_size
    finally:
        msf.close()
    struct.pack_into("<H", data, tpi_at + 20, 0xFFFF)            # TpiStreamHeader.HashStreamIndex
    with open(broken, "wb") as fh:
        fh.write(data)
    with open_pdb(broken) as nohash:
        assert pdbtools.compare_all_udts(nohash, oracle) >= 40
        assert same(nohash.type_layout("_NET_BUFFER_LIST"), pdb.type_layout("_NET_BUFFER_LIST"))
        assert nohash.type_layout("Nope") is None


def test_lookups_with_wrong_hash_values_fall_back(pdb, pdb_path, tmp_path):
    """A hash stream whose values are not the name hash (a different producer, corruption) is detected by
    the spot check and not trusted: lookups still find every type."""
    with open(pdb_path, "rb") as fh:
        data = bytearray(fh.read())
    msf = MsfFile(pdb_path)
    try:
        tpi = msf.stream(2)
        header = struct.unpack("<IIIIIHHIIiIiIiI", tpi.read(0, 56))
        hash_stream = msf.stream(header[5])
        hv_off, hv_len = header[9], header[10]
        blocks = msf._block_lists[header[5]]
        block_size = msf.block_size
    finally:
        msf.close()
    for pos in range(hv_off, hv_off + hv_len, 4):                 # every stored hash value += 1
        block, within = divmod(pos, block_size)
        at = blocks[block] * block_size + within
        value = struct.unpack_from("<I", data, at)[0]
        struct.pack_into("<I", data, at, (value + 1) % header[8])
    assert hash_stream.size >= hv_off + hv_len
    broken = str(tmp_path / "badhash.pdb")
    with open(broken, "wb") as fh:
        fh.write(data)
    with open_pdb(broken) as badhash:
        for name in ("_NET_BUFFER_LIST", "Shapes", "Colour", "ns::Derived", "Wide"):
            assert same(badhash.type_layout(name), pdb.type_layout(name)), name
        assert badhash._type_table()._hash_trusted is False


def test_closed_file_raises_symbol_error(pdb_path):
    opened = PdbFile(pdb_path)
    opened.close()
    with pytest.raises(SymbolError, match="closed"):
        opened.type_layout("_MDL")
    with pytest.raises(SymbolError, match="closed"):
        opened.nearest_symbol(0x1000)


# -- CodeView primitives -------------------------------------------------------------------------------------

@pytest.mark.parametrize("index, described, size", [
    (0x0022, "unsigned long", 4), (0x0074, "int", 4), (0x0071, "wchar_t", 2), (0x0023, "unsigned long long", 8),
    (0x0008, "HRESULT", 4), (0x0070, "char", 1), (0x0010, "signed char", 1), (0x0075, "unsigned int", 4),
    (0x0013, "long long", 8), (0x0041, "double", 8), (0x0030, "bool", 1), (0x0003, "void", 0),
    (0x0603, "void *", 8), (0x0620, "unsigned char *", 8), (0x0403, "void *", 4), (0x0670, "char *", 8),
    (0x0103, "std::nullptr_t", 8),
])
def test_simple_type_indexes(index, described, size):
    ref = simple_type_ref(index)
    assert (ref.describe(), ref.size) == (described, size)
    if index >= 0x100 and index != 0x0103:
        assert ref.kind == "pointer" and ref.target.kind == "base"


@pytest.mark.parametrize("raw, value", [
    (b"\x34\x12", 0x1234), (b"\x00\x80\xfe", -2), (b"\x01\x80\x38\xff", -200), (b"\x02\x80\x00\x80", 0x8000),
    (b"\x03\x80\x90\xee\xfe\xff", -70000), (b"\x04\x80\xfe\xff\xff\xff", 0xFFFFFFFE),
    (b"\x09\x80" + struct.pack("<q", -(1 << 40)), -(1 << 40)),
    (b"\x0a\x80" + struct.pack("<Q", 1 << 63), 1 << 63),
])
def test_numeric_leaves(raw, value):
    assert cv.numeric(raw + b"tail", 0) == (value, len(raw))


def test_numeric_leaf_errors():
    with pytest.raises(cv.CvDecodeError, match="truncated"):
        cv.numeric(b"\x04\x80\x01", 0)
    with pytest.raises(cv.CvDecodeError, match="unknown numeric leaf"):
        cv.numeric(b"\x7f\x80\x00\x00", 0)
    assert cv.numeric(b"\x05\x80\x00\x00\x80\x3f", 0) == (0, 6)        # LF_REAL32 is stepped over
    assert cv.cstring(b"abc", 0) == ("abc", 4)                           # no NUL: the record end bounds it
    assert cv.cstring(b"ab\0cd", 0) == ("ab", 3)


def test_hash_string_v1():
    # Every name lookup in the tests above goes through this hash; these pin the arithmetic itself.
    assert cv.hash_string_v1(b"") == 0x20202020 ^ (0x20202020 >> 11) ^ ((0x20202020 ^ (0x20202020 >> 11)) >> 16)
    assert cv.hash_string_v1(b"_MDL") == cv.hash_string_v1(b"_mdl")         # case-folded
    assert cv.hash_string_v1(b"abcde") != cv.hash_string_v1(b"abcdf")


def test_unaligned_modifier(tmp_path_factory, tmp_path):
    """clang does not emit __unaligned; set the flag on the small PDB's const volatile modifier instead."""
    path = pdbtools.clang_fixture(tmp_path_factory, "small")[0]
    mapping = pdbtools.stream_map(path)
    with open_pdb(path) as pdb:
        table = pdb._type_table()
        modifier = next(ti for ti in range(table.begin, table.end) if table.record(ti)[0] == cv.LF_MODIFIER)
        at = table._header_size + table._offset(modifier) + 4 + 4
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    mapping.patch(data, 2, at, struct.pack("<H", 7))
    patched = str(tmp_path / "unaligned.pdb")
    with open(patched, "wb") as fh:
        fh.write(data)
    with open_pdb(patched) as pdb:
        cv_field = pdb.type_layout("_ITEM").field("cv")
        assert (cv_field.type.name, cv_field.type.modifiers) == ("short", ("const", "volatile", "unaligned"))
