"""The kernel structures the builder lays out use Windows 10 19041's real offsets.

Oracles: the KDDEBUGGER_DATA64 saved in the real corpus dump (its offset table) and the corpus
ntkrnlmp.pdb ISF (volatility3 symbol table of the same kernel build).
"""

import json
import lzma
import os
import struct

import pytest

from pytriage.dump import open_dump
from pytriage.dump import structs as S
from pytriage.scenarios import kernel_state as K
from tests.conftest import CORPUS

ISF = os.path.join(CORPUS, "symbols", "ntkrnlmp.pdb-5278AFF86C341677D7D7835C85B7B844-1.json.xz")


@pytest.fixture(scope="module")
def types():
    with lzma.open(ISF, "rt", encoding="utf-8") as fh:
        return json.load(fh)["user_types"]


def _offset(types, path):
    struct_name, *fields = path.split(".")
    offset = 0
    for name in fields:
        member = types[struct_name]["fields"][name]
        offset += member["offset"]
        struct_name = member["type"].get("name", struct_name)
    return offset


def test_kdbg_offset_table_equals_the_real_kernels(triage_dump_path):
    with open_dump(triage_dump_path) as dump:
        kdbg = dump.triage.debugger_data()
    assert kdbg[0x10:0x14] == b"KDBG" and struct.unpack_from("<I", kdbg, 0x14)[0] == K.KDBG_SIZE
    for offset, value in K.KDBG_OFFSETS_19041.items():
        assert struct.unpack_from("<H", kdbg, offset)[0] == value, hex(offset)
    assert struct.unpack_from("<Q", kdbg, K.MM_PTE_BASE_OFFSET)[0] == K.PTE_BASE


@pytest.mark.parametrize("constant, path", [
    ("PCR_SIZE", "_KPCR"), ("PCR_PRCB", "_KPCR.Prcb"), ("PCR_GDT_BASE", "_KPCR.GdtBase"),
    ("PCR_IDT_BASE", "_KPCR.IdtBase"),
    ("PRCB_CURRENT_THREAD", "_KPRCB.CurrentThread"), ("PRCB_IDLE_THREAD", "_KPRCB.IdleThread"),
    ("PRCB_NUMBER", "_KPRCB.Number"), ("PRCB_SPECIAL_REGISTERS", "_KPRCB.ProcessorState.SpecialRegisters"),
    ("PRCB_CONTEXT_FRAME", "_KPRCB.ProcessorState.ContextFrame"), ("PRCB_CONTEXT_POINTER", "_KPRCB.Context"),
    ("PRCB_CONTEXT_FLAGS_INIT", "_KPRCB.ContextFlagsInit"),
    ("SPECIAL_GDTR_BASE", "_KSPECIAL_REGISTERS.Gdtr.Base"), ("SPECIAL_GDTR_LIMIT", "_KSPECIAL_REGISTERS.Gdtr.Limit"),
    ("THREAD_SIZE", "_ETHREAD"), ("THREAD_INITIAL_STACK", "_KTHREAD.InitialStack"),
    ("THREAD_KERNEL_STACK", "_KTHREAD.KernelStack"), ("THREAD_STATE", "_KTHREAD.State"),
    ("THREAD_NEXT_PROCESSOR", "_KTHREAD.NextProcessor"), ("THREAD_APC_PROCESS", "_KTHREAD.ApcState.Process"),
    ("PROCESS_SIZE", "_EPROCESS"), ("PROCESS_DIRECTORY_TABLE_BASE", "_KPROCESS.DirectoryTableBase"),
    ("PROCESS_ACTIVE_LINKS", "_EPROCESS.ActiveProcessLinks"), ("PROCESS_IMAGE_FILE_NAME", "_EPROCESS.ImageFileName"),
])
def test_structure_offsets_equal_the_isf(types, constant, path):
    if "." not in path:
        assert getattr(K, constant) == types[path]["size"]
    else:
        assert getattr(K, constant) == _offset(types, path)


def test_processors_are_reachable_through_kdbg(basic_bitmap):
    spec = basic_bitmap.spec
    with open_dump(basic_bitmap.dump_path) as dump:
        kdbg_va = dump.header.kd_debugger_data_block
        kdbg = dump.read_virtual(kdbg_va, K.KDBG_SIZE)
        assert kdbg[0x10:0x14] == b"KDBG"
        pointers = {name: struct.unpack_from("<Q", kdbg, off)[0] for name, off in K.KDBG_POINTERS.items()}
        assert pointers["KernBase"] == spec.kernel.base
        assert pointers["PsLoadedModuleList"] == dump.header.ps_loaded_module_list
        assert struct.unpack("<5Q", dump.read_virtual(pointers["KiBugcheckData"], 40)) == \
            (spec.bugcheck_code, *spec.bugcheck_parameters)
        assert struct.unpack("<Q", dump.read_virtual(pointers["MmSystemRangeStart"], 8))[0] == K.SYSTEM_RANGE_START
        header_context = bytes(dump.file.view[S.H64_CONTEXT_OFFSET:S.H64_CONTEXT_OFFSET + S.CONTEXT_AMD64_SIZE])
        for n in range(spec.processors):
            prcb = struct.unpack("<Q", dump.read_virtual(pointers["KiProcessorBlock"] + 8 * n, 8))[0]
            assert struct.unpack("<I", dump.read_virtual(prcb + K.PRCB_NUMBER, 4))[0] == n
            cr3 = struct.unpack("<Q", dump.read_virtual(prcb + K.PRCB_SPECIAL_REGISTERS + 0x10, 8))[0]
            assert cr3 == dump.header.directory_table_base
            context = dump.read_virtual(prcb + K.PRCB_CONTEXT_FRAME, S.CONTEXT_AMD64_SIZE)
            if n == 0:
                assert context == header_context
            thread = struct.unpack("<Q", dump.read_virtual(prcb + K.PRCB_CURRENT_THREAD, 8))[0]
            process = struct.unpack("<Q", dump.read_virtual(thread + K.THREAD_APC_PROCESS, 8))[0]
            assert dump.read_virtual(process + K.PROCESS_IMAGE_FILE_NAME, 7) == b"System\0"


def test_isf_kernel_types_equal_the_real_kernels(types):
    """The types the scenario ISF (and so the scenario PDB) carries are 19041's: every field the builder
    declares has the corpus ISF's offset and type, and every size is the real one. Only
    _KLDR_DATA_TABLE_ENTRY is declared in part (the fields the builder fills)."""
    from pytriage.scenarios.isf import kernel_types

    declared = kernel_types()
    for name, udt in declared.items():
        real = types[name]
        assert (udt["kind"], udt["size"]) == (real["kind"], real["size"]), name
        for fname, f in udt["fields"].items():
            assert f == real["fields"][fname], (name, fname)
        if name != "_KLDR_DATA_TABLE_ENTRY":
            assert set(udt["fields"]) == set(real["fields"]), name
