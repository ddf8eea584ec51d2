"""NBL layouts from a real PDB (clang-built from the WDK declarations) and the walk's bounds on hostile chains."""

import struct
import time

import pytest

from pytriage.analysis.memory_owner import MemoryOwnerFinder
from pytriage.analysis.nbl.layouts import NblLayouts
from pytriage.analysis.nbl.walk import DEFAULT_MAX_NBLS, NblWalker, WalkOptions
from pytriage.errors import MemoryReadError, SymbolError
from pytriage.symbols.builtin import builtin_layouts
from pytriage.symbols.pdb import open_pdb
from pytriage.symbols.types import StructLayout
from pytriage.target.base import Target
from tests.symbols import pdbtools


class PdbSymbolizer:
    """type_layout("ndis!T") from one PDB; any other module has no symbols."""

    def __init__(self, pdb, drop=()):
        self.pdb = pdb
        self.drop = drop

    def type_layout(self, name):
        module, _, type_name = name.partition("!")
        layout = self.pdb.type_layout(type_name) if module in ("ndis", "nt") else None
        if layout is None:
            raise SymbolError("no %s" % name)
        if isinstance(layout, StructLayout) and self.drop:
            layout = StructLayout(layout.name, layout.kind, layout.size,
                                  tuple(f for f in layout.fields if f.name not in self.drop), layout.source)
        return layout, "ndis (%s)" % layout.source


@pytest.fixture(scope="module")
def pdb(tmp_path_factory):
    path = pdbtools.clang_fixture(tmp_path_factory, "full")[0]
    with open_pdb(path) as opened:
        yield opened


@pytest.mark.parametrize("name", ["_NET_BUFFER_LIST", "_NET_BUFFER", "_MDL", "_NET_BUFFER_LIST_CONTEXT"])
def test_pdb_layouts_equal_the_builtin_ones(pdb, name):
    """The walk reads the same offsets from a PDB compiled from the WDK headers as from its own table."""
    layouts = NblLayouts(PdbSymbolizer(pdb))
    from_pdb = layouts[name]
    assert from_pdb.source == "ndis (pdb:full.pdb)"
    table = builtin_layouts().type_layout(name)
    for field, spot in from_pdb.fields.items():
        member = table.field(field)
        assert spot.offset == member.offset, field
    assert layouts.notes == []


def test_a_pdb_layout_missing_a_field_falls_back_to_builtin_with_a_note(pdb):
    layouts = NblLayouts(PdbSymbolizer(pdb, drop=("SourceHandle",)))
    layout = layouts["_NET_BUFFER_LIST"]
    assert layout.source.startswith("builtin:documented")
    assert layout.offset("SourceHandle") == 0x78
    assert layouts.notes == ["_NET_BUFFER_LIST from ndis (pdb:full.pdb) lacks a field the walk reads; using the "
                             "built-in layout"]


class ChainTarget(Target):
    """A synthetic kernel holding a chain of ``count`` NBLs, 0x200 apart, each with no NET_BUFFER; pages are
    made when read, so a million-NBL chain costs nothing until walked."""

    BASE = 0xFFFFA00000000000

    def __init__(self, count, loop_to=None):
        super().__init__()
        self.count = count
        self.loop_to = loop_to

    def _read_backend(self, va, size):
        if not self.BASE <= va < self.BASE + self.count * 0x200:
            raise MemoryReadError(va, "not in the synthetic chain")
        out = bytearray()
        for page in range(va & ~0xFFF, va + size, 0x1000):
            data = bytearray(0x1000)
            for at in range(0, 0x1000, 0x200):
                index = (page + at - self.BASE) // 0x200
                nxt = self.BASE + (index + 1) * 0x200 if index + 1 < self.count else (
                    self.BASE + self.loop_to * 0x200 if self.loop_to is not None else 0)
                struct.pack_into("<Q", data, at, nxt)
            out += data
        start = va & 0xFFF
        return bytes(out[start:start + size])

    def modules(self):
        return []


class NoSymbols:
    """A symbolizer with no symbols at all: every name lookup fails, addresses print as numbers."""

    def type_layout(self, name):
        raise SymbolError("no symbols")

    def address_of(self, name):
        raise SymbolError("no symbols for %s" % name)

    def format(self, address):
        return "%x" % address


