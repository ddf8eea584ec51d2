"""The PDB reader on the real Microsoft PDBs of the corpus (``../shared/corpus/symstore``).

amdppm.pdb (Windows 10 19041, stripped public PDB with types) is the driver the corpus triage dump
crashed in: its publics must name the six amdppm stack frames exactly as rizin did from the same PDB
(reference/triage_x64.facts.json), its section headers must equal the real amdppm.sys image's, and its
types must equal the kernel's own (volatility3 ISF of ntkrnlmp 19041.804) wherever both define a type.
user32.pdb (Windows 7) is a BBT-optimised image's PDB: publics carry pre-optimisation addresses that
only the OMAP table turns into real RVAs.
"""

import json
import os
import struct

import pefile
import pytest

from pytriage.symbols.isf import load_isf
from pytriage.symbols.pdb import open_pdb
from tests.conftest import CORPUS
from tests.symbols import pdbtools

SYMSTORE = os.path.join(CORPUS, "symstore")
AMDPPM_PDB = os.path.join(SYMSTORE, "amdppm.pdb", "1C19FDDB27BB3399D9B45973EFEAFCF31", "amdppm.pdb")
AMDPPM_SYS = os.path.join(SYMSTORE, "amdppm.sys", "c9c030003b000", "amdppm.sys")
USER32_PDB = os.path.join(SYMSTORE, "user32.pdb", "15F778B3671D4EFDBDCDE79905308B792", "user32.pdb")
KERNEL_ISF = os.path.join(CORPUS, "symbols", "ntkrnlmp.pdb-5278AFF86C341677D7D7835C85B7B844-1.json.xz")
FACTS = os.path.join(CORPUS, "reference", "triage_x64.facts.json")
# The WDK declares these kernel structures only in part (its _KPRCB/_KPCR stop early), so a driver's PDB
# differs from the kernel's for them.
WDK_PARTIAL = {"_KPRCB", "_KPCR", "_DRIVER_EXTENSION"}


@pytest.fixture(scope="module")
def amdppm():
    with open_pdb(AMDPPM_PDB) as opened:
        yield opened


@pytest.fixture(scope="module")
def amdppm_sections():
    return pdbtools.parse_section_headers(pdbtools.pdbutil("dump", "--section-headers", AMDPPM_PDB))[0]


@pytest.fixture(scope="module")
def amdppm_publics():
    return pdbtools.parse_publics(pdbtools.pdbutil("dump", "--publics", AMDPPM_PDB))


def test_amdppm_identity(amdppm):
    summary = pdbtools.parse_summary(pdbtools.pdbutil("dump", "--summary", AMDPPM_PDB))
    info_age, dbi_age = pdbtools.parse_yaml_ages(pdbtools.pdbutil("pdb2yaml", "--pdb-stream", "--dbi-stream",
                                                                  AMDPPM_PDB))
    assert amdppm.guid == summary["guid"] == "1C19FDDB27BB3399D9B45973EFEAFCF3"
    # The store key (and the image's RSDS record) says age 1: that is the DBI age. pdbcopy raised the
    # info stream's age to 3 when it stripped the private symbols.
    assert amdppm.age == dbi_age == 1
    assert amdppm.info_age == summary["age"] == info_age == 3
    assert os.path.basename(os.path.dirname(AMDPPM_PDB)) == "%s%X" % (amdppm.guid, amdppm.age)
    facts = json.load(open(FACTS, encoding="utf-8"))["amdppm_codeview"]
    assert (amdppm.guid, amdppm.age) == (facts["guid"], facts["age"])


def test_amdppm_sections_equal_the_image(amdppm, amdppm_sections):
    image = pefile.PE(AMDPPM_SYS, fast_load=True)
    try:
        real = [(s.Name.rstrip(b"\0").decode(), s.VirtualAddress, s.Misc_VirtualSize, s.Characteristics)
                for s in image.sections]
    finally:
        image.close()
    ours = [(s.name, s.virtual_address, s.virtual_size, s.characteristics) for s in amdppm.sections]
    assert ours == real
    assert [(s.name, s.virtual_address, s.virtual_size) for s in amdppm_sections] == [r[:3] for r in real]


def test_amdppm_publics_match_llvm(amdppm, amdppm_publics, amdppm_sections):
    assert len(amdppm_publics) == 959
    assert sorted((p.name, p.segment, p.offset) for p in amdppm_publics) == \
        sorted((n, s, o) for n, s, o, _ in amdppm.publics())
    for public in amdppm_publics:
        if public.segment == len(amdppm_sections) + 1:         # absolute symbols (__guard_flags): no RVA
            assert amdppm.symbol_rva(public.name) is None
            continue
        rva = amdppm_sections[public.segment - 1].virtual_address + public.offset
        assert amdppm.symbol_rva(public.name) == rva, public.name


