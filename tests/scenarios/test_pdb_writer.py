"""PDBs from pytriage.scenarios.pdb_writer, read back by LLVM's llvm-pdbutil (the independent oracle).

Every PDB of the built-in scenario must parse in ``llvm-pdbutil dump`` and ``pdb2yaml``, carry exactly the
GUID and age of its image's CodeView record (read with pefile from the image file in the symbol store),
every public the builder placed at the right section:offset, and the ISF table's types with the same
sizes, member offsets and member types; forward references must resolve through the TPI hash stream.
A handmade table covers what the scenario kernel does not use (bitfields, unions, enums, arrays, function
pointers, a field list long enough to need LF_INDEX). Finally, the hash functions and hash tables are
compared byte for byte with what lld-link writes for a small C file (clang-cl + lld-link).
"""

import json
import os
import shutil
import struct
import subprocess

import pefile
import pytest

from pytriage.dump import open_dump
from pytriage.errors import SpecError
from pytriage.scenarios import builtin_path, pdb_writer
from pytriage.scenarios.builder import build_scenario
from pytriage.scenarios.spec import parse_spec
from tests.scenarios import pdbutil

MODULES = ["ntoskrnl.exe", "hal.dll", "ndis.sys", "NETIO.SYS", "tcpip.sys", "contosolwf.sys"]


def _store_files(built, bm):
    image = bm.image
    pdb = os.path.join(built.symstore_path, image.pdb_name, image.pdb_store_key, image.pdb_name)
    exe = os.path.join(built.symstore_path, bm.spec.name, image.symbol_store_key, bm.spec.name)
    return pdb, exe


