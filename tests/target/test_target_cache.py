"""The Target base class: page cache, read statistics, partial pages and module lookup.

On a live KDNET target every backend call is a round trip, so what these tests pin down (one backend
call per page, failures remembered, exact byte counts) is what `--stats` reports to the user.
"""

import pytest

from pytriage.errors import MemoryReadError
from pytriage.target.fake import FakeTarget
from pytriage.target.model import make_module
from pytriage.target.offline import OfflineDumpTarget

BASE = 0xFFFFC08BE0100000


def _target(cache_pages=2048):
    page0 = bytes(range(256)) * 16
    page1 = b"\x11" * 0x1000
    t = FakeTarget(memory={BASE: page0 + page1, BASE + 0x3000: b"\x22" * 0x20})
    t._cache_pages = cache_pages
    return t


def test_reads_are_page_granular_and_cached():
    t = _target()
    assert t.read(BASE + 0x10, 4) == bytes([0x10, 0x11, 0x12, 0x13])
    assert t.read_u32(BASE + 0x20) == 0x23222120
    assert (t.stats.read_calls, t.stats.bytes_read, t.stats.cache_hits) == (1, 0x1000, 1)
    # across the page boundary: one more page fetched
    assert t.read(BASE + 0xFFE, 4) == b"\xfe\xff\x11\x11"
    assert (t.stats.read_calls, t.stats.bytes_read, t.stats.cache_hits) == (2, 0x2000, 2)


def test_partial_page_reads_exact_range_and_names_the_bad_byte():
    t = _target()
    assert t.read(BASE + 0x3000, 0x20) == b"\x22" * 0x20
    with pytest.raises(MemoryReadError) as exc:
        t.read(BASE + 0x3010, 0x20)
    assert exc.value.address == BASE + 0x3020
    assert "ffffc08b`e0103020" in str(exc.value)
    assert t.stats.failed_reads == 2          # the page read, then the exact read past the block
    assert not t.is_valid(BASE + 0x5000)


def test_cache_is_bounded_lru():
    t = _target(cache_pages=1)
    t.read(BASE, 1)
    t.read(BASE + 0x1000, 1)
    t.read(BASE, 1)
    assert t.stats.read_calls == 3 and t.stats.cache_hits == 0


def test_module_lookup():
    mods = [make_module("\\SystemRoot\\system32\\ntoskrnl.exe", 0xFFFFF80470000000, 0x100000, 1, 2, 0),
            make_module("\\SystemRoot\\System32\\drivers\\contosolwf.sys", 0xFFFFF80475000000, 0x8000, 3, 4, 1)]
    t = FakeTarget(modules=mods)
    assert t.module_at(0xFFFFF80475001029).debugger_name == "contosolwf"
    assert t.module_at(0xFFFFF80475008000) is None
    assert t.module_by_name("NT").name == "ntoskrnl.exe"
    assert t.module_by_name("contosolwf.sys").base == 0xFFFFF80475000000


def test_offline_target_counts_physical_and_virtual_reads(basic_full):
    t = OfflineDumpTarget.open(basic_full.dump_path)
    try:
        kernel = basic_full.spec.kernel.base
        assert t.read(kernel, 2) == b"MZ"
        pa = basic_full.space.translate(kernel)
        assert t.read_physical(pa, 2) == b"MZ"
        assert t.stats.read_calls == 2 and t.stats.bytes_read == 0x1000 + 2
        assert t.module_at(kernel + 0x1000).debugger_name == "nt"
    finally:
        t.close()