def test_amdppm_write_io_mem_raw_ex_plus_0x70(amdppm, amdppm_publics, amdppm_sections):
    public = next(p for p in amdppm_publics if p.name == "WriteIoMemRawEx")
    rva = amdppm_sections[public.segment - 1].virtual_address + public.offset
    assert rva == 0x32DC
    assert amdppm.nearest_symbol(rva + 0x70) == ("WriteIoMemRawEx", rva)
    assert amdppm.nearest_symbol(rva) == ("WriteIoMemRawEx", rva)


def test_amdppm_frames_named_as_rizin_named_them(amdppm):
    """rizin symbolised the six amdppm frames of the corpus dump from this PDB (decimal offsets)."""
    frames = [f for f in json.load(open(FACTS, encoding="utf-8"))["stack"]["frames"]
              if f.get("module") == "amdppm.sys"]
    assert len(frames) == 6
    for frame in frames:
        name, offset = frame["rizin_symbol"].split("pdb.amdppm.")[1].rsplit("+", 1)
        rva = int(frame["module_offset"], 16)
        found = amdppm.nearest_symbol(rva)
        assert found is not None and (found[0], rva - found[1]) == (name, int(offset)), frame


def test_amdppm_every_type_matches_llvm(amdppm):
    oracle = pdbtools.LlvmTypes(pdbtools.pdbutil("dump", "--types", AMDPPM_PDB))
    assert pdbtools.compare_all_udts(amdppm, oracle) == len(oracle.definitions()) == 688


def test_amdppm_types_equal_the_kernels(amdppm):
    """Independent oracle: Microsoft's ntkrnlmp 19041 PDB (as volatility3's ISF) for every shared type."""
    isf = load_isf(KERNEL_ISF)
    shared = sorted(set(amdppm.type_names()) & set(isf.type_names()))
    assert len(shared) == 337
    for name in shared:
        ours, kernel = amdppm.type_layout(name), isf.type_layout(name)
        if name in WDK_PARTIAL:
            assert ours.size < kernel.size
            continue
        if hasattr(kernel, "fields"):
            assert ours.size == kernel.size, name
            key = lambda f: (f.offset, f.bit_position or 0, f.name)   # noqa: E731 - ISF sorts fields by offset
            assert [(f.name, f.offset, f.bit_position, f.bit_length) for f in sorted(ours.fields, key=key)] == \
                [(f.name, f.offset, f.bit_position, f.bit_length) for f in sorted(kernel.fields, key=key)], name
        else:
            assert sorted(ours.values) == sorted(kernel.values), name
    mdl = amdppm.type_layout("_MDL")
    assert mdl.size == 0x30 and mdl.offset_of("ByteOffset") == 0x2C
    irp = amdppm.type_layout("_IRP")
    assert irp.size == 0xD0
    assert amdppm._type_table()._hash_trusted is True            # Microsoft's TPI hash is the one we compute


def test_user32_omap():
    streams = pdbtools.pdbutil("dump", "--streams", USER32_PDB)
    omap_bytes = pdbtools.parse_stream_bytes(pdbtools.pdbutil(
        "bytes", "--stream-data=%d" % pdbtools.stream_number(streams, "Omap From Source Data"), USER32_PDB))
    pairs = list(struct.iter_unpack("<II", omap_bytes))
    assert len(pairs) == 368952 // 8
    final, original = pdbtools.parse_section_headers(pdbtools.pdbutil("dump", "--section-headers", USER32_PDB))
    assert len(final) == len(original) == 6 and final != original
    publics = pdbtools.parse_publics(pdbtools.pdbutil("dump", "--publics", USER32_PDB))
    assert len(publics) == 4142

    def mapped(segment, offset):        # the documented OMAP rule, computed from llvm-pdbutil's bytes
        source = original[segment - 1].virtual_address + offset
        below = [p for p in pairs if p[0] <= source]
        if not below or below[-1][1] == 0:
            return None
        return below[-1][1] + source - below[-1][0]

    with open_pdb(USER32_PDB) as user32:
        assert (user32.guid, user32.age, user32.info_age) == ("15F778B3671D4EFDBDCDE79905308B79", 2, 3)
        assert [(s.name, s.virtual_address, s.virtual_size) for s in user32.sections] == \
            [(s.name, s.virtual_address, s.virtual_size) for s in final]
        assert sorted((p.name, p.segment, p.offset) for p in publics) == \
            sorted((n, s, o) for n, s, o, _ in user32.publics())
        checked = 0
        for public in publics[::40]:
            expected = mapped(public.segment, public.offset)
            assert user32.rva_of(public.segment, public.offset) == expected, public
            if expected is not None:
                assert user32.symbol_rva(public.name) == expected
                name, rva = user32.nearest_symbol(expected)
                assert rva == expected
                checked += 1
        assert checked > 90
        text = final[0]
        functions = [p for p in publics if p.flags == "function"]
        for public in functions:
            rva = user32.symbol_rva(public.name)
            assert rva is None or text.virtual_address <= rva < text.virtual_address + text.virtual_size