def walker(target, **options):
    finder = MemoryOwnerFinder(target, NoSymbols(), lambda tag: [], None)
    return NblWalker(target, NblLayouts(NoSymbols()), finder, WalkOptions(owners=False, **options))


def test_a_million_nbl_chain_stops_at_the_default_max():
    target = ChainTarget(10 ** 6)
    started = time.perf_counter()
    result = walker(target).walk(ChainTarget.BASE)
    assert time.perf_counter() - started < 60          # bounded, not a benchmark: the limit is what is tested
    assert len(result.nbls) == DEFAULT_MAX_NBLS and not result.complete
    assert result.stop == "stopped after 1000 NBLs (--max 1000); the chain goes on at ffffa000`0007d000"
    assert all(n.notes[0].startswith("FirstNetBuffer is NULL") for n in result.nbls)
    assert target.stats.bytes_read <= (DEFAULT_MAX_NBLS // 8 + 1) * 0x1000     # one page per 8 NBLs


def test_a_long_cycle_is_found_where_it_closes():
    result = walker(ChainTarget(5000, loop_to=1234), max_nbls=10 ** 6).walk(ChainTarget.BASE)
    assert len(result.nbls) == 5000 and not result.complete
    assert result.stop == "cycle: NBL #4999's Next points back to NBL #1234 (ffffa000`0009a400)"


def test_the_chain_running_off_mapped_memory_ends_with_the_reason():
    result = walker(ChainTarget(3, loop_to=10 ** 5)).walk(ChainTarget.BASE)
    assert len(result.nbls) == 4 and result.nbls[-1].error.startswith("ffffa000`030d4000 is not in the dump")


def test_net_buffer_and_mdl_chains_that_loop_are_cut_with_a_note():
    """An NBL whose NET_BUFFER points to itself, whose MDL points to itself: one of each, and the notes."""
    from pytriage.target.fake import FakeTarget

    nbl, nb, mdl = 0xFFFFA00000001000, 0xFFFFA00000001200, 0xFFFFA00000001300
    memory = bytearray(0x400)
    struct.pack_into("<QQ", memory, 0, 0, nb)                                  # Next NULL, FirstNetBuffer
    struct.pack_into("<QQQQQQ", memory, 0x200, nb, mdl, 0, 4, mdl, 0)          # NB: Next = itself, DataLength 4
    struct.pack_into("<QHHI QQQII", memory, 0x300, mdl, 0x38, 0x4, 0, 0, mdl + 0x40, mdl & ~0xFFF, 2, 0x340)
    memory[0x340:0x344] = b"\x45\x00\x00\x14"
    target = FakeTarget({nbl: bytes(memory)})
    result = walker(target, max_nbls=10).walk(nbl)
    (info,) = result.nbls
    assert info.notes == ["the NET_BUFFER chain loops back to ffffa000`00001200"]
    (buffer,) = info.net_buffers
    assert [m.address for m in buffer.mdls] == [mdl]
    assert buffer.notes[0] == "the MDL chain loops back to ffffa000`00001300"
    assert buffer.packet.data == b"\x45\x00" and buffer.packet.length == 4     # the MDL holds 2 bytes of 4
    assert buffer.packet.gap.startswith("the MDL chain ends after 0x2 of 0x4 bytes")


def test_random_memory_never_breaks_the_walk():
    """Hostile bytes everywhere the walk looks (pointers into the same random page): a result, never an error."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pytriage.target.fake import FakeTarget

    base = 0xFFFFA00000002000

    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    @given(st.binary(min_size=0x200, max_size=0x200), st.lists(st.integers(0, 0xFF8), min_size=8, max_size=8))
    def check(chunk, offsets):
        page = bytearray(chunk * 8)                                             # one random page, 0x200 repeated
        for at, target_offset in zip((0x0, 0x8, 0x10, 0x20, 0x100, 0x108, 0x120, 0x200), offsets):
            struct.pack_into("<Q", page, at, base + (target_offset & ~7))      # pointers back into the page
        result = walker(FakeTarget({base: bytes(page)}), max_nbls=50, dot11="always").walk(base)
        assert 1 <= len(result.nbls) <= 50 and result.stop
        for nbl in result.nbls:
            for nb in nbl.net_buffers:
                assert nb.packet is None or len(nb.packet.data) <= 0x40000
                assert nb.summary is None or "\n" not in nb.summary.text

    check()
