"""The REAL Windows 10 triage dump: every header/driver-list fact of the corpus is read back exactly.

Oracle: shared/corpus/reference/triage_x64.facts.json (cross-checked there against rizin).
"""

import struct

import pytest

from pytriage.dump import open_dump
from pytriage.dump import structs as S


def h(value):
    return int(value, 16) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def dump(triage_dump_path):
    d = open_dump(triage_dump_path)
    yield d
    d.close()


def test_header_fields_equal_the_facts(dump, triage_facts):
    f = triage_facts["dump_header64"]
    hd = dump.header
    assert hd.fields["Signature"] == f["Signature"].encode()
    assert hd.fields["ValidDump"] == f["ValidDump"].encode()
    assert hd.major_version == f["MajorVersion"]
    assert hd.build == f["MinorVersion"] == triage_facts["os"]["build"]
    assert hd.directory_table_base == h(f["DirectoryTableBase"])
    assert hd.pfn_database == h(f["PfnDataBase"])
    assert hd.ps_loaded_module_list == h(f["PsLoadedModuleList"])
    assert hd.ps_active_process_head == h(f["PsActiveProcessHead"])
    assert hd.machine_type == h(f["MachineImageType"]) and hd.machine == "AMD64"
    assert hd.processors == f["NumberProcessors"] == triage_facts["os"]["processors"]
    assert hd.kd_debugger_data_block == h(f["KdDebuggerDataBlock"])
    assert hd.dump_type == f["DumpType"] == 4 and hd.dump_type_name == "triage"
    assert hd.required_dump_space == h(f["RequiredDumpSpace"])
    assert hd.system_time == h(f["SystemTime_filetime"])
    assert hd.system_time_utc == f["SystemTime_utc"]
    assert hd.system_uptime == f["SystemUpTime_100ns"]
    for name in ("MiniDumpFields", "SecondaryDataState", "SuiteMask"):
        assert hd.fields[name] == h(f[name]), name
    assert hd.fields["ProductType"] == f["ProductType"]
    assert hd.fields["WriterStatus"] == f["WriterStatus"]


def test_bugcheck_code_and_parameters(dump, triage_facts):
    code, params = dump.bugcheck()
    assert code == h(triage_facts["bugcheck"]["code"]) == 0x1000007E
    assert list(params) == [h(p) for p in triage_facts["bugcheck"]["parameters"]]


def test_context_record_registers(dump, triage_facts):
    regs = dump.context_record()
    for name, value in triage_facts["registers_exception_context"]["regs"].items():
        assert regs[name] == h(value), name
    # the faulting Rip is BugCheckParameter2, in amdppm.sys
    assert regs["rip"] == dump.bugcheck()[1][1]


def test_exception_record_in_header(dump, triage_facts):
    f = triage_facts["exception_record_in_header"]
    rec = dump.exception_record()
    assert rec["ExceptionCode"] == h(f["ExceptionCode"])
    assert rec["ExceptionFlags"] == f["ExceptionFlags"]
    assert rec["ExceptionAddress"] == h(f["ExceptionAddress"])


def test_triage_header_fields(dump, triage_facts):
    f = triage_facts["triage_dump64"]
    assert int(f["file_offset"], 16) == S.TRIAGE_HEADER_OFFSET
    for name, value in f.items():
        if name in ("file_offset", "verified_from_bytes"):
            continue
        assert dump.triage.header[name] == h(value), name
    assert dump.triage.top_of_stack == h(f["TopOfStack"])


def test_every_module_of_the_driver_list(dump, triage_facts):
    facts = triage_facts["modules"]
    mods = dump.modules()
    assert mods.warnings == []
    assert len(mods.modules) == facts["count"] == 151
    for got, want in zip(mods.modules, facts["first"]):
        assert (got.image_path, got.base, got.size, got.timestamp) == (
            want["name"], h(want["base"]), h(want["size"]), h(want["timestamp"]))
    last = mods.modules[-1]
    assert (last.image_path, last.base, last.size) == (
        facts["last"]["name"], h(facts["last"]["base"]), h(facts["last"]["size"]))
    by_name = {m.name: m for m in mods.modules}
    for net in facts["network_related"]:
        assert (by_name[net["name"]].base, by_name[net["name"]].size) == (h(net["base"]), h(net["size"]))
    kernel = triage_facts["kernel"]
    assert mods.modules[0].debugger_name == "nt"
    assert mods.modules[0].base == h(kernel["base"])
    assert mods.modules[0].size == h(kernel["size_of_image"])
    assert mods.modules[0].checksum == h(kernel["checksum"])
    assert "%08X%x" % (mods.modules[0].timestamp, mods.modules[0].size) == kernel["symbol_server_image_key"]


def test_faulting_address_is_in_amdppm(dump, triage_facts):
    from pytriage.target.offline import OfflineDumpTarget

    target = OfflineDumpTarget(dump)
    fm = triage_facts["bugcheck"]["faulting_module"]
    mod = target.module_at(dump.bugcheck()[1][1])
    assert (mod.name, mod.base, mod.size) == (fm["name"], h(fm["base"]), h(fm["size"]))
    assert dump.bugcheck()[1][1] - mod.base == h(fm["offset_of_P2"])


def test_kddebugger_data_copy(dump, triage_facts):
    f = triage_facts["kddebugger_data64_copy"]
    kdbg = dump.triage.debugger_data()
    assert len(kdbg) == h(f["Size"])
    assert kdbg[0x10:0x14] == f["OwnerTag"].encode()
    kern, = struct.unpack_from("<Q", kdbg, 0x18)
    plml, pahd = struct.unpack_from("<QQ", kdbg, 0x48)
    assert (kern, plml, pahd) == (h(f["KernBase"]), h(f["PsLoadedModuleList"]), h(f["PsActiveProcessHead"]))


def test_saved_stack_holds_every_return_address(dump, triage_facts):
    """Each return address rizin printed sits at Child-SP - 8 in our virtual view of the saved stack."""
    frames = triage_facts["stack"]["frames"]
    checked = 0
    for frame in frames:
        if frame.get("return_address_found_on_stack_at_sp_minus_8") and frame["index"] > 0:
            sp = h(frame["sp"])
            assert struct.unpack("<Q", dump.read_virtual(sp - 8, 8))[0] == h(frame["address"]), frame["index"]
            checked += 1
    assert checked >= 30


def test_data_blocks_and_codeview_record(dump, triage_facts):
    assert dump.triage.header["DataBlocksCount"] == 0x727
    blocks = [r for r in dump.triage.regions() if r.what.startswith("data block")]
    assert sum(r.size for r in blocks) == triage_facts["data_blocks"]["total_bytes"]
    cv = triage_facts["amdppm_codeview"]
    raw = dump.file.read(int(cv["file_offset"], 16), 24)
    assert raw[:4] == b"RSDS"


def test_memory_outside_saved_ranges_is_reported_not_invented(dump):
    from pytriage.errors import MemoryReadError

    with pytest.raises(MemoryReadError) as err:
        dump.read_virtual(dump.header.ps_loaded_module_list, 8)
    assert "not saved in this triage dump" in str(err.value)
    assert "fffff804`7c62a390" in str(err.value)
