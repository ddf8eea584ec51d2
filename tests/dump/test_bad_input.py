"""Bad input never produces a traceback, a hang or a wrong answer passed off as right.

Every case goes through the real command line (``pytriage info`` / ``db``) and checks the contract:
exit code 2 and exactly one line on stderr naming the file offset or the address, or - for files that
are valid but only partly readable - exit 0 with the limitation stated in the output.
"""

import os
import shutil
import struct

import pytest

from pytriage import cli
from pytriage.dump import open_dump
from pytriage.dump import structs as S
from tests.conftest import file_offset_of_va


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pytriage: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def copy_to(tmp_path, src, name):
    dst = str(tmp_path / name)
    shutil.copyfile(src, dst)
    return dst


def patch(path, offset, data):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def truncate(src, dst, size):
    with open(src, "rb") as fh:
        data = fh.read(size)
    with open(dst, "wb") as fh:
        fh.write(data)


# --- not a kernel dump at all ------------------------------------------------------------------------

def test_user_mode_minidump_is_named(tmp_path, capsys):
    path = str(tmp_path / "app.dmp")
    with open(path, "wb") as fh:
        fh.write(b"MDMP\x93\xa7\x00\x00" + bytes(0x400))
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "user-mode minidump", "offset 0x0")


@pytest.mark.parametrize("content, needle", [
    (b"", "is empty"),
    (b"PAGE", "too short"),
    (b"ELF\x7f" + bytes(0x3000), "not a Windows kernel dump"),
    (b"PAGEXXXX" + bytes(0x3000), "offset 0x4"),
])
def test_wrong_signatures(tmp_path, capsys, content, needle):
    path = str(tmp_path / "bad.dmp")
    with open(path, "wb") as fh:
        fh.write(content)
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, needle)


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "info", str(tmp_path / "nope.dmp"))
    assert_one_line_error(code, err, "cannot open")


def test_unknown_dump_type(tmp_path, capsys, triage_dump_path):
    path = copy_to(tmp_path, triage_dump_path, "t.dmp")
    patch(path, 0xF98, struct.pack("<I", 77))
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "DumpType 77", "offset 0xf98")


# --- truncation at every structural boundary ------------------------------------------------------------

