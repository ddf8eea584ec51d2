"""The PDB reader on a real MSVC-built PDB: debugpy's ``inject_dll_amd64.pdb`` (C++ with the STL, 5.5 MB,
16k type records, 2k publics), fetched from PyPI into the test cache on first use.

Everything is compared with llvm-pdbutil: identity, every public (name and segment:offset), and every
struct/class/union/enum definition field by field (offsets, bitfields, member type shapes).
"""

import pytest

from pytriage.symbols.pdb import open_pdb
from tests.symbols import pdbtools


@pytest.fixture(scope="module")
def pdb_path():
    return pdbtools.debugpy_pdb()


@pytest.fixture(scope="module")
def pdb(pdb_path):
    with open_pdb(pdb_path) as opened:
        yield opened


@pytest.fixture(scope="module")
def sections(pdb_path):
    return pdbtools.parse_section_headers(pdbtools.pdbutil("dump", "--section-headers", pdb_path))[0]


def test_identity(pdb, pdb_path):
    summary = pdbtools.parse_summary(pdbtools.pdbutil("dump", "--summary", pdb_path))
    assert pdb.guid == summary["guid"] == "E10EECB29BA34A0BB7A7D42BAAC8E9A4"
    assert pdb.info_age == summary["age"] == 1
    assert pdb.age == 1
    assert pdb.signature == summary["signature"]
    assert pdb.machine == 0x8664


def test_sections(pdb, sections):
    assert [(s.name, s.virtual_address, s.virtual_size) for s in pdb.sections] == \
        [(s.name, s.virtual_address, s.virtual_size) for s in sections]


def test_every_public_matches_llvm(pdb, pdb_path, sections):
    expected = pdbtools.parse_publics(pdbtools.pdbutil("dump", "--publics", pdb_path))
    assert len(expected) == 2167
    ours = pdb.publics()
    assert sorted((p.name, p.segment, p.offset) for p in expected) == sorted((n, s, o) for n, s, o, _ in ours)
    # Segment len(sections) + 1 is the linker's "absolute" segment (__guard_flags and friends are
    # constants, not addresses): no RVA.
    absolute = [p for p in expected if p.segment == len(sections) + 1]
    assert {p.name for p in absolute} >= {"__guard_flags", "__guard_fids_count"}
    for public in absolute:
        assert pdb.symbol_rva(public.name) is None
    expected = [p for p in expected if p.segment <= len(sections)]
    at = {}
    for public in expected:
        at.setdefault(sections[public.segment - 1].virtual_address + public.offset, set()).add(public.name)
    for public in expected:
        found = pdb.symbol_rva(public.name)             # through the publics hash table
        assert found is not None and public.name in at[found], public.name
    for rva, names in at.items():
        name, found = pdb.nearest_symbol(rva)
        assert found == rva and name in names
        if rva + 1 not in at:
            assert pdb.nearest_symbol(rva + 1) == (name, rva)


def test_every_type_definition_matches_llvm(pdb, pdb_path):
    oracle = pdbtools.LlvmTypes(pdbtools.pdbutil("dump", "--types", pdb_path))
    assert pdbtools.compare_all_udts(pdb, oracle) == len(oracle.definitions()) == 1349


def test_cpp_layouts(pdb):
    string = pdb.type_layout("std::basic_string<char,std::char_traits<char>,std::allocator<char> >")
    assert string.kind == "class" and string.size == 32
    assert [(f.name, f.offset) for f in string.fields] == [("_Mypair", 0)]
    streambuf = pdb.type_layout("std::basic_streambuf<char,std::char_traits<char> >")
    assert streambuf.fields[0].name == "__VFN_table" and streambuf.fields[0].offset == 0
    bidi = pdb.type_layout("std::bidirectional_iterator_tag")
    assert [(f.name, f.offset, f.type.name) for f in bidi.fields] == \
        [("<base std::forward_iterator_tag>", 0, "std::forward_iterator_tag")]
    zone = pdb.type_layout("tagURLZONE")
    assert zone.name_of(-1) == "URLZONE_INVALID" and zone.base == "int"


def test_one_lookup_decodes_a_handful_of_records(pdb_path):
    """Lazy: one struct out of 16k records is found through the TPI hash, decoding only its bucket."""
    with open_pdb(pdb_path) as fresh:
        table = fresh._type_table()
        decoded = set()
        original = table.record

        def counting(ti):
            decoded.add(ti)
            return original(ti)
        table.record = counting
        assert table.count > 15000
        layout = fresh.type_layout("std::basic_string<char,std::char_traits<char>,std::allocator<char> >")
        assert layout.size == 32
        assert len(decoded) < 60, len(decoded)
        assert table._hash_trusted is True and table._all_offsets is None     # the fast path, no full scan
