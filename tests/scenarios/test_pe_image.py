"""PE32+ images from the scenario builder, checked against pefile as the independent oracle.

pefile's default parse adds one content heuristic, "Byte 0x00 makes up N% of the file's contents", which any flat
(FileAlignment 0x1000) image of a small driver trips because most of each page is zero padding. The structural
checks therefore parse with ``fast_load=True`` + ``full_load()``: that skips only the byte statistics and still
records every header, section and directory warning. ``test_default_parse_only_warns_about_zero_padding`` pins
that the heuristic is the only difference.
"""

import struct

import pefile
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytriage.scenarios.pe_image import (
    CHECKSUM_OFFSET,
    PeFunction,
    PeImage,
    PeSection,
    build_pe_image,
    guid_bytes,
    pe_checksum,
)

GUID = "3844DBB920174967BE7AA4A2C20430FA"
IMAGE_BASE = 0xFFFFF80412340000
TIMESTAMP = 0x5F3E1A2B
# UNWIND_INFO: version 1, no flags, prolog 4 bytes, 1 code: at offset 4 UWOP_ALLOC_SMALL (2) info 4 -> sub rsp,0x28.
ALLOC_0x28 = bytes([0x01, 0x04, 0x01, 0x00, 0x04, 0x42, 0x00, 0x00])
# UNWIND_INFO: version 1, flags UNW_FLAG_EHANDLER (1), prolog 1, 1 code: at 1 UWOP_PUSH_NONVOL (0) rbx (3),
# then (code count padded to even) the handler RVA.
PUSH_RBX_WITH_HANDLER = bytes([0x09, 0x01, 0x01, 0x00, 0x01, 0x30, 0x00, 0x00]) + struct.pack("<I", 0x1200)


def parse(data: bytes) -> pefile.PE:
    """Parse everything, assert pefile found nothing structurally wrong."""
    pe = pefile.PE(data=data, fast_load=True)
    pe.full_load()
    assert pe.get_warnings() == []
    return pe


def build_vwifimf(**overrides) -> PeImage:
    """A driver with three functions (one not exported, two with real unwind codes) and two extra sections."""
    args = dict(
        module_name="vwifimf.sys",
        image_base=IMAGE_BASE,
        timestamp=TIMESTAMP,
        code=bytes(range(256)) * 3,
        functions=[
            PeFunction("DriverEntry", 0x1000, 0x10),
            PeFunction("Dot11SendCompletion", 0x1100, 0x20, unwind=ALLOC_0x28),
            PeFunction("VwifiInternalHelper", 0x1050, 0x8, export=False),
            PeFunction("VwifiSendNbl", 0x1200, 0x40, unwind=PUSH_RBX_WITH_HANDLER),
        ],
        pdb_guid=GUID,
        pdb_age=2,
        extra_sections=[PeSection(".data", 0x2000, b"abc"), PeSection("PAGE", 0x3000, b"\x90" * 5)],
    )
    args.update(overrides)
    return build_pe_image(**args)


def test_headers_carry_the_requested_identity_and_flat_layout():
    img = build_vwifimf()
    pe = parse(img.data)
    fh, oh = pe.FILE_HEADER, pe.OPTIONAL_HEADER
    assert pe.DOS_HEADER.e_magic == 0x5A4D
    assert pe.DOS_HEADER.e_lfanew == 0x80
    assert pe.NT_HEADERS.Signature == 0x4550
    assert fh.Machine == 0x8664
    assert fh.NumberOfSections == 5
    assert fh.TimeDateStamp == TIMESTAMP
    assert fh.SizeOfOptionalHeader == 0xF0
    assert fh.Characteristics == 0x22
    assert oh.Magic == 0x20B
    assert oh.ImageBase == IMAGE_BASE
    assert oh.SectionAlignment == oh.FileAlignment == 0x1000
    assert oh.SizeOfHeaders == 0x1000
    assert oh.SizeOfImage == img.size_of_image == 0x6000 == len(img.data)
    assert (oh.MajorOperatingSystemVersion, oh.MinorOperatingSystemVersion) == (10, 0)
    assert (oh.MajorSubsystemVersion, oh.MinorSubsystemVersion) == (10, 0)
    assert oh.Subsystem == 1
    assert oh.DllCharacteristics == 0x160
    assert oh.AddressOfEntryPoint == 0x1000
    assert oh.BaseOfCode == 0x1000
    assert oh.SizeOfCode == 0x2000          # .text + PAGE
    assert oh.SizeOfInitializedData == 0x3000   # .data + .rdata + .pdata
    assert oh.SizeOfStackReserve == 0x40000
    assert oh.SizeOfHeapReserve == 0x100000
    assert oh.NumberOfRvaAndSizes == 16
    assert img.timestamp == TIMESTAMP
    assert img.symbol_store_key == "5F3E1A2B6000"
    # Flat layout: what pefile maps into memory is byte for byte the file.
    assert pe.get_memory_mapped_image() == img.data