def _triage_boundaries(path):
    """File offsets where a structure of the corpus triage dump starts or ends."""
    with open_dump(path) as dump:
        t = dump.triage
        h = t.header
        cuts = {4, 8, 0x30, 0x348, 0xF00, 0xF98, 0x1000, 0x1FFF, 0x2000, 0x2040, 0x207F, 0x2080}
        for name, value in h.items():
            if name.endswith("Offset") and value:
                cuts.update({value, value + 1})
        drivers = int(h["DriverListOffset"])
        for i in (0, 1, int(h["DriverCount"]) - 1):
            cuts.add(drivers + i * S.DUMP_DRIVER_ENTRY64.size + 0x40)
        blocks = int(h["DataBlocksOffset"])
        cuts.update({blocks + 0x10 * int(h["DataBlocksCount"]) - 1})
        for region in t.regions()[:: max(1, len(t.regions()) // 25)]:
            cuts.update({region.file_offset, region.file_offset + region.size - 1})
        cuts.update({t.size_of_dump - 1})
        for blob in t.secondary_data:      # inside each secondary data blob (the end of one is undetectable)
            cuts.add(blob.header_offset + 4)
            if blob.size:
                cuts.add(blob.data_offset + blob.size // 2)
    return sorted(c for c in cuts if c < os.path.getsize(path))


def test_triage_dump_truncated_at_every_boundary(tmp_path, capsys, triage_dump_path):
    cuts = _triage_boundaries(triage_dump_path)
    assert len(cuts) >= 60
    dst = str(tmp_path / "cut.dmp")
    for cut in cuts:
        truncate(triage_dump_path, dst, cut)
        code, _, err = run_cli(capsys, "info", dst)
        assert_one_line_error(code, err, "offset 0x")


def _bitmap_boundaries(path):
    with open_dump(path) as dump:
        phys = dump.physical
        first = phys.first_page_offset
        bitmap_end = phys.bitmap_offset + (phys.bit_count + 7) // 8
        pages = phys.page_count()
    size = os.path.getsize(path)
    cuts = {0x1000, 0x2000, 0x2010, 0x2037, 0x2038, bitmap_end - 1, bitmap_end, first, first + 1,
            first + 0x1000, size - 0x1000, size - 1}
    cuts.update(first + 0x1000 * k for k in range(0, pages, max(1, pages // 20)))
    return sorted(c for c in cuts if c < size)


def _full_boundaries(path):
    with open_dump(path) as dump:
        entries = sorted(dump.physical._entries, key=lambda e: e[2])
    size = os.path.getsize(path)
    cuts = {0x88, 0x98, 0x1000, 0x2000, 0x2001, size - 1}
    for _base, count, offset in entries:
        cuts.update({offset, offset + 0x1000, offset + count * 0x1000 - 1})
    return sorted(c for c in cuts if c < size)


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_scenario_dumps_truncated_at_every_boundary(tmp_path, capsys, basic_full, basic_bitmap, kind):
    built = basic_full if kind == "full" else basic_bitmap
    cuts = (_full_boundaries if kind == "full" else _bitmap_boundaries)(built.dump_path)
    assert len(cuts) >= 10
    dst = str(tmp_path / "cut.dmp")
    for cut in cuts:
        truncate(built.dump_path, dst, cut)
        code, _, err = run_cli(capsys, "info", dst)
        assert_one_line_error(code, err, "offset 0x")


# --- absurd sizes and counts ------------------------------------------------------------------------------

@pytest.mark.parametrize("field_offset, value, needle", [
    (0x2034, struct.pack("<I", 0x7FFFFFFF), "DriverCount is absurd"),
    (0x207C, struct.pack("<I", 0x7FFFFFFF), "DataBlocksCount is absurd"),
    (0x2004, struct.pack("<I", 0x7FFFFFF0), "SizeOfDump"),
    (0x2008, struct.pack("<I", 0x10), "ValidOffset"),
    (0x2030, struct.pack("<I", 0x7FFFFFF0), "DriverListOffset"),
    (0x2078, struct.pack("<I", 0x1000000), "DataBlocksOffset"),
])
def test_triage_absurd_header_values(tmp_path, capsys, triage_dump_path, field_offset, value, needle):
    path = copy_to(tmp_path, triage_dump_path, "t.dmp")
    patch(path, field_offset, value)
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, needle, "offset 0x")


def test_triage_absurd_driver_name_length(tmp_path, capsys, triage_dump_path):
    path = copy_to(tmp_path, triage_dump_path, "t.dmp")
    with open_dump(path) as dump:
        entry = int(dump.triage.header["DriverListOffset"]) + 3 * S.DUMP_DRIVER_ENTRY64.size
        name_offset = struct.unpack_from("<I", dump.file.view, entry)[0]
    patch(path, name_offset, struct.pack("<I", 0xFFFFFF))
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "driver name length", "offset 0x%x" % name_offset)


def test_triage_data_block_past_the_data(tmp_path, capsys, triage_dump_path):
    path = copy_to(tmp_path, triage_dump_path, "t.dmp")
    with open_dump(path) as dump:
        table = int(dump.triage.header["DataBlocksOffset"])
    patch(path, table + 5 * 0x10 + 12, struct.pack("<I", 0x7FFFFFFF))   # block 5: Size
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "data block 5", "offset 0x")


def test_triage_valid_marker_missing(tmp_path, capsys, triage_dump_path):
    path = copy_to(tmp_path, triage_dump_path, "t.dmp")
    with open_dump(path) as dump:
        valid = int(dump.triage.header["ValidOffset"])
    patch(path, valid, b"\0\0\0\0")
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "incomplete", "offset 0x%x" % valid)


def test_full_dump_absurd_runs(tmp_path, capsys, basic_full):
    path = copy_to(tmp_path, basic_full.dump_path, "f.dmp")
    patch(path, 0x88, struct.pack("<I", 1000))
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "NumberOfRuns 1000", "offset 0x88")

    path = copy_to(tmp_path, basic_full.dump_path, "f2.dmp")
    patch(path, S.H64_RUNS_OFFSET + 8, struct.pack("<Q", 1 << 50))       # run 0 PageCount
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "absurd", "offset 0x98")

    path = copy_to(tmp_path, basic_full.dump_path, "f3.dmp")
    patch(path, S.H64_RUNS_OFFSET + 16 + 8, struct.pack("<Q", 0x100000))   # run 1: 4 GB, file is small
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "truncated", "offset 0x")


