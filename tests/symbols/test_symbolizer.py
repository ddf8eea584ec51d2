"""Symbolizer answers on the real corpus dump (against the corpus facts) and on scenario dumps (against
the spec), with every fallback: ISF by identity, ISF by kernel fingerprint, exports, module+offset."""

import json
import lzma
import os

import pytest

from pytriage.errors import SymbolError
from pytriage.symbols.symbolizer import Symbolizer
from pytriage.target.offline import OfflineDumpTarget
from tests.conftest import CORPUS

KERNEL_ISF = os.path.join(CORPUS, "symbols", "ntkrnlmp.pdb-5278AFF86C341677D7D7835C85B7B844-1.json.xz")


@pytest.fixture()
def corpus_target(triage_dump_path):
    target = OfflineDumpTarget.open(triage_dump_path)
    yield target
    target.close()


def test_corpus_kernel_frames_symbolize_like_the_facts(corpus_target, triage_facts):
    symbolizer = Symbolizer(corpus_target, store=None, isf_dirs=[os.path.dirname(KERNEL_ISF)])
    frames = [f for f in triage_facts["stack"]["frames"] if f.get("isf_symbol")]
    assert len(frames) == 20
    for frame in frames:
        address = int(frame["address"], 16)
        if frame["isf_symbol"].startswith("nt!??_C@"):
            # The facts (and rizin) name frame 1 after the string literal just below it; the debugger
            # never names code after a literal, and a literal cannot sit inside a function, so the
            # function is not among the public symbols: we leave it unnamed rather than guess.
            assert frame["index"] == 1
            assert symbolizer.format(address) == "nt+0x%x" % (address - corpus_target.module_by_name("nt").base)
            continue
        assert symbolizer.format(address) == frame["isf_symbol"]
    nt = symbolizer.module_symbols(corpus_target.module_by_name("nt"))
    assert nt.kind == "isf" and nt.identity is None
    assert any("matched by KdDebuggerDataBlock, PsActiveProcessHead, PsLoadedModuleList" in n for n in nt.notes)
    # without symbols the amdppm frame is module+offset, exactly the facts' offset of P2
    assert symbolizer.format(0xFFFFF8048B58334C) == "amdppm+0x334c"
    assert symbolizer.format(0) == "00000000`00000000"


def test_kernel_table_with_one_wrong_anchor_is_not_used(corpus_target, tmp_path):
    with lzma.open(KERNEL_ISF) as fh:
        document = json.load(fh)
    document["symbols"]["PsLoadedModuleList"]["address"] += 0x10
    (tmp_path / "ntkrnlmp.pdb-5278AFF86C341677D7D7835C85B7B844-1.json").write_text(json.dumps(document))
    symbolizer = Symbolizer(corpus_target, store=None, isf_dirs=[str(tmp_path)])
    assert symbolizer.format(0xFFFFF8047BDF5A80) == "nt+0x3f5a80"       # never a silent wrong name
    assert symbolizer.module_symbols(corpus_target.module_by_name("nt")).kind == "none"


@pytest.fixture()
def scenario_target(basic_bitmap):
    target = OfflineDumpTarget.open(basic_bitmap.dump_path)
    yield target
    target.close()


def test_scenario_symbols_from_isf_by_codeview_identity(scenario_target, basic_bitmap):
    symbolizer = Symbolizer(scenario_target, store=None, isf_dirs=[basic_bitmap.symbols_path])
    lwf = scenario_target.module_by_name("contosolwf")
    assert symbolizer.format(lwf.base + 0x1024) == "contosolwf!FilterReceiveNetBufferLists+0x4"
    assert symbolizer.format(lwf.base + 0x1020) == "contosolwf!FilterReceiveNetBufferLists"
    info = symbolizer.module_symbols(lwf)
    assert info.kind == "isf" and info.identity.pdb_name == "contosolwf.pdb"
    assert info.identity.guid == next(m.spec.pdb_guid for m in basic_bitmap.modules if m.spec.name == lwf.name)
    assert symbolizer.address_of("contosolwf!FilterSendNetBufferLists") == lwf.base + 0x1000
    assert symbolizer.address_of("KeBugCheckEx") == scenario_target.module_by_name("nt").base + 0x1000
    layout, where = symbolizer.type_layout("nt!_KLDR_DATA_TABLE_ENTRY")
    assert layout.offset_of("TimeDateStamp") == 0x9C and where.startswith("nt (")


