"""`pytriage pooltag` on the built-in pool-zoo scenario: every case of issue 6 with exact answers.

The scenario's ground truth is its spec (pytriage/scenarios/builtin/pool-zoo.json): block addresses,
sizes, tags and the damage done are known byte for byte, so every assertion is exact.
"""

import json
import os

import pytest

from pytriage import cli
from tests.conftest import CORPUS

POOLTAG_TXT = os.path.join(CORPUS, "pooltag.txt")
PAGE_A = 0xFFFFC08BE1000000        # healthy: NDnd 0x60, Filt 0x80, free Nnbl 0x40, TcpE 0x100, free rest
PAGE_B = 0xFFFFC08BE1001000        # NDnd 0x40, Filt 0x60 whose "O" fill runs 0x20 bytes past its end, Nnbl, NDnc
PAGE_C = 0xFFFFC08BE1002000        # ObNm 0x40, CMpi 0x50 with PreviousSize 0x30 (should be 0x40), Io 0x30


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from pytriage.scenarios import build_builtin
    return build_builtin("pool-zoo", str(tmp_path_factory.mktemp("pool-zoo")), "bitmap")


def pooltag(capsys, zoo, *args):
    code = cli.main(["pooltag", zoo.dump_path] + list(args) + ["--symbols", zoo.symstore_path, "--pooltag",
                                                              POOLTAG_TXT, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def alloc(record):
    a = record["allocation"]
    return (int(a["start"], 16), a["size"], a["tag"], a["state"], a["pool_type"])


@pytest.mark.parametrize("address", [PAGE_A + 0x60, PAGE_A + 0x70, PAGE_A + 0xA0, PAGE_A + 0xDF])
def test_address_at_start_middle_and_end_of_a_block(capsys, zoo, address):
    record = pooltag(capsys, zoo, "%x" % address, "--no-scan")
    assert record["kind"] == "classic"
    assert alloc(record) == (PAGE_A + 0x60, 0x80, "Filt", "allocated", "NonPaged")
    blocks = [(int(b["start"], 16), b["size"], b["tag"], b["state"], b["contains_address"]) for b in record["blocks"]]
    assert blocks == [
        (PAGE_A, 0x60, "NDnd", "allocated", False), (PAGE_A + 0x60, 0x80, "Filt", "allocated", True),
        (PAGE_A + 0xE0, 0x40, "Nnbl", "free", False), (PAGE_A + 0x120, 0x100, "TcpE", "allocated", False),
        (PAGE_A + 0x220, 0xDE0, "Free", "free", False)]
    header_hit = address == PAGE_A + 0x60          # the header's own address is not the caller's data
    assert [f["kind"] for f in record["findings"]] == (["header"] if header_hit else [])


def test_free_block_is_reported_as_use_after_free(capsys, zoo):
    record = pooltag(capsys, zoo, "%x" % (PAGE_A + 0xF8))
    assert alloc(record) == (PAGE_A + 0xE0, 0x40, "Nnbl", "free", "Free")
    assert [f["kind"] for f in record["findings"]] == ["free-block"]
    assert "FREE block (last tag Nnbl)" in record["findings"][0]["text"]
    binaries = {(o["source"], o["binary"]) for o in record["owners"]}
    assert ("pooltag.txt", "netio.sys") in binaries and ("network table", "netio.sys") in binaries


def test_overrun_names_the_block_its_tag_the_pattern_and_the_driver(capsys, zoo):
    record = pooltag(capsys, zoo, "%x" % (PAGE_B + 0xB0))
    assert record["allocation"] is None
    kinds = [(f["kind"], int(f["address"], 16), f["culprit_tag"]) for f in record["findings"]]
    assert kinds == [("overrun", PAGE_B + 0xA0, "Filt"), ("damaged-bytes", PAGE_B + 0xA0, "Filt")]
    text = record["findings"][0]["text"]
    assert "PoolType 0x4f is not a pool type" in text
    assert "block ffffc08b`e1001040 (tag Filt, 0x60 bytes) overran its end: its last 0x50 bytes and the next " \
           "0x20 bytes are the fill pattern 4f (\"O\")" in text
    # the walk resumes after the damage: NDnc and the free rest are still listed
    assert [(int(b["start"], 16), b["tag"], b["recovered"]) for b in record["blocks"]] == [
        (PAGE_B, "NDnd", False), (PAGE_B + 0x40, "Filt", False), (PAGE_B + 0x120, "NDnc", True),
        (PAGE_B + 0x160, "Free", True)]
    culprit = record["culprit_owners"][0]
    assert culprit["tag"] == "Filt"
    scanned = [o for o in culprit["owners"] if o["source"] == "image scan"]
    assert [o["binary"] for o in scanned] == ["vwifimf.sys", "vwifimf.sys"]
    assert scanned[0]["detail"].startswith("vwifimf!FilterAttach+0xe: mov r8d, 0x746c6946 [41b846696c74], 3rd arg")
    assert scanned[0]["detail"].endswith("then calls nt!ExAllocatePoolWithTag")


def test_broken_previous_size_chain_is_named_precisely(capsys, zoo):
    record = pooltag(capsys, zoo, "%x" % (PAGE_C + 0x50), "--no-scan")
    assert alloc(record) == (PAGE_C + 0x40, 0x50, "CMpi", "allocated", "Paged")
    assert [(f["kind"], f["text"]) for f in record["findings"]] == [
        ("chain-break", "header ffffc08b`e1002040: PreviousSize is 0x30 but the block before it is 0x40 bytes")]
    suspect = [b for b in record["blocks"] if b["suspect"]]
    assert [int(b["start"], 16) for b in suspect] == [PAGE_C + 0x40]
    # CMpi is not in pooltag.txt: the generic "CM" family line is given, marked as a prefix match
    assert record["owners"][0]["source"] == "pooltag.txt" and record["owners"][0]["binary"] == "nt!cm"
    assert record["owners"][0]["detail"].startswith("prefix 'CM' only: Configuration Manager")


def test_big_pool_allocated_and_freed(capsys, zoo):
    record = pooltag(capsys, zoo, "ffffc08be1101234", "--no-scan")
    assert record["kind"] == "big"
    assert alloc(record) == (0xFFFFC08BE1100000, 0x3000, "VsNb", "allocated", "POOL_TYPE 0x200")
    assert record["findings"] == []
    freed = pooltag(capsys, zoo, "ffffc08be1111000", "--no-scan")
    assert alloc(freed) == (0xFFFFC08BE1110000, 0x2000, "Nnbl", "free", "POOL_TYPE 0x200")
    assert [f["kind"] for f in freed["findings"]] == ["free-block"]


def test_special_pool_guard_page_hit(capsys, zoo):
    record = pooltag(capsys, zoo, "ffffc08be1201004", "--no-scan")
    assert record["kind"] == "special"
    assert alloc(record) == (0xFFFFC08BE1200000, 0x38, "Filt", "allocated", "special pool (nonpaged)")
    assert int(record["allocation"]["data"], 16) == 0xFFFFC08BE1200FC0
    assert [(f["kind"], f["culprit_tag"]) for f in record["findings"]] == [("guard-page", "Filt")]
    assert "an access 0xc bytes past its end" in record["findings"][0]["text"]


def test_special_pool_fill_damage_is_an_overrun(capsys, zoo):
    record = pooltag(capsys, zoo, "ffffc08be1202fe4", "--no-scan")
    assert alloc(record) == (0xFFFFC08BE1202000, 0x1C, "Filt", "allocated", "special pool (nonpaged)")
    assert [(f["kind"], int(f["address"], 16)) for f in record["findings"]] == [("fill-damage", 0xFFFFC08BE1202FFC)]
    assert "an overrun of the allocation ffffc08b`e1202fe0" in record["findings"][0]["text"]


def test_tag_scan_finds_the_allocator_and_not_the_decoy(capsys, zoo):
    record = pooltag(capsys, zoo, "-t", "Filt", "--scan")
    scan = record["scan"]
    assert [(u["module"], int(u["rva"], 16), u["bytes"], u["confirmed"], u["call"]) for u in scan["uses"]] == [
        ("vwifimf", 0x100E, "41b846696c74", True, "nt!ExAllocatePoolWithTag"),
        ("vwifimf", 0x1047, "ba46696c74", True, "nt!ExFreePoolWithTag")]
    # decoy.sys has the bytes as a RIP-relative displacement and inside the string "Filter" in .text, and
    # as data in .data (not searched): none of them is an immediate operand
    assert scan["raw_hits"] == 4 and scan["rejected"] == 2
    assert not any(u["module"] == "decoy" for u in scan["uses"])


def test_tags_resolve_as_pooltag_txt_says(capsys, zoo):
    record = pooltag(capsys, zoo, "-t", "NDnd", "--no-scan")
    assert [(o["source"], o["binary"], o["loaded"]) for o in record["owners"]] == [
        ("pooltag.txt", "ndis.sys", True), ("network table", "ndis.sys", True)]
    assert record["owners"][0]["detail"].startswith("NDIS_TAG_POOL_NDIS (")
    io = pooltag(capsys, zoo, "-t", "Io", "--no-scan")
    assert io["tag"] == "Io  " and io["owners"][0]["binary"] == "nt!io"


def test_pool_usage_from_pool_track_table(capsys, zoo):
    record = pooltag(capsys, zoo, "-s", "--no-scan")
    assert [(r["tag"], r["nonpaged_bytes"], r["paged_bytes"], r["owner"]) for r in record["top"]] == [
        ("NDnd", 0x9000, 0, "ndis.sys"), ("ObNm", 0, 0x4000, "nt!ob"), ("Filt", 0x180, 0, ""),
        ("Nnbl", 0, 0, "netio.sys")]
    assert record["tags_in_use"] == 4


def test_text_output_is_pool_shaped(capsys, zoo):
    code = cli.main(["pooltag", zoo.dump_path, "ffffc08be1000070", "--symbols", zoo.symstore_path, "--no-scan",
                     "-v"])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Pool page ffffc08b`e1000000 (pool page walk)"
    assert lines[2] == "*ffffc08b`e1000060 size:   80 previous size:   60  (Allocated) *Filt"
    assert "  ffffc08b`e1000060  06 00 08 02 46 69 6c 74 00 00 00 00 00 00 00 00" in lines


def test_bytes_read_for_one_address_stay_under_budget(zoo):
    from pytriage.analysis.pool.locate import find_allocation
    from pytriage.symbols.symbolizer import Symbolizer
    from pytriage.target.offline import OfflineDumpTarget

    target = OfflineDumpTarget.open(zoo.dump_path)
    try:
        symbolizer = Symbolizer(target, isf_dirs=[zoo.symbols_path])
        symbolizer.address_of("nt!PoolBigPageTable")       # symbol loading is not the command's cost
        target.module_at(0)
        before = target.stats.bytes_read
        report = find_allocation(target, symbolizer, PAGE_A + 0x70)
        assert report.allocation.tag_text == "Filt"
        assert target.stats.bytes_read - before <= 16 * 1024
    finally:
        target.close()


def test_bad_addresses_are_one_line_errors(capsys, zoo):
    code = cli.main(["pooltag", zoo.dump_path, "1000"])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip().endswith("is not a kernel address: pool lives in kernel space "
                                              "(ffff8000`00000000 and up)")
    record = pooltag(capsys, zoo, "ffffc08bef000000", "--no-scan")          # never mapped
    assert record["allocation"] is None
    assert record["notes"][-1].startswith("ffffc08b`ef000000 is not in the dump")
    code = cli.main(["pooltag", zoo.dump_path, "-t", "TOOLONG"])
    _, err = capsys.readouterr()
    assert code == 2 and "not a pool tag" in err
