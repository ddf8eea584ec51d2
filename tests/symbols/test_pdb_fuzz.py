"""A hostile PDB never crashes, hangs or leaks a low-level exception: every API works or raises one-line
``SymbolError``s.

Two halves: hypothesis mutates a small clang-built PDB (truncation, flipped bytes, u32 fields overwritten
with boundary values, aimed at the bytes of real streams as well as anywhere in the file) and runs every
API on the result under a watchdog; hand-made cases then build the specific hostile structures the reader
must survive (directory blocks past the file, huge stream sizes, self-referencing type records, pointer
cycles, LF_INDEX loops, symbol offsets past their stream).
"""

import os
import signal
import struct
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytriage.errors import SymbolError
from pytriage.symbols.pdb import open_pdb
from pytriage.symbols.pdb.tpi import MAX_DEPTH
from tests.symbols import pdbtools

WATCHDOG_SECONDS = 10
SAFETY_NET = "malformed PDB ("          # the reader's last-resort wrapper; decoders should say more than that
BOUNDARY_U32 = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0xFFF, 0x1000, 0x1001, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


class Hang(Exception):
    pass


@contextmanager
def watchdog(seconds):
    def expired(signum, frame):
        raise Hang("no answer within %d s" % seconds)
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = pdbtools.clang_fixture(tmp_path_factory, "small")[0]
    with open(path, "rb") as fh:
        return path, fh.read(), pdbtools.stream_map(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pdb-fuzz"))


def exercise(path):
    """Every public API of the reader; returns the SymbolErrors raised (anything else propagates)."""
    errors = []

    def attempt(call, *args):
        try:
            return call(*args)
        except SymbolError as exc:
            errors.append(exc)
            return None

    with watchdog(WATCHDOG_SECONDS):
        try:
            pdb = open_pdb(path)
        except SymbolError as exc:
            return [exc]
        try:
            _ = (pdb.guid, pdb.age, pdb.info_age, pdb.signature, pdb.machine, pdb.named_streams, repr(pdb))
            attempt(lambda: pdb.sections)
            for name in ("_ITEM", "ITEM", "_LIST_ENTRY", "Mode", "Opaque", "NoSuch", "x#0x1005", ".?AUx@@"):
                layout = attempt(pdb.type_layout, name)
                for field in getattr(layout, "fields", ()):
                    ref = field.type
                    while ref is not None:
                        if ref.kind in ("struct", "union", "class", "enum"):
                            attempt(pdb.type_layout, ref.name)
                        ref = ref.target
            names = attempt(pdb.type_names) or []
            for name in names[:20]:
                attempt(pdb.type_layout, name)
            for index in range(0x1000, 0x1030):
                attempt(pdb.type_layout_at, index)
            for name in ("g_item", "GetFlags", "GetKind", "NoSuch"):
                attempt(pdb.symbol_rva, name)
            for rva in (0, 0x1000, 0x1010, 0x2000, 0x3000, 0xFFFFFFFF):
                attempt(pdb.nearest_symbol, rva)
            attempt(lambda: list(pdb.symbols()))
            attempt(pdb.publics)
            attempt(pdb.rva_of, 1, 0x10)
        finally:
            pdb.close()
    return errors


def check_errors(errors, path):
    for exc in errors:
        message = str(exc)
        assert "\n" not in message and path in message, message
        assert SAFETY_NET not in message, "a decoder let a low-level error through: %s" % message


def write(workdir, name, data):
    path = os.path.join(workdir, name)
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    return path


def test_pristine_small_pdb_has_no_errors(small):
    path, _, _ = small
    assert exercise(path) == []
    with open_pdb(path) as pdb:
        item = pdb.type_layout("_ITEM")
        assert [f.name for f in item.fields] == ["Links", "Flags", "Kind", "cv", "name", "i", "f", "u", "mode",
                                                 "opaque", "next"]


# -- hypothesis ----------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_truncated(small, workdir, data):
    path, raw, _ = small
    cut = data.draw(st.integers(0, len(raw) - 1))
    truncated = bytearray(raw[:cut])
    if cut >= 56 and data.draw(st.booleans()):
        # Also make the superblock agree with the shorter file, so the reader gets past its first check
        # and meets directory or stream blocks that are no longer there.
        struct.pack_into("<I", truncated, 40, cut // struct.unpack_from("<I", raw, 32)[0])
    target = write(workdir, "truncated.pdb", truncated)
    errors = exercise(target)
    assert errors, "a truncated PDB (%d of %d bytes) must be reported" % (cut, len(raw))
    check_errors(errors, target)


def _stream_offsets(mapping, data):
    """A file offset inside a real stream (stream chosen first, so small streams get hit too)."""
    streams = [i for i, size in enumerate(mapping.sizes) if size not in (0, 0xFFFFFFFF)]
    stream = data.draw(st.sampled_from(streams))
    offset = data.draw(st.integers(0, mapping.sizes[stream] - 1))
    return mapping.file_offset(stream, offset)


@FUZZ
@given(data=st.data())
def test_flipped_bytes(small, workdir, data):
    path, raw, mapping = small
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        if data.draw(st.booleans()):
            at = _stream_offsets(mapping, data)
        else:
            at = data.draw(st.integers(0, len(raw) - 1))
        mutated[at] ^= data.draw(st.integers(1, 255))
    target = write(workdir, "flipped.pdb", mutated)
    check_errors(exercise(target), target)


@FUZZ
@given(data=st.data())
def test_overwritten_u32_fields(small, workdir, data):
    path, raw, mapping = small
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        choice = data.draw(st.integers(0, 2))
        if choice == 0:      # the superblock and the stream directory
            at = data.draw(st.sampled_from(range(32, 56, 4)))
        elif choice == 1:
            at = _stream_offsets(mapping, data) & ~3
        else:
            at = data.draw(st.integers(0, len(raw) - 4)) & ~3
        value = data.draw(st.one_of(st.sampled_from(BOUNDARY_U32), st.integers(0, 0xFFFFFFFF)))
        if at + 4 <= len(mutated):
            struct.pack_into("<I", mutated, at, value)
    target = write(workdir, "u32.pdb", mutated)
    check_errors(exercise(target), target)


# -- hand-made hostile files ---------------------------------------------------------------------------------

def _error_of(path, call):
    with pytest.raises(SymbolError) as info:
        with watchdog(WATCHDOG_SECONDS):
            call(path)
    message = str(info.value)
    assert "\n" not in message and path in message and SAFETY_NET not in message, message
    return message


def test_not_a_pdb(workdir, tmp_path):
    assert "cannot open" in _error_of(str(tmp_path / "missing.pdb"), open_pdb)
    assert "cannot open" in _error_of(str(tmp_path), open_pdb)                 # a directory
    assert "too short" in _error_of(write(workdir, "empty.pdb", b""), open_pdb)
    assert "not a PDB" in _error_of(write(workdir, "zeros.pdb", bytes(8192)), open_pdb)
    old = b"Microsoft C/C++ program database 2.00\r\n\x1aJG\0\0" + bytes(8192)
    assert "PDB 2.00" in _error_of(write(workdir, "old.pdb", old), open_pdb)


def _superblock(raw):
    return list(struct.unpack_from("<6I", raw, 32))   # BlockSize, FPM, NumBlocks, DirBytes, Unknown, BlockMapAddr


def test_bad_superblock_fields(small, workdir):
    _, raw, _ = small
    cases = {0: (1000, "block size 1000"), 2: (0x7FFFFFFF, "truncated"), 3: (0xFFFFFFF0, "directory size"),
             5: (0xFFFFFF, "block map address"), 1: (7, "free block map")}
    for index, (value, expected) in cases.items():
        mutated = bytearray(raw)
        struct.pack_into("<I", mutated, 32 + 4 * index, value)
        assert expected in _error_of(write(workdir, "sb%d.pdb" % index, mutated), open_pdb)


def test_directory_pointing_past_the_file(small, workdir):
    _, raw, _ = small
    block_size, _, num_blocks, _, _, block_map = _superblock(raw)
    mutated = bytearray(raw)
    struct.pack_into("<I", mutated, block_map * block_size, num_blocks + 5)      # first directory block
    assert "stream directory block" in _error_of(write(workdir, "dirblock.pdb", mutated), open_pdb)


def _directory(raw):
    """(file offset of the directory, its bytes) for a directory of one block (the small fixture's)."""
    block_size, _, _, dir_bytes, _, block_map = _superblock(raw)
    first = struct.unpack_from("<I", raw, block_map * block_size)[0]
    assert dir_bytes <= block_size
    return first * block_size, raw[first * block_size:first * block_size + dir_bytes]


def test_huge_stream_sizes_and_block_numbers(small, workdir):
    _, raw, _ = small
    at, directory = _directory(raw)
    count = struct.unpack_from("<I", directory, 0)[0]
    mutated = bytearray(raw)
    struct.pack_into("<I", mutated, at + 4 + 4 * 2, 0xFFFFFFF0)                  # TPI stream size
    assert "too short for the block lists" in _error_of(write(workdir, "huge.pdb", mutated), open_pdb)
    mutated = bytearray(raw)
    struct.pack_into("<I", mutated, at, 0x40000000)                               # number of streams
    assert "streams but has only" in _error_of(write(workdir, "count.pdb", mutated), open_pdb)
    mutated = bytearray(raw)
    struct.pack_into("<I", mutated, at + 4 + 4 * count, 0xFFFFFF)                 # stream 0's first block
    assert "uses block" in _error_of(write(workdir, "block.pdb", mutated), open_pdb)


def _types(path):
    """type index -> (record offset, kind, payload) of every record of the pristine PDB, and the header size."""
    with open_pdb(path) as pdb:
        table = pdb._type_table()
        records = {}
        for ti in range(table.begin, table.end):
            kind, payload = table.record(ti)
            records[ti] = (table._offset(ti), kind, payload)
        return records, table._header_size


def _patch_type(small, workdir, name, edit):
    """Apply ``edit(records, header_size, mutated, mapping)`` to a copy of the small PDB."""
    path, raw, mapping = small
    records, header = _types(path)
    mutated = bytearray(raw)
    edit(records, header, mutated, mapping)
    return write(workdir, name, mutated)


def _find(records, kind, predicate=lambda payload: True):
    return next(ti for ti, (_, k, payload) in records.items() if k == kind and predicate(payload))


def test_struct_containing_itself_by_value(small, workdir):
    """A field list member whose type is the struct it belongs to: no recursion, the field names it."""
    def edit(records, header, mutated, mapping):
        item = _find(records, 0x1505, lambda p: b"_ITEM\0" in p and not struct.unpack_from("<H", p, 2)[0] & 0x80)
        field_list = struct.unpack_from("<I", records[item][2], 4)[0]
        offset, _, payload = records[field_list]
        member_type_at = payload.index(b"Links\0") - 2 - 4      # LF_MEMBER: ... type u32, offset (2), name
        mapping.patch(mutated, 2, header + offset + 4 + member_type_at, struct.pack("<I", item))
    target = _patch_type(small, workdir, "self.pdb", edit)
    with watchdog(WATCHDOG_SECONDS), open_pdb(target) as pdb:
        item = pdb.type_layout("_ITEM")
        links = item.field("Links")
        assert (links.type.kind, links.type.name, links.type.size) == ("struct", "_ITEM", item.size)
    check_errors(exercise(target), target)


def test_pointer_cycles(small, workdir):
    def edit(records, header, mutated, mapping):
        pointers = [ti for ti, (_, kind, _) in records.items() if kind == 0x1002]
        for a, b in zip(pointers, pointers[1:] + pointers[:1]):       # every pointer points at the next one
            mapping.patch(mutated, 2, header + records[a][0] + 4, struct.pack("<I", b))
    target = _patch_type(small, workdir, "ptrcycle.pdb", edit)
    message = _error_of(target, lambda p: open_pdb(p).type_layout("_ITEM"))
    assert "deeper than %d" % MAX_DEPTH in message and "TPI stream" in message
    check_errors(exercise(target), target)


def test_modifier_referring_to_itself(small, workdir):
    def edit(records, header, mutated, mapping):
        modifier = _find(records, 0x1001)
        mapping.patch(mutated, 2, header + records[modifier][0] + 4, struct.pack("<I", modifier))
    target = _patch_type(small, workdir, "modcycle.pdb", edit)
    assert "reference cycle" in _error_of(target, lambda p: open_pdb(p).type_layout("_ITEM"))


def test_lf_index_loops(small, workdir):
    """A field list whose LF_INDEX continuation leads back to itself is reported, not followed forever."""
    def edit(records, header, mutated, mapping):
        item = _find(records, 0x1505, lambda p: b"_ITEM\0" in p and not struct.unpack_from("<H", p, 2)[0] & 0x80)
        field_list = struct.unpack_from("<I", records[item][2], 4)[0]
        offset, _, payload = records[field_list]
        start = payload.index(b"Links\0") - 2 - 4 - 2 - 2          # the LF_MEMBER of "Links"
        # Replace that member (16 bytes) by LF_INDEX -> this very list, then LF_PAD bytes.
        member = struct.pack("<HHI", 0x1404, 0, field_list) + b"\xf1" * 8
        mapping.patch(mutated, 2, header + offset + 4 + start, member)
    target = _patch_type(small, workdir, "indexloop.pdb", edit)
    assert "loops back" in _error_of(target, lambda p: open_pdb(p).type_layout("_ITEM"))
    check_errors(exercise(target), target)


def test_field_list_that_is_not_a_field_list(small, workdir):
    def edit(records, header, mutated, mapping):
        item = _find(records, 0x1505, lambda p: b"_ITEM\0" in p and not struct.unpack_from("<H", p, 2)[0] & 0x80)
        mapping.patch(mutated, 2, header + records[item][0] + 4 + 4, struct.pack("<I", item))
    target = _patch_type(small, workdir, "notfl.pdb", edit)
    assert "is a LF_STRUCTURE record" in _error_of(target, lambda p: open_pdb(p).type_layout("_ITEM"))


def test_type_index_out_of_range(small, workdir):
    def edit(records, header, mutated, mapping):
        for pointer in [ti for ti, (_, kind, _) in records.items() if kind == 0x1002]:
            mapping.patch(mutated, 2, header + records[pointer][0] + 4, struct.pack("<I", 0x7FFF0000))
    target = _patch_type(small, workdir, "range.pdb", edit)
    assert "outside the stream's range" in _error_of(target, lambda p: open_pdb(p).type_layout("_ITEM"))


def test_symbol_offsets_past_the_symbol_stream(small, workdir):
    path, raw, mapping = small
    with open_pdb(path) as pdb:
        publics_stream = pdb._dbi.public_stream
        publics = pdb._publics_stream()
        addr_map_at = publics._addr_map_at
    mutated = bytearray(raw)
    mapping.patch(mutated, publics_stream, addr_map_at, struct.pack("<I", 0x7FFFFFF0))
    target = write(workdir, "addrmap.pdb", mutated)
    assert "symbol record offset past the end" in _error_of(target, lambda p: open_pdb(p).nearest_symbol(0x1000))
    check_errors(exercise(target), target)