def _rsds(image_path):
    pe = pefile.PE(image_path, fast_load=True)
    pe.parse_data_directories([pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_DEBUG"]])
    (entry,) = [d.entry for d in pe.DIRECTORY_ENTRY_DEBUG if d.struct.Type == 2]
    guid = "{%08X-%04X-%04X-%02X%02X-%s}" % (entry.Signature_Data1, entry.Signature_Data2, entry.Signature_Data3,
                                             entry.Signature_Data4, entry.Signature_Data5,
                                             entry.Signature_Data6.hex().upper())
    return guid, entry.Age, entry.PdbFileName.rstrip(b"\0").decode(), pe


def _isf_table(built, bm):
    image = bm.image
    path = os.path.join(built.symbols_path, "windows", image.pdb_name, "%s-%d.json" % (image.pdb_guid, image.pdb_age))
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def pdbutil_available():
    if pdbutil.PDBUTIL is None:
        pytest.fail("llvm-pdbutil is missing (Debian package llvm); it is the oracle for the PDB writer")


@pytest.mark.parametrize("module", MODULES)
def test_scenario_pdb_reads_back_in_llvm_pdbutil(pdbutil_available, basic_bitmap, module):
    built = basic_bitmap
    (bm,) = [m for m in built.modules if m.spec.name == module]
    pdb_path, image_path = _store_files(built, bm)
    guid, age, pdb_name, pe = _rsds(image_path)
    assert pdb_name == bm.image.pdb_name == os.path.basename(pdb_path)

    dump = pdbutil.dump(pdb_path)
    assert dump.summary["GUID"] == guid
    assert dump.summary["Age"] == str(age) == str(bm.spec.pdb_age)
    assert dump.summary["Block Size"] == "4096"
    assert [dump.summary[k] for k in ("Has Types", "Has Globals", "Has Publics", "Has Debug Info")] == ["true"] * 4

    # The section-header stream is the image's section table.
    assert [(s.name, s.virtual_size, s.virtual_address, s.size_of_raw_data, s.pointer_to_raw_data,
             s.characteristics) for s in dump.sections] == \
        [(s.Name.rstrip(b"\0").decode(), s.Misc_VirtualSize, s.VirtualAddress, s.SizeOfRawData, s.PointerToRawData,
          s.Characteristics) for s in pe.sections]

    # Every public at section:offset == the builder's RVA, functions flagged as such, nothing else.
    functions = {f.name for f in bm.spec.functions}
    got = {p.name: (pdbutil.section_rva(dump.sections, p.segment, p.offset), p.function) for p in dump.publics}
    assert got == {name: (rva, name in functions) for name, rva in bm.symbols.items()}

    # The ISF table's types (the kernel's), member by member.
    isf = _isf_table(built, bm)
    assert pdbutil.check_isf_types(dump.types, isf) == (8 if module == "ntoskrnl.exe" else 0)
    assert "PdbStream:" in pdbutil.run("pdb2yaml", "-all", pdb_path)


def test_symbol_store_holds_the_images_the_dump_maps(basic_full):
    built = basic_full
    files = set()
    for root, _dirs, names in os.walk(built.symstore_path):
        files.update(os.path.relpath(os.path.join(root, n), built.symstore_path) for n in names)
    expected = set()
    with open_dump(built.dump_path) as dump:
        for bm in built.modules:
            pdb_path, image_path = _store_files(built, bm)
            expected.update(os.path.relpath(p, built.symstore_path) for p in (pdb_path, image_path))
            with open(image_path, "rb") as fh:
                data = fh.read()
            assert data == bm.image.data
            # The dump maps the same image; only writable sections changed since (the kernel's .data holds
            # the list heads, KDBG ... the builder filled in), as in a real machine's memory.
            memory = dump.read_virtual(bm.spec.base, bm.spec.size)
            assert memory[:0x1000] == data[:0x1000]
            for section in bm.image.sections:
                start, end = section.rva, section.rva + section.virtual_size
                if not section.characteristics & 0x80000000:        # IMAGE_SCN_MEM_WRITE
                    assert memory[start:end] == data[start:end], (bm.spec.name, section.name)
            assert os.path.basename(os.path.dirname(image_path)) == "%08X%x" % (bm.spec.timestamp, bm.spec.size)
            assert os.path.basename(os.path.dirname(pdb_path)) == "%s%x" % (bm.spec.pdb_guid, bm.spec.pdb_age)
    assert files == expected
    assert "ntkrnlmp.pdb/5278AFF86C341677D7D7835C85B7B8441/ntkrnlmp.pdb" in files
    assert "ntoskrnl.exe/0D8333E6100000/ntoskrnl.exe" in files


def test_pdbs_are_reproducible(tmp_path, basic_bitmap):
    again = build_scenario(basic_bitmap.spec, str(tmp_path), "bitmap")
    for first, second in zip(basic_bitmap.modules, again.modules):
        with open(_store_files(basic_bitmap, first)[0], "rb") as a, open(_store_files(again, second)[0], "rb") as b:
            assert a.read() == b.read()


# --- a handmade table: every record kind the writer knows -------------------------------------------

def _section(name, va, vsize, characteristics):
    return struct.pack("<8sIIIIIIHHI", name, vsize, va, (vsize + 0xFFF) & ~0xFFF, va, 0, 0, 0, 0, characteristics)


SECTIONS = _section(b".text", 0x1000, 0x1000, 0x60000020) + _section(b".rdata", 0x2000, 0x800, 0x40000040) \
    + _section(b".data", 0x3000, 0x1800, 0xC0000040)
U32 = {"kind": "base", "name": "unsigned long"}
HANDMADE = {
    "base_types": {"unsigned long": {"kind": "int", "size": 4, "signed": False, "endian": "little"},
                   "my_s16": {"kind": "int", "size": 2, "signed": True, "endian": "little"}},
    "user_types": {
        "_NODE": {"kind": "struct", "size": 0x50, "fields": {
            "Next": {"offset": 0, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "_NODE"}}},
            "Kind": {"offset": 8, "type": {"kind": "bitfield", "bit_position": 0, "bit_length": 3, "type": U32}},
            "Busy": {"offset": 8, "type": {"kind": "bitfield", "bit_position": 3, "bit_length": 1, "type": U32}},
            "Spare": {"offset": 8, "type": {"kind": "bitfield", "bit_position": 4, "bit_length": 28, "type": U32}},
            "Tag": {"offset": 0xC, "type": {"kind": "array", "count": 4,
                                            "subtype": {"kind": "base", "name": "unsigned char"}}},
            "Value": {"offset": 0x10, "type": {"kind": "union", "name": "_VALUE"}},
            "State": {"offset": 0x18, "type": {"kind": "enum", "name": "_STATE"}},
            "Callback": {"offset": 0x20, "type": {"kind": "pointer", "subtype": {"kind": "function"}}},
            "Table": {"offset": 0x28, "type": {"kind": "pointer", "subtype": {
                "kind": "pointer", "subtype": {"kind": "base", "name": "void"}}}},
            "Opaque": {"offset": 0x30, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "_OPAQUE"}}},
            "Small": {"offset": 0x38, "type": {"kind": "base", "name": "short"}},
            "Grid": {"offset": 0x3A, "type": {"kind": "array", "count": 3, "subtype": {
                "kind": "array", "count": 2, "subtype": {"kind": "base", "name": "wchar"}}}},
            "Signed": {"offset": 0x46, "type": {"kind": "base", "name": "short"}},
            "Last": {"offset": 0x48, "type": {"kind": "base", "name": "long long"}}}},
        "_VALUE": {"kind": "union", "size": 8, "fields": {
            "AsQuad": {"offset": 0, "type": {"kind": "base", "name": "unsigned long long"}},
            "AsBytes": {"offset": 0, "type": {"kind": "array", "count": 8,
                                              "subtype": {"kind": "base", "name": "unsigned char"}}},
            "AsLong": {"offset": 0, "type": {"kind": "base", "name": "long"}}}},
        "CLASSY": {"kind": "class", "size": 0x8000 + 8, "fields": {
            "Head": {"offset": 0, "type": {"kind": "struct", "name": "_NODE"}},
            "Far": {"offset": 0x8000, "type": {"kind": "base", "name": "int"}}}},
        "_BIG": {"kind": "struct", "size": 4 * 3000, "fields": {
            "Member%04dWithAFairlyLongName" % i: {"offset": 4 * i, "type": U32} for i in range(3000)}},
    },
    "enums": {"_STATE": {"size": 4, "base": "long", "constants": {
        "Idle": 0, "Running": 1, "Dead": -1, "Huge": 0x12345, "VeryNegative": -70000}}},
}
PUBLICS = [pdb_writer.PdbPublic("Start", 0x1000), pdb_writer.PdbPublic("Helper", 0x1800, True),
           pdb_writer.PdbPublic("DataInText", 0x1F00, False), pdb_writer.PdbPublic("gConst", 0x2010),
           pdb_writer.PdbPublic("gTable", 0x3008), pdb_writer.PdbPublic("gTail", 0x47FF),
           pdb_writer.PdbPublic("?Decorated@@YAXXZ", 0x1010)]