def test_bitmap_absurd_sizes(tmp_path, capsys, basic_bitmap):
    path = copy_to(tmp_path, basic_bitmap.dump_path, "b.dmp")
    patch(path, 0x2030, struct.pack("<Q", 1 << 62))                       # Pages
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "absurd", "offset 0x2030")

    path = copy_to(tmp_path, basic_bitmap.dump_path, "b2.dmp")
    patch(path, 0x2030, struct.pack("<Q", 1 << 36))                       # bitmap larger than the file
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "page bitmap", "offset 0x2038")

    path = copy_to(tmp_path, basic_bitmap.dump_path, "b3.dmp")
    patch(path, 0x2028, struct.pack("<Q", 1 << 40))                       # TotalPresentPages
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "claims", "offset 0x2028")

    path = copy_to(tmp_path, basic_bitmap.dump_path, "b4.dmp")
    patch(path, 0x2008, b"XXXX")
    patch(path, 0x2000, b"QQQQ")
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "bitmap dump signature", "offset 0x2000")


def test_bitmap_marking_more_pages_than_the_file_holds(tmp_path, capsys, basic_bitmap):
    """TotalPresentPages is honest but the bitmap itself has extra bits set: caught on first read."""
    path = copy_to(tmp_path, basic_bitmap.dump_path, "b.dmp")
    with open_dump(path) as dump:
        phys = dump.physical
        bitmap_bytes = (phys.bit_count + 7) // 8
        offset = phys.bitmap_offset
    patch(path, offset, b"\xff" * bitmap_bytes)
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "bitmap marks", "offset 0x%x" % offset)


# --- page tables and lists that loop ---------------------------------------------------------------------

def test_page_table_self_reference_terminates(tmp_path, capsys, basic_bitmap):
    """Every kernel-half PML4 entry points back at the PML4: walks stay 4 steps, nothing hangs."""
    path = copy_to(tmp_path, basic_bitmap.dump_path, "loop.dmp")
    with open_dump(path) as dump:
        dtb = dump.header.directory_table_base & ~0xFFF
        pml4 = dump.physical.page_offset(dtb >> 12)
    entry = struct.pack("<Q", dtb | 0x63)
    patch(path, pml4 + 256 * 8, entry * 256)
    with open_dump(path) as dump:
        # Like Windows' own self-map entry: a VA whose four table indexes all hit a patched entry goes
        # through the PML4 four times and lands on the PML4 page itself.
        va = 0xFFFF000000000000 | (300 << 39) | (300 << 30) | (300 << 21) | (300 << 12)
        assert dump.translate(va + 0x18) == dtb + 0x18
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "Modules: 0" in out
    assert "warning" in out.lower()