def test_sections_are_page_aligned_with_file_offset_equal_to_rva():
    img = build_vwifimf()
    pe = parse(img.data)
    got = [
        (s.Name.rstrip(b"\0"), s.VirtualAddress, s.Misc_VirtualSize, s.PointerToRawData, s.SizeOfRawData,
         s.Characteristics)
        for s in pe.sections
    ]
    assert got == [
        (b".text", 0x1000, 0x300, 0x1000, 0x1000, 0x60000020),
        (b".data", 0x2000, 0x3, 0x2000, 0x1000, 0xC0000040),
        (b"PAGE", 0x3000, 0x5, 0x3000, 0x1000, 0x60000020),
        (b".rdata", 0x4000, 0xDB, 0x4000, 0x1000, 0x40000040),
        (b".pdata", 0x5000, 0x30, 0x5000, 0x1000, 0x40000040),
    ]
    assert [(s.name, s.rva, s.virtual_size, s.characteristics) for s in img.sections] == [
        (name.decode(), rva, vsize, chars) for name, rva, vsize, _, _, chars in got
    ]
    assert img.data[0x1000:0x1300] == bytes(range(256)) * 3
    assert img.data[0x2000:0x2003] == b"abc"
    assert img.data[0x3000:0x3005] == b"\x90" * 5


def test_explicit_characteristics_and_virtual_size_are_kept():
    img = build_vwifimf(extra_sections=[
        PeSection("INIT", 0x2000, b"\xc3"),
        PeSection(".bss", 0x3000, b"", virtual_size=0x1800, characteristics=0xC0000080),
    ])
    pe = parse(img.data)
    got = [(s.Name.rstrip(b"\0"), s.VirtualAddress, s.Misc_VirtualSize, s.SizeOfRawData, s.Characteristics)
           for s in pe.sections]
    assert got[1:3] == [(b"INIT", 0x2000, 1, 0x1000, 0x60000020), (b".bss", 0x3000, 0x1800, 0x2000, 0xC0000080)]
    assert [s.Name.rstrip(b"\0") for s in pe.sections][3:] == [b".rdata", b".pdata"]
    assert pe.sections[3].VirtualAddress == 0x5000     # after .bss's two pages
    assert pe.OPTIONAL_HEADER.SizeOfUninitializedData == 0x2000


def test_exports_round_trip_names_to_rvas_sorted_with_ordinals_from_one():
    img = build_vwifimf()
    pe = parse(img.data)
    exp = pe.DIRECTORY_ENTRY_EXPORT
    assert exp.name == b"vwifimf.sys"
    assert exp.struct.Base == 1
    assert exp.struct.TimeDateStamp == TIMESTAMP
    assert [(s.name, s.address, s.ordinal, s.forwarder) for s in exp.symbols] == [
        (b"Dot11SendCompletion", 0x1100, 1, None),
        (b"DriverEntry", 0x1000, 2, None),
        (b"VwifiSendNbl", 0x1200, 3, None),
    ]
    export_dir = pe.OPTIONAL_HEADER.DATA_DIRECTORY[0]
    assert export_dir.VirtualAddress == img.export_dir_rva == 0x405C
    assert export_dir.Size == 0xDB - 0x5C   # the directory and its strings end .rdata