GUID = bytes(range(16))


def test_handmade_table_reads_back_in_llvm_pdbutil(pdbutil_available, tmp_path):
    path = str(tmp_path / "handmade.pdb")
    pdb_writer.write_pdb(path, pdb_writer.build_pdb(GUID, 7, SECTIONS, PUBLICS, HANDMADE, signature=0x12345678,
                                                    pdb_name="handmade.pdb"))
    dump = pdbutil.dump(path)
    assert dump.summary["GUID"] == "{03020100-0504-0706-0809-0A0B0C0D0E0F}"
    assert dump.summary["Age"] == "7" and dump.summary["Signature"] == str(0x12345678)
    assert [(s.name, s.virtual_address, s.virtual_size) for s in dump.sections] == \
        [(".text", 0x1000, 0x1000), (".rdata", 0x2000, 0x800), (".data", 0x3000, 0x1800)]
    got = {p.name: (pdbutil.section_rva(dump.sections, p.segment, p.offset), p.function) for p in dump.publics}
    assert got == {"Start": (0x1000, True), "Helper": (0x1800, True), "DataInText": (0x1F00, False),
                   "gConst": (0x2010, False), "gTable": (0x3008, False), "gTail": (0x47FF, False),
                   "?Decorated@@YAXXZ": (0x1010, True)}
    assert pdbutil.check_isf_types(dump.types, HANDMADE) == 5
    kinds = {r.kind for r in dump.types.records.values()}
    assert kinds == {"LF_STRUCTURE", "LF_CLASS", "LF_UNION", "LF_ENUM", "LF_FIELDLIST", "LF_POINTER", "LF_ARRAY",
                     "LF_BITFIELD", "LF_PROCEDURE", "LF_ARGLIST"}
    (big,) = [r for r in dump.types.records.values() if r.kind == "LF_FIELDLIST"
              and any(line.startswith("- LF_INDEX") for line in r.lines)]
    assert big.lines[-1].startswith("- LF_INDEX continuation = ")
    opaque = [dump.types.tag(r) for r in dump.types.records.values() if r.name == "_OPAQUE"]
    assert opaque == [{"name": "_OPAQUE", "unique": ".?AU_OPAQUE@@", "fieldlist": None, "forward": True,
                       "definition": None, "size": 0}]
    yaml = pdbutil.run("pdb2yaml", "-all", path)
    assert "Age:             7" in yaml and "Signature:       305419896" in yaml
    pdbutil.run("dump", "--all", path)