def test_scenario_exports_when_no_symbol_files(scenario_target):
    symbolizer = Symbolizer(scenario_target, store=None, isf_dirs=[])
    lwf = scenario_target.module_by_name("contosolwf")
    assert symbolizer.format(lwf.base + 0x1029) == "contosolwf!FilterReceiveNetBufferLists+0x9"
    assert symbolizer.module_symbols(lwf).kind == "export"
    hal = scenario_target.module_by_name("hal")
    assert symbolizer.format(hal.base + 0x10) == "hal+0x10"        # no exports, no symbols
    assert symbolizer.resolve(hal.base + 0x10).to_json()["source"] == "none"
    assert symbolizer.format(0xFFFFC08BE0100000) == "ffffc08b`e0100000"   # pool, not in a module


def test_names_and_types_that_do_not_exist(scenario_target):
    symbolizer = Symbolizer(scenario_target, store=None, isf_dirs=[])
    with pytest.raises(SymbolError, match="no module named nosuch"):
        symbolizer.address_of("nosuch!Foo")
    with pytest.raises(SymbolError, match="symbol Bar not found in any module"):
        symbolizer.address_of("Bar")
    layout, where = symbolizer.type_layout("_NET_BUFFER_LIST")      # no symbols anywhere: built-in
    assert layout.offset_of("NetBufferListInfo") == 0x90 and where.startswith("builtin:documented")
    with pytest.raises(SymbolError, match="type _NOPE not found"):
        symbolizer.type_layout("_NOPE")


def test_names_are_shown_undecorated_like_the_debugger(corpus_target, tmp_path):
    from pytriage.symbols.store import SymbolStore
    from pytriage.symbols.sympath import resolve_symbol_path
    from pytriage.symbols.undecorate import display_name

    store = SymbolStore(resolve_symbol_path("srv*%s*%s" % (tmp_path, os.path.join(CORPUS, "symstore"))))
    symbolizer = Symbolizer(corpus_target, store=store)
    amdppm = corpus_target.module_by_name("amdppm")
    stub = symbolizer.address_of("amdppm!?FxStubInitTypes@@YAJXZ")        # the PDB's own spelling
    assert symbolizer.address_of("amdppm!FxStubInitTypes") == stub          # what the debugger shows
    assert symbolizer.format(stub + 4) == "amdppm!FxStubInitTypes+0x4"
    handler = symbolizer.address_of("amdppm!__C_specific_handler")
    assert symbolizer.format(handler) == "amdppm!_C_specific_handler"
    names = [name for name, _ in symbolizer.shown_symbols(amdppm)]
    assert len(names) == 810 and not any(n.startswith("??_C@") for n in names)
    # the forms we undecorate, and the ones we leave alone rather than guess
    assert display_name("?Release@FxObject@@QEAAJPEAX@Z") == "FxObject::Release"
    assert display_name("??0SC_DISK@@QEAA@XZ") == "SC_DISK::SC_DISK"
    assert display_name("??1SC_DEVICE@@UEAA@XZ") == "SC_DEVICE::~SC_DEVICE"
    assert display_name("??_7NT_DISK@@6B@") == "??_7NT_DISK@@6B@"
    assert display_name("?f@?$vector@H@std@@QEAAXXZ") == "?f@?$vector@H@std@@QEAAXXZ"
    assert display_name("_C_specific_handler", strip_c_underscore=False) == "_C_specific_handler"
