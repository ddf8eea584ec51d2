"""Pool: the image scan with generated names, the real corpus dump, and hostile pages."""

import copy
import json
import lzma
import os
import random
import string
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytriage import cli
from pytriage.analysis.pool.header import PAGE
from pytriage.analysis.pool.locate import find_allocation
from pytriage.analysis.pool.page_walk import walk_page
from pytriage.analysis.pool.segment_heap import nearest_header
from pytriage.analysis.pool.special_pool import special_pool_page
from pytriage.target.fake import FakeTarget
from tests.conftest import CORPUS

POOLTAG_TXT = os.path.join(CORPUS, "pooltag.txt")
ISF = os.path.join(CORPUS, "symbols", "ntkrnlmp.pdb-5278AFF86C341677D7D7835C85B7B844-1.json.xz")


def _zoo_doc():
    from pytriage.scenarios import builtin_path
    with open(builtin_path("pool-zoo"), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scan_finds_a_generated_driver_and_tag_at_the_exact_offset(tmp_path, capsys, seed):
    """Driver name, tag, function offset and decoy placement come from the seed, not from the seed case."""
    from pytriage.scenarios.builder import build_scenario
    from pytriage.scenarios.spec import parse_spec

    rng = random.Random(seed)
    tag = "".join(rng.choice(string.ascii_letters) for _ in range(4))
    tag_hex = tag.encode("ascii").hex()
    driver = "".join(rng.choice(string.ascii_lowercase) for _ in range(7)) + ".sys"
    pad = rng.randrange(1, 40)                              # nops before the allocation call's setup
    doc = copy.deepcopy(_zoo_doc())
    owner = doc["modules"][1]
    owner["name"] = driver
    owner["path"] = "\\SystemRoot\\System32\\drivers\\" + driver
    call_at = 0x1000 + 4 + pad + 5 + 5 + 6 + 6              # next ip after the call
    owner["functions"] = [{"name": "AllocThing", "rva": "0x1000", "unwind": "01040100 0442 0000",
                           "hex": "4883ec28" + "90" * pad + "b900020000 ba80000000 41b8" + tag_hex + " ff15"
                                  + struct.pack("<i", 0x2000 - call_at).hex() + "4883c428 c3"}]
    decoy = doc["modules"][2]
    decoy["functions"][0]["hex"] = "488d05" + tag_hex + " c3 " + tag_hex + "6572 0000 cccc"
    doc["memory"][2] = {"va": "0xfffff80476002000", "hex": tag_hex}
    doc["pool"]["pages"][0]["blocks"][1]["tag"] = tag
    built = build_scenario(parse_spec(doc), str(tmp_path), "bitmap")
    code = cli.main(["pooltag", built.dump_path, "-t", tag, "--scan", "--json", "--symbols", built.symstore_path])
    out, err = capsys.readouterr()
    assert code == 0, err
    uses = json.loads(out)["scan"]["uses"]
    stem = driver[:-4]
    assert [(u["image"], int(u["rva"], 16), u["symbol"], u["call"]) for u in uses] == [
        (driver, 0x1000 + 4 + pad + 10, "%s!AllocThing+0x%x" % (stem, 4 + pad + 10), "nt!ExAllocatePoolWithTag")]
    # and !pooltag on the block with that tag names the generated driver
    code = cli.main(["pooltag", built.dump_path, "ffffc08be1000070", "--json", "--symbols", built.symstore_path])
    out, _ = capsys.readouterr()
    record = json.loads(out)
    assert record["allocation"]["tag"] == tag
    assert [o["binary"] for o in record["owners"] if o["source"] == "image scan"] == [driver]


# -- the real corpus dump -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool_header_layout():
    with lzma.open(ISF) as fh:
        fields = json.load(fh)["user_types"]["_POOL_HEADER"]["fields"]
    return fields


def _isf_decode(raw, fields):
    """Decode a header with the corpus ISF's offsets and bit positions (independent of our decoder)."""
    def field(name):
        f = fields[name]
        t = f["type"]
        if t["kind"] == "bitfield":
            word = struct.unpack_from("<H", raw, f["offset"])[0]
            return (word >> t["bit_position"]) & ((1 << t["bit_length"]) - 1)
        return struct.unpack_from("<I", raw, f["offset"])[0]
    return field("BlockSize") * 16, field("PoolType"), struct.pack("<I", field("PoolTag")).decode("latin-1")


@pytest.mark.parametrize("header, inside, tag, binary", [
    (0xFFFFC08BE52FCD90, 0x30, "NDst", "ndis.sys"),        # an NDIS string in nonpaged pool
    (0xFFFFC08BE4AFE9C0, 0x10, "NDch", "ndis.sys"),        # an NDIS configuration handle
    (0xFFFFAD0EC10B2B60, 0x10, "CMpi", "nt!cm"),           # paged pool, LFH-packed 0x20 blocks
])
def test_real_pool_headers_decode_with_real_tags(capsys, triage_dump_path, pool_header_layout, header, inside, tag,
                                                 binary):
    from pytriage.dump import open_dump
    with open_dump(triage_dump_path) as dump:
        raw = dump.read_virtual(header, 16)
    size, pool_type, isf_tag = _isf_decode(raw, pool_header_layout)
    code = cli.main(["pooltag", triage_dump_path, "%x" % (header + inside), "--no-scan", "--json", "--symbols",
                     os.path.join(CORPUS, "symbols"), "--pooltag", POOLTAG_TXT])
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(out)
    a = record["allocation"]
    assert (int(a["start"], 16), a["size"], a["tag"], a["header"]["pool_type"]) == (header, size, isf_tag, pool_type)
    assert isf_tag == tag and a["best_effort"] is True and record["kind"] == "nearest-header"
    assert a["how"] == "nearest pool header below the address (only part of the page is in this triage dump)"
    assert record["owners"][0]["binary"] == binary
    assert record["header_layout"].startswith("_POOL_HEADER checked against nt (")
    if tag == "CMpi":
        assert record["evidence"] == ["the next header of the same size follows directly at ffffad0e`c10b2b80 "
                                      "(tag Ppsu): LFH-style packing"]


def test_real_dump_says_why_an_address_cannot_be_decoded(capsys, triage_dump_path):
    code = cli.main(["pooltag", triage_dump_path, "ffffc08b00001000", "--no-scan", "--json", "--symbols",
                     os.path.join(CORPUS, "symbols")])
    out, _ = capsys.readouterr()
    record = json.loads(out)
    assert code == 0 and record["allocation"] is None
    assert record["notes"] == [
        "nt!PoolBigPageTable is not in the dump (cannot read address fffff804`7c619100: not saved in this triage "
        "dump)",
        "ffffc08b`00001000 is not in this triage dump: a triage dump saves only 1832 small blocks of memory (the "
        "crash's stack and a few bytes around addresses it referenced), so the pool around it is gone. Nearest "
        "saved bytes: ffffad0e`c305fc00-ffffad0e`c305fcff, ffffc08b`dce00000-ffffc08b`dce000ff"]


# -- hostile pages ----------------------------------------------------------------------------------------
POOL_VA = 0xFFFFC08BE0000000


@pytest.mark.parametrize("page", [bytes(PAGE), b"\xff" * PAGE, b"\x4f" * PAGE])
def test_hostile_fixed_pages(page):
    walk = walk_page(page, POOL_VA)
    assert walk.blocks == [] and len(walk.breaks) == 1 and walk.damaged == [(POOL_VA, POOL_VA + PAGE)]
    assert special_pool_page(page, POOL_VA, lambda: True) is None
    target = FakeTarget({POOL_VA: page})
    report = find_allocation(target, _NoSymbols(), POOL_VA + 0x800)
    assert report.allocation is None


class _NoSymbols:
    def type_layout(self, name):
        from pytriage.errors import SymbolError
        raise SymbolError("no symbols")

    def address_of(self, name):
        from pytriage.errors import SymbolError
        raise SymbolError("no symbol %s" % name)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(page=st.binary(min_size=PAGE, max_size=PAGE), offset=st.integers(0, PAGE - 1),
       build=st.sampled_from([17763, 19041]))
def test_random_pages_never_raise_or_hang(page, offset, build):
    walk = walk_page(page, POOL_VA)
    assert sum(b.size for b in walk.blocks) <= PAGE
    special_pool_page(page, POOL_VA, lambda: True)
    target = FakeTarget({POOL_VA: page})
    target.os_build = build
    report = find_allocation(target, _NoSymbols(), POOL_VA + offset)
    if report.allocation is not None:
        a = report.allocation
        assert a.start <= POOL_VA + offset or report.kind == "special"
    nearest_header(target, POOL_VA + offset)


@settings(max_examples=200, deadline=None)
@given(blocks=st.lists(st.tuples(st.integers(1, 0x20), st.sampled_from([0, 2, 3])), min_size=1, max_size=12),
       noise=st.binary(min_size=16, max_size=16), where=st.integers(0, 11))
def test_valid_chains_walk_exactly_and_one_damaged_header_is_found(blocks, noise, where):
    page = bytearray(PAGE)
    offset, previous, starts = 0, 0, []
    for units, pool_type in blocks:
        size = units * 16
        if offset + size > PAGE - 16:
            break
        struct.pack_into("<BBBB4s", page, offset, previous, 0, units, pool_type, b"Tg%02d" % (len(starts) % 100))
        starts.append(offset)
        previous, offset = units, offset + size
    struct.pack_into("<BBBB4s", page, offset, previous, 0, (PAGE - offset) // 16, 0, b"Free")
    starts.append(offset)
    walk = walk_page(bytes(page), POOL_VA)
    assert walk.intact and [b.start - POOL_VA for b in walk.blocks] == starts
    victim = starts[where % len(starts)]
    damaged = bytearray(page)
    damaged[victim:victim + 16] = noise
    walk = walk_page(bytes(damaged), POOL_VA)
    if not walk.breaks:          # the noise happened to be a valid header in the right place
        return
    assert walk.breaks[0].header_va - POOL_VA <= victim + 16 * 0x100