def test_module_list_cycle_is_a_warning(tmp_path, capsys, basic_bitmap):
    path = copy_to(tmp_path, basic_bitmap.dump_path, "cycle.dmp")
    with open_dump(path) as dump:
        modules = dump.modules().modules
        head = dump.header.ps_loaded_module_list
        first = struct.unpack("<Q", dump.read_virtual(head, 8))[0]
        second = struct.unpack("<Q", dump.read_virtual(first, 8))[0]
        third = struct.unpack("<Q", dump.read_virtual(second, 8))[0]
    assert len(modules) == 6
    patch(path, file_offset_of_va(path, third), struct.pack("<Q", second))   # third.Flink -> second
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "Modules: 3" in out
    assert "loops back to %08x`%08x" % (second >> 32, second & 0xFFFFFFFF) in out


def test_module_list_garbage_pointer_gives_partial_list(tmp_path, capsys, basic_bitmap):
    path = copy_to(tmp_path, basic_bitmap.dump_path, "garbage.dmp")
    with open_dump(path) as dump:
        head = dump.header.ps_loaded_module_list
        first = struct.unpack("<Q", dump.read_virtual(head, 8))[0]
        second = struct.unpack("<Q", dump.read_virtual(first, 8))[0]
    patch(path, file_offset_of_va(path, second), struct.pack("<Q", 0x4141414141414141))
    code, out, err = run_cli(capsys, "--debug", "info", "--json", path)
    assert code == 0, err
    import json
    record = json.loads(out)
    assert [m["module"] for m in record["modules"]] == ["nt", "hal"]
    assert any("41414141`41414141" in w and "non-canonical" in w for w in record["warnings"])


# --- dumps we read only partly -----------------------------------------------------------------------------

def test_arm64_dump_header_facts_and_clear_unsupported(tmp_path, capsys, basic_bitmap):
    path = copy_to(tmp_path, basic_bitmap.dump_path, "arm64.dmp")
    patch(path, 0x30, struct.pack("<I", 0xAA64))
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "ARM64" in out
    assert "Bugcheck code 000000D1" in out
    assert "ARM64 page tables are not supported" in out
    code, _, err = run_cli(capsys, "db", path, "fffff804`70000000")
    assert_one_line_error(code, err, "not supported")


def test_32bit_header_is_shown_memory_refused(tmp_path, capsys):
    header = bytearray(b"PAGE" * (S.HEADER32_SIZE // 4))
    fields = {"Signature": b"PAGE", "ValidDump": b"DUMP", "MajorVersion": 15, "MinorVersion": 7601,
              "DirectoryTableBase": 0x185000, "MachineImageType": 0x14C, "NumberProcessors": 2,
              "BugCheckCode": 0x7E, "BugCheckParameter1": 0xC0000005, "DumpType": 1}
    for name, off, st in S.DUMP_HEADER32.fields:
        if name in fields:
            st.pack_into(header, off, fields[name])
    path = str(tmp_path / "x86.dmp")
    with open(path, "wb") as fh:
        fh.write(bytes(header) + bytes(0x1000))
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "Windows 7 Kernel Version 7601 MP (2 procs) Free x86" in out
    assert "Bugcheck code 0000007E" in out
    assert "32-bit" in out
    code, _, err = run_cli(capsys, "db", path, "80000000")
    assert_one_line_error(code, err, "32-bit")


def test_db_unreadable_address_names_it(capsys, basic_bitmap):
    code, _, err = run_cli(capsys, "db", basic_bitmap.dump_path, "fffff804`7ff00000")
    assert_one_line_error(code, err, "fffff804`7ff00000")
    code, _, err = run_cli(capsys, "db", basic_bitmap.dump_path, "0000800000000000")
    assert_one_line_error(code, err, "non-canonical")


def test_unknown_machine_type_keeps_header_facts(tmp_path, capsys, basic_bitmap):
    path = copy_to(tmp_path, basic_bitmap.dump_path, "odd.dmp")
    patch(path, 0x30, struct.pack("<I", 0x8600))
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "Bugcheck code 000000D1" in out
    assert "machine type unknown (0x8600) is not supported" in out