def test_pdata_entries_are_sorted_and_point_at_parsed_unwind_info():
    img = build_vwifimf()
    pe = parse(img.data)
    exc_dir = pe.OPTIONAL_HEADER.DATA_DIRECTORY[3]
    assert (exc_dir.VirtualAddress, exc_dir.Size) == (img.pdata_rva, 4 * 12) == (0x5000, 48)
    entries = pe.DIRECTORY_ENTRY_EXCEPTION
    assert [(e.struct.BeginAddress, e.struct.EndAddress, e.struct.UnwindData) for e in entries] == [
        (0x1000, 0x1010, 0x4040),
        (0x1050, 0x1058, 0x4044),
        (0x1100, 0x1120, 0x4048),
        (0x1200, 0x1240, 0x4050),
    ]
    infos = [(e.unwindinfo.Version, e.unwindinfo.Flags, e.unwindinfo.SizeOfProlog, e.unwindinfo.CountOfCodes,
              e.unwindinfo.FrameRegister, e.unwindinfo.FrameOffset) for e in entries]
    assert infos == [(1, 0, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0), (1, 0, 4, 1, 0, 0), (1, 1, 1, 1, 0, 0)]
    assert [str(c) for c in entries[2].unwindinfo.UnwindCodes] == [".ALLOCSTACK 0x28"]
    assert [str(c) for c in entries[3].unwindinfo.UnwindCodes] == [".PUSHREG RBX"]
    assert entries[3].unwindinfo.ExceptionHandler == 0x1200
    assert img.data[0x4048:0x4050] == ALLOC_0x28
    assert img.data[0x4050:0x405C] == PUSH_RBX_WITH_HANDLER
    # Every UNWIND_INFO is 4-byte aligned, as RtlVirtualUnwind requires.
    assert all(e.struct.UnwindData % 4 == 0 for e in entries)


def test_codeview_record_names_the_pdb_the_symbol_store_way():
    img = build_vwifimf()
    pe = parse(img.data)
    debug_dir = pe.OPTIONAL_HEADER.DATA_DIRECTORY[6]
    assert (debug_dir.VirtualAddress, debug_dir.Size) == (img.debug_dir_rva, 28) == (0x4000, 28)
    assert len(pe.DIRECTORY_ENTRY_DEBUG) == 1
    dbg = pe.DIRECTORY_ENTRY_DEBUG[0]
    assert dbg.struct.Type == 2
    assert dbg.struct.TimeDateStamp == TIMESTAMP
    assert dbg.struct.AddressOfRawData == dbg.struct.PointerToRawData == img.codeview_rva == 0x401C
    assert dbg.struct.SizeOfData == 24 + len(b"vwifimf.pdb\0")
    cv = dbg.entry
    assert cv.CvSignature == b"RSDS"
    assert (cv.Signature_Data1, cv.Signature_Data2, cv.Signature_Data3) == (0x3844DBB9, 0x2017, 0x4967)
    assert (cv.Signature_Data4, cv.Signature_Data5, cv.Signature_Data6) == (0xBE, 0x7A, bytes.fromhex("A4A2C20430FA"))
    assert cv.Age == 2
    assert cv.Signature_String == GUID + "2"
    assert cv.PdbFileName == b"vwifimf.pdb\x00"
    assert (img.pdb_guid, img.pdb_age, img.pdb_name) == (GUID, 2, "vwifimf.pdb")
    assert img.pdb_store_key == GUID + "2"
    assert img.data[0x401C:0x4020] == b"RSDS"
    assert img.data[0x4020:0x4030] == bytes.fromhex("B9DB443817206749BE7AA4A2C20430FA")


def test_guid_with_dashes_and_lower_case_is_normalised_and_age_is_lower_hex_in_the_key():
    img = build_vwifimf(pdb_guid="{3844dbb9-2017-4967-be7a-a4a2c20430fa}", pdb_age=0x1A, pdb_name="x\\vwifi.pdb")
    cv = parse(img.data).DIRECTORY_ENTRY_DEBUG[0].entry
    assert img.pdb_guid == GUID
    assert img.pdb_store_key == GUID + "1a"
    assert cv.Signature_String == GUID + "1A"      # pefile prints the age upper case
    assert cv.PdbFileName == b"x\\vwifi.pdb\x00"
    assert guid_bytes(GUID) == bytes.fromhex("B9DB443817206749BE7AA4A2C20430FA")


def test_checksum_matches_pefile_and_is_written_in_the_header():
    img = build_vwifimf()
    pe = parse(img.data)
    assert pe.OPTIONAL_HEADER.CheckSum == img.checksum
    assert img.checksum == pe.generate_checksum()
    assert pe.verify_checksum()
    assert struct.unpack_from("<I", img.data, CHECKSUM_OFFSET)[0] == img.checksum