@pytest.mark.parametrize("publics, types, message", [
    ([pdb_writer.PdbPublic("Nowhere", 0x9000)], None, "RVA 0x9000 lies in no section"),
    ([pdb_writer.PdbPublic("Twice", 0x1000), pdb_writer.PdbPublic("Twice", 0x1004)], None, "given twice"),
    ([], {"user_types": {"_X": {"kind": "struct", "size": 4, "fields": {
        "F": {"offset": 0, "type": {"kind": "base", "name": "float128"}}}}}}, "base type 'float128'"),
    ([], {"user_types": {"_X": {"kind": "struct", "size": 4, "fields": {
        "F": {"offset": 0, "type": {"kind": "enum", "name": "_NOPE"}}}}}}, "enum _NOPE is not defined"),
    ([], {"user_types": {"_X": {"kind": "bitmap", "size": 4, "fields": {}}}}, "kind 'bitmap'"),
])
def test_what_cannot_be_written_faithfully_is_refused(publics, types, message):
    with pytest.raises(ValueError, match=message):
        pdb_writer.build_pdb(GUID, 1, SECTIONS, publics, types)


def test_spec_data_symbols_become_data_publics(pdbutil_available, tmp_path):
    with open(builtin_path("basic"), encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["modules"][4]["data_symbols"] = {"gInHeaders": "0x10"}
    with pytest.raises(SpecError, match=r"modules\[4\]\.data_symbols\.gInHeaders: rva 0x10 is outside"):
        parse_spec(doc)
    doc["modules"][4]["data_symbols"] = {"gFilterList": "0x2010"}
    built = build_scenario(parse_spec(doc), str(tmp_path))
    dump = pdbutil.dump(_store_files(built, built.modules[5])[0])
    assert {p.name: (pdbutil.section_rva(dump.sections, p.segment, p.offset), p.function) for p in dump.publics} \
        == {"FilterSendNetBufferLists": (0x1000, True), "FilterReceiveNetBufferLists": (0x1020, True),
            "gFilterList": (0x2010, False)}


# --- the reference hash functions and tables, byte for byte against lld-link ------------------------

C_SOURCE = """
typedef struct _LIST_ENTRY { struct _LIST_ENTRY *Flink; struct _LIST_ENTRY *Blink; } LIST_ENTRY;
struct _BF { unsigned long A : 3; unsigned long B : 5; unsigned long C; };
union _U { unsigned long long Q; unsigned long D[2]; };
enum _E { E_ONE = 1, E_TWO = 2 };
struct _REC { LIST_ENTRY Links; void *Base; struct _BF bf; union _U u; enum _E e; unsigned char arr[6]; };
struct _REC gRecord;
int gData = 5;
long gCounters[4];
int FirstFunction(struct _REC *r) { return (int)r->bf.A + r->e; }
int SecondFunction(void) { return gData; }
void ThirdFunctionWithALongerName(void) { gCounters[1]++; }
"""


@pytest.fixture(scope="module")
def lld_pdbs(tmp_path_factory):
    """x.pdb (C) and y.pdb (C++, unique names) as clang-cl + lld-link write them."""
    if not (shutil.which("clang") and shutil.which("lld-link")):
        pytest.fail("clang and lld-link are needed (Debian packages clang, lld); scripts/test installs them")
    work = tmp_path_factory.mktemp("lld")
    out = []
    for stem, ext in (("x", "c"), ("y", "cpp")):
        source = work / ("%s.%s" % (stem, ext))
        source.write_text(C_SOURCE if ext == "c" else C_SOURCE.replace("int First", 'extern "C" int First'))
        subprocess.run(["clang", "--driver-mode=cl", "--target=x86_64-pc-windows-msvc", "/c", "/Z7", "/GS-",
                        "/Fo%s" % (work / (stem + ".obj")), str(source)], check=True, capture_output=True)
        subprocess.run(["lld-link", "/dll", "/noentry", "/nodefaultlib", "/debug", "/out:%s" % (work / (stem + ".dll")),
                        "/pdb:%s" % (work / (stem + ".pdb")), str(work / (stem + ".obj"))], check=True,
                       capture_output=True)
        out.append(str(work / (stem + ".pdb")))
    return out


def _symbol_records(data):
    """(offset, kind, record bytes) of a CodeView symbol record stream."""
    out, offset = [], 0
    while offset < len(data):
        length, kind = struct.unpack_from("<HH", data, offset)
        out.append((offset, kind, data[offset:offset + 2 + length]))
        offset += 2 + length
    return out


def _record_name(kind, record):
    fixed = {pdb_writer.S_PUB32: 14, pdb_writer.S_UDT: 8, 0x110D: 14, 0x1125: 14, 0x1127: 14}[kind]
    return record[fixed:].split(b"\0", 1)[0].decode()


@pytest.mark.parametrize("which", [0, 1], ids=["c", "cpp"])
def test_hashes_and_tables_equal_lld_link(pdbutil_available, lld_pdbs, which):
    path = lld_pdbs[which]
    streams = pdbutil.msf_streams(path)
    numbers = pdbutil.stream_numbers(path)

    # TPI: every record's hash (name hash for definitions, CRC otherwise) as lld stored it.
    tpi, hashes = streams[2], streams[numbers["TPI Hash"]]
    offset, index = 56, 0
    while offset < len(tpi):
        record = tpi[offset:offset + 2 + struct.unpack_from("<H", tpi, offset)[0]]
        assert pdb_writer.type_record_hash(record) % pdb_writer.TPI_HASH_BUCKETS == \
            struct.unpack_from("<I", hashes, 4 * index)[0], hex(0x1000 + index)
        offset += len(record)
        index += 1
    assert index > 20

    # Publics and globals: the GSI hash tables (buckets, bitmap, bucket offsets) and the address map.
    records = _symbol_records(streams[numbers["Symbol Records"]])
    publics = [(_record_name(k, r), struct.unpack_from("<H", r, 12)[0], struct.unpack_from("<I", r, 8)[0], o)
               for o, k, r in records if k == pdb_writer.S_PUB32]          # (name, segment, offset, record)
    assert len(publics) == 6
    assert pdb_writer.publics_stream(publics) == streams[numbers["Public Symbol Hash"]]
    globals_ = [(_record_name(k, r), o) for o, k, r in records if k != pdb_writer.S_PUB32]
    assert len(globals_) >= 8
    assert pdb_writer.gsi_hash_table(globals_) == streams[numbers["Global Symbol Hash"]]

    # /names: lld stores "" and the source path.
    names = streams[numbers['Named Stream "/names"']]
    strings = names[12:12 + struct.unpack_from("<I", names, 8)[0]].split(b"\0")[1:-1]
    assert pdb_writer.string_table([s.decode() for s in strings])[0] == names
