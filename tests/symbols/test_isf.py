"""The corpus ISF (real ntkrnlmp 19041.804 symbols, published by volatility3) driving reads of real data."""

import json
import os
import struct

import pytest

from pytriage.dump.modules import walk_loaded_modules
from pytriage.errors import SymbolError
from pytriage.symbols.isf import IsfTable, load_isf
from pytriage.symbols.kernel_layouts import field_offsets, kldr_offsets
from pytriage.target.offline import OfflineDumpTarget
from tests.conftest import CORPUS

KERNEL_ISF = os.path.join(CORPUS, "symbols", "ntkrnlmp.pdb-5278AFF86C341677D7D7835C85B7B844-1.json.xz")
DRIVER_ENTRY_LDR = 0x08          # DUMP_DRIVER_ENTRY64: ULONG DriverNameOffset + pad, then the KLDR copy


@pytest.fixture(scope="module")
def kernel_isf():
    return load_isf(KERNEL_ISF)


def test_isf_identity_and_symbols(kernel_isf):
    assert (kernel_isf.pdb_name, kernel_isf.guid, kernel_isf.age) == (
        "ntkrnlmp.pdb", "5278AFF86C341677D7D7835C85B7B844", 1)
    # RVAs the corpus facts list as the fingerprint of this kernel build
    assert kernel_isf.symbol_rva("KdDebuggerDataBlock") == 0xC00B20
    assert kernel_isf.symbol_rva("PsLoadedModuleList") == 0xC2A390
    assert kernel_isf.symbol_rva("KeBugCheckEx") == 0x3F5A80
    assert kernel_isf.nearest_symbol(0x3F5A80 + 3) == ("KeBugCheckEx", 0x3F5A80)


def test_pool_header_bitfields(kernel_isf):
    pool = kernel_isf.type_layout("_POOL_HEADER")
    assert pool.size == 0x10
    assert {f.name: (f.offset, f.bit_position, f.bit_length) for f in pool.fields if f.is_bitfield} == {
        "PreviousSize": (0, 0, 8), "PoolIndex": (0, 8, 8), "BlockSize": (2, 0, 8), "PoolType": (2, 8, 8)}
    assert pool.offset_of("PoolTag") == 4


def test_triage_driver_list_through_isf_equals_builtin(kernel_isf, triage_dump_path):
    """The KLDR copies in the triage driver list, read with the ISF's offsets, give the same modules."""
    offsets = kldr_offsets(kernel_isf.type_layout("_KLDR_DATA_TABLE_ENTRY"))
    target = OfflineDumpTarget.open(triage_dump_path)
    try:
        view = target.dump.file.view
        drivers = target.dump.triage.drivers()
        assert len(drivers) == len(target.modules()) > 100
        for driver in drivers:
            ldr = driver.entry_offset + DRIVER_ENTRY_LDR
            base = struct.unpack_from("<Q", view, ldr + offsets["DllBase"])[0]
            size = struct.unpack_from("<I", view, ldr + offsets["SizeOfImage"])[0]
            checksum = struct.unpack_from("<I", view, ldr + offsets["CheckSum"])[0]
            assert (base, size, checksum) == (driver.base, driver.size, driver.checksum)
    finally:
        target.close()


def test_module_walk_through_isf_equals_builtin(kernel_isf, basic_full):
    target = OfflineDumpTarget.open(basic_full.dump_path)
    try:
        head = target.dump.header.ps_loaded_module_list
        builtin = walk_loaded_modules(target.read, head)
        through_symbols = walk_loaded_modules(target.read, head,
                                              kldr_offsets(kernel_isf.type_layout("_KLDR_DATA_TABLE_ENTRY")))
        assert through_symbols.modules == builtin.modules and not through_symbols.warnings
        assert [m.name for m in builtin.modules][:2] == ["ntoskrnl.exe", "hal.dll"]
    finally:
        target.close()


def test_trap_frame_through_isf_matches_exception_context(kernel_isf, triage_dump_path, triage_facts):
    """Find amdppm's KTRAP_FRAME on the saved stack by the ISF offsets of Rip/Rsp, then check every
    volatile register it saved against the exception context the corpus facts list."""
    trap = field_offsets(kernel_isf.type_layout("_KTRAP_FRAME"),
                         ["Rax", "Rcx", "Rdx", "R8", "R9", "R10", "R11", "Rbp", "Rip", "SegCs", "EFlags", "Rsp"])
    regs = {k: int(v, 16) for k, v in triage_facts["registers_exception_context"]["regs"].items()}
    stack_base = 0xFFFF850429890EE8
    target = OfflineDumpTarget.open(triage_dump_path)
    try:
        stack = target.read(stack_base, 0x2118)
    finally:
        target.close()
    hits = [i for i in range(0, len(stack) - 0x190, 8)
            if struct.unpack_from("<Q", stack, i + trap["Rip"])[0] == regs["rip"]
            and struct.unpack_from("<Q", stack, i + trap["Rsp"])[0] == regs["rsp"]]
    assert [stack_base + i for i in hits] == [0xFFFF850429891F90]
    frame = hits[0]
    for name in ("Rax", "Rcx", "Rdx", "R8", "R9", "R10", "R11", "Rbp"):
        assert struct.unpack_from("<Q", stack, frame + trap[name])[0] == regs[name.lower()], name
    assert struct.unpack_from("<H", stack, frame + trap["SegCs"])[0] == regs["cs"]
    assert struct.unpack_from("<I", stack, frame + trap["EFlags"])[0] == regs["rflags"]


@pytest.mark.parametrize("document, message", [
    ({}, "no metadata"),
    ({"metadata": {}, "user_types": []}, "'user_types' is not an object"),
    ({"metadata": {}, "user_types": {"_X": {"kind": "struct", "size": 8, "fields": {"a": {"type": {}}}}}},
     "_X.a has no integer offset"),
    ({"metadata": {}, "user_types": {"_X": {"kind": "struct", "size": 8, "fields": {
        "a": {"offset": 0, "type": {"kind": "wat"}}}}}}, "unknown type kind"),
])
def test_malformed_isf_is_one_symbol_error(document, message):
    with pytest.raises(SymbolError, match=message):
        IsfTable(document, origin="x.json").type_layout("_X")


def test_deeply_nested_isf_type_is_refused():
    desc = {"kind": "base", "name": "int"}
    for _ in range(200):
        desc = {"kind": "pointer", "subtype": desc}
    table = IsfTable({"metadata": {}, "user_types": {"_X": {"kind": "struct", "size": 8, "fields": {
        "a": {"offset": 0, "type": desc}}}}}, origin="deep.json")
    with pytest.raises(SymbolError, match="deeper than"):
        table.type_layout("_X")


def test_unreadable_isf_files(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{ not json")
    with pytest.raises(SymbolError, match="not valid ISF JSON"):
        load_isf(str(bad_json))
    bad_xz = tmp_path / "bad.json.xz"
    bad_xz.write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(SymbolError, match="cannot read ISF table"):
        load_isf(str(bad_xz))
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(SymbolError, match="not an ISF symbol table"):
        load_isf(str(tmp_path / "list.json"))