def test_pe_checksum_agrees_with_pefile_on_odd_lengths_and_all_zero_data():
    base = build_vwifimf().data
    for data in (base + b"\x01\x02\x03", base[:0x1001], base + b"\xff" * 0x2001):
        pe = pefile.PE(data=data, fast_load=True)
        assert pe_checksum(data) == pe.generate_checksum()
    assert pe_checksum(bytes(8), checksum_offset=0x40) == 8


def test_same_inputs_give_the_same_bytes():
    first, second = build_vwifimf(), build_vwifimf()
    assert first.data == second.data
    assert first == second


def test_given_size_of_image_extends_the_last_section_with_zero_pages():
    img = build_vwifimf(size_of_image=0x9000)
    pe = parse(img.data)
    assert len(img.data) == img.size_of_image == pe.OPTIONAL_HEADER.SizeOfImage == 0x9000
    last = pe.sections[-1]
    assert (last.Name.rstrip(b"\0"), last.VirtualAddress, last.Misc_VirtualSize, last.SizeOfRawData) == (
        b".pdata", 0x5000, 0x4000, 0x4000)
    assert img.sections[-1].virtual_size == 0x4000
    assert pe.get_overlay_data_start_offset() is None
    assert img.data[0x5030:] == bytes(0x9000 - 0x5030)
    assert img.symbol_store_key == "5F3E1A2B9000"
    assert img.checksum == pe.generate_checksum()
    assert len(pe.DIRECTORY_ENTRY_EXCEPTION) == 4   # the exception directory size is unchanged


def test_image_without_functions_has_no_export_or_exception_directory():
    img = build_pe_image("nofunc.sys", 0x1C0000000, 7, b"\xc3", [], GUID)
    pe = parse(img.data)
    assert (img.export_dir_rva, img.pdata_rva) == (0, 0)
    assert [s.Name.rstrip(b"\0") for s in pe.sections] == [b".text", b".rdata"]
    assert not hasattr(pe, "DIRECTORY_ENTRY_EXPORT")
    assert not hasattr(pe, "DIRECTORY_ENTRY_EXCEPTION")
    assert (pe.OPTIONAL_HEADER.DATA_DIRECTORY[0].VirtualAddress, pe.OPTIONAL_HEADER.DATA_DIRECTORY[3].Size) == (0, 0)
    assert pe.OPTIONAL_HEADER.AddressOfEntryPoint == 0x1000
    assert pe.DIRECTORY_ENTRY_DEBUG[0].entry.PdbFileName == b"nofunc.pdb\x00"


def test_unexported_functions_get_pdata_but_no_export_directory():
    img = build_pe_image("hidden.sys", 0x1C0000000, 7, bytes(0x20), [PeFunction("f", 0x1010, 4, export=False)], GUID)
    pe = parse(img.data)
    assert img.export_dir_rva == 0
    assert not hasattr(pe, "DIRECTORY_ENTRY_EXPORT")
    assert [(e.struct.BeginAddress, e.struct.EndAddress) for e in pe.DIRECTORY_ENTRY_EXCEPTION] == [(0x1010, 0x1014)]
    assert pe.OPTIONAL_HEADER.AddressOfEntryPoint == 0x1010


def test_arm64_image_gets_exports_but_no_x64_pdata():
    img = build_pe_image("arm.sys", 0x1C0000000, 7, bytes(8), [PeFunction("f", 0x1000, 4)], GUID, machine=0xAA64)
    pe = parse(img.data)
    assert pe.FILE_HEADER.Machine == 0xAA64
    assert img.pdata_rva == 0
    assert [(s.name, s.address) for s in pe.DIRECTORY_ENTRY_EXPORT.symbols] == [(b"f", 0x1000)]
    assert pe.OPTIONAL_HEADER.DATA_DIRECTORY[3].Size == 0


