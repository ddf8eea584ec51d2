"""Scenario dumps read back exactly what the builder wrote, and kdmp-parser (independent C++ reader)
sees the same physical pages, translations and registers."""

import random

import kdmp_parser
import pytest

from pytriage.dump import open_dump
from pytriage.errors import MemoryReadError

FOUR_GB = 1 << 32


@pytest.fixture(scope="module", params=["full", "bitmap"])
def built(request, basic_full, basic_bitmap):
    return basic_full if request.param == "full" else basic_bitmap


def _sample_vas(built, count=600, seed=7):
    """Addresses in every kind of mapping: 4 KB pages, the 2 MB and 1 GB pages, page and region edges."""
    rng = random.Random(seed)
    pages = sorted(built.space.mapped)
    vas = [rng.choice(pages) + rng.randrange(0, 0x1000) for _ in range(count // 2)]
    vas += [p + 0xFF8 for p in pages[:: max(1, len(pages) // 40)]]          # reads crossing a page end
    for region in built.spec.regions:
        vas += [region.va, region.va + max(0, len(region.data) - 8)]
    for va, _pa, size in built.space.large:
        vas += [va + off for off in (0, 0x10, 0x1000 - 4, size // 2 if size == 1 << 21 else 0x1ff0000)]
    return vas


def test_hundreds_of_virtual_reads_return_the_builders_bytes(built):
    vas = _sample_vas(built)
    assert len(vas) >= 300
    with open_dump(built.dump_path) as dump:
        compared = 0
        for va in vas:
            for size in (1, 8, 64):
                want = built.expected(va, size)
                if want is None:
                    with pytest.raises(MemoryReadError):
                        dump.read_virtual(va, size)
                else:
                    assert dump.read_virtual(va, size) == want, hex(va)
                    compared += 1
        assert compared >= 600


def test_above_4gb_and_large_pages(built):
    """Data placed above the >4 GB physical gap, through a 1 GB page and through a 2 MB page."""
    with open_dump(built.dump_path) as dump:
        region_1g = built.spec.regions[2]
        assert dump.translate(region_1g.va) >= FOUR_GB
        assert dump.read_virtual(region_1g.va, 6) == "562".encode("utf-16-le")
        region_2m = built.spec.regions[1]
        assert dump.translate(region_2m.va) == 0x4000000 + 0x10
        assert dump.read_virtual(region_2m.va, 16) == b"O" * 16
        # pool data is allocated from the top of memory: above 4 GB too
        assert dump.translate(built.spec.regions[0].va) >= FOUR_GB
        # inside the 1 GB page but beyond the physical run: not in the dump, and said so
        with pytest.raises(MemoryReadError) as err:
            dump.read_virtual(0xFFFFD00000000000 + (512 << 20), 8)
        assert "not present" in str(err.value)
        # inside the gap between 128 MB and 4 GB: no physical page there
        with pytest.raises(MemoryReadError):
            dump.read_physical(0x80000000, 8)


def test_kdmp_parser_sees_the_same_pages_translations_and_registers(built):
    oracle = kdmp_parser.KernelDumpParser(built.dump_path)
    with open_dump(built.dump_path) as dump:
        assert int(oracle.type) == dump.header.dump_type
        assert oracle.directory_table_base == dump.header.directory_table_base & ~0xFFF
        ctx = dump.context_record()
        for ours, theirs in (("rip", "Rip"), ("rsp", "Rsp"), ("rax", "Rax"), ("rcx", "Rcx"), ("r15", "R15")):
            assert ctx[ours] == getattr(oracle.context, theirs)
        assert ctx["rflags"] == oracle.context.EFlags and ctx["mxcsr"] == oracle.context.MxCsr
        bug = oracle.header.BugCheckCode, list(oracle.header.BugCheckCodeParameter)
        assert bug == (dump.bugcheck()[0], list(dump.bugcheck()[1]))
        # every physical page the builder stored: identical bytes
        pfns = sorted(set(built.phys.pages) | built.phys.zero_present)
        stored = [p for p in pfns if built.phys.in_runs(p) and p not in built.phys.absent]
        assert len(stored) > 300
        for pfn in stored:
            page = oracle.read_physical_page(pfn * 0x1000)
            assert page is not None, hex(pfn)
            assert bytes(page) == dump.read_physical(pfn * 0x1000, 0x1000), hex(pfn)
        # the same virtual -> physical translations (4 KB, 2 MB and 1 GB mappings)
        for va in _sample_vas(built, 200, seed=11):
            try:
                ours = dump.translate(va)
            except MemoryReadError:
                continue
            assert oracle.translate_virtual(va) == ours, hex(va)


def test_full_dump_pages_between_stored_ones_are_zero(basic_full):
    """A full dump holds every page of every run: untouched pages read as zeros in both readers."""
    oracle = kdmp_parser.KernelDumpParser(basic_full.dump_path)
    with open_dump(basic_full.dump_path) as dump:
        untouched = [pa for pa in (0x9D000, 0x7FFF000, FOUR_GB + (16 << 20))
                     if pa // 0x1000 not in basic_full.phys.pages]
        assert len(untouched) == 3
        for pa in untouched:
            assert dump.read_physical(pa, 0x1000) == bytes(0x1000) == bytes(oracle.read_physical_page(pa))
        assert dump.physical.page_count() == sum(r.pages for r in basic_full.spec.runs)