def test_default_parse_only_warns_about_zero_padding():
    img = build_vwifimf()
    warnings = pefile.PE(data=img.data).get_warnings()
    assert len(warnings) == 1
    assert warnings[0].startswith("Byte 0x00 makes up ")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(functions=[PeFunction("before", 0x0FF0, 0x10)]), "does not lie inside .text"),
        (dict(functions=[PeFunction("crossing", 0x12F0, 0x20)]), "does not lie inside .text"),
        (dict(functions=[PeFunction("indata", 0x2000, 0x2)]), "does not lie inside .text"),
        (dict(functions=[PeFunction("empty", 0x1000, 0)]), "must be > 0"),
        (dict(functions=[PeFunction("a", 0x1000, 0x10), PeFunction("b", 0x1008, 4)]), "overlap"),
        (dict(functions=[PeFunction("a", 0x1000, 4), PeFunction("a", 0x1010, 4)]), "exported twice"),
        (dict(functions=[PeFunction("a", 0x1000, 4, unwind=b"\x01")]), "4-byte header"),
        (dict(code_rva=0x1800), "must be page aligned"),
        (dict(code_rva=0), "must be page aligned"),
        (dict(extra_sections=[PeSection(".data", 0x2100, b"x")]), "must be page aligned"),
        (dict(extra_sections=[PeSection(".data", 0x1000, b"x")]), "overlap"),
        (dict(extra_sections=[PeSection(".rdata", 0x2000, b"x")]), "reserved for the builder"),
        (dict(extra_sections=[PeSection("PAGE", 0x2000, b"x"), PeSection("PAGE", 0x3000, b"y")]), "appears twice"),
        (dict(extra_sections=[PeSection("TOOLONGNAME", 0x2000, b"x")]), "longer than 8 bytes"),
        (dict(extra_sections=[PeSection(".data", 0x2000, b"xyz", virtual_size=2)]), "smaller than"),
        (dict(size_of_image=0x5000), "at least 0x6000"),
        (dict(size_of_image=0x6800), "page aligned"),
        (dict(pdb_guid="not-a-guid"), "is not a GUID"),
        (dict(image_base=0xFFFFF80412340800), "page-aligned"),
        (dict(timestamp=1 << 32), "32 bits"),
        (dict(code=b""), "code is empty"),
    ],
)
def test_invalid_layouts_raise_value_error_naming_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_vwifimf(**overrides)


@st.composite
def function_layouts(draw):
    """Non-overlapping functions at random offsets of a random-sized .text, with unique names."""
    count = draw(st.integers(min_value=1, max_value=40))
    gaps = draw(st.lists(st.integers(0, 0x40), min_size=count, max_size=count))
    sizes = draw(st.lists(st.integers(1, 0x300), min_size=count, max_size=count))
    names = draw(st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
                          min_size=count, max_size=count, unique=True))
    exported = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    functions = []
    offset = 0
    for gap, size, name, export in zip(gaps, sizes, names, exported):
        offset += gap
        functions.append(PeFunction(name, 0x1000 + offset, size, export=export))
        offset += size
    code_size = offset + draw(st.integers(0, 0x2000))
    fill = draw(st.integers(0, 255))
    order = draw(st.permutations(functions))
    return list(order), bytes([fill]) * code_size


@settings(max_examples=40, deadline=None)
@given(layout=function_layouts(), extra_pages=st.integers(0, 3))
def test_random_function_layouts_parse_cleanly_and_exports_round_trip(layout, extra_pages):
    functions, code = layout
    natural = build_pe_image("rnd.sys", 0x1C0000000, 0x12345678, code, functions, GUID)
    size = natural.size_of_image + extra_pages * 0x1000
    img = build_pe_image("rnd.sys", 0x1C0000000, 0x12345678, code, functions, GUID, size_of_image=size)
    pe = parse(img.data)
    assert len(img.data) == pe.OPTIONAL_HEADER.SizeOfImage == size
    exports = sorted((f.name.encode(), f.rva) for f in functions if f.export)
    got = [(s.name, s.address) for s in getattr(pe, "DIRECTORY_ENTRY_EXPORT", None).symbols] if exports else []
    assert got == exports
    assert [(e.struct.BeginAddress, e.struct.EndAddress) for e in pe.DIRECTORY_ENTRY_EXCEPTION] == sorted(
        (f.rva, f.rva + f.size) for f in functions)
    assert all(e.unwindinfo.Version == 1 for e in pe.DIRECTORY_ENTRY_EXCEPTION)
    assert img.checksum == pe.generate_checksum()
