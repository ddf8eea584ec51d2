"""Seed 004 as the built-in scenario ``nwifi-completion``: 0x1E (0x80000003) after
nwifi!Dot11SendCompletion called the UTF-16 text "562" as code (DESIGN 8 a, 10).

The crash stack is the seed's `k`: the page fault at 0x00000032`00360035 (an rip in no module: a leaf whose
return address into Dot11SendCompletion is at its rsp), dispatched through KiPageFault's trap frame,
then a breakpoint in nt!KeCheckStackAndTargetAddress during that dispatch, dispatched through
KiBreakpointTrap's, down to KeBugCheckEx. Its Child-SP steps are the seed's, frame by frame. The failing
frame's registers lead to the evidence: rdi is the NBL being completed, rbx the completion entry under
its pTOS, in a pool block tagged "Filt" that the third-party filter vwifimf.sys (no symbols) allocates.
Microsoft's engine walks the same dump in tests/oracle_dbgeng (every built-in scenario).
"""

import copy
import json
import struct

import pytest

from pytriage import cli
from pytriage.commands.nblwalk import NblWalkOptions, nbl_walk
from pytriage.commands.stack import trap_context
from pytriage.errors import SpecError
from pytriage.scenarios import build_builtin, builtin_path
from pytriage.scenarios.builder import build_scenario
from pytriage.scenarios.spec import parse_spec
from pytriage.scenarios.stack import NONVOLATILE
from pytriage.target.offline import OfflineDumpTarget
from tests.analysis.stack_helpers import plan_rows, rows, store_symbolizer

TEXT_562 = 0x0000003200360035                  # UTF-16 "562": the pRoutine nwifi called
PCTXT, PCTXT2 = 0x4C46444E02156700, 0xEC770C55EB0493DF
NT, NWIFI, NDIS, VWIFIMF = 0xFFFFF80140400000, 0xFFFFF8013ED00000, 0xFFFFF80143B00000, 0xFFFFF80144640000

FRAMES = [
    "nt!KeBugCheckEx", "nt!KiFatalFilter+0x1f", "nt!KeExpandKernelStackAndCalloutInternal$filt$0+0x16",
    "nt!C_specific_handler+0x9f", "nt!RtlpExecuteHandlerForException+0xf", "nt!RtlDispatchException+0x430",
    "nt!KiDispatchException+0x144", "nt!KiExceptionDispatch+0xc2", "nt!KiBreakpointTrap+0x301",
    "nt!KeCheckStackAndTargetAddress+0x46", "nt!C_specific_handler+0x3b", "nt!RtlpExecuteHandlerForException+0xf",
    "nt!RtlDispatchException+0x430", "nt!KiDispatchException+0x144", "nt!KiExceptionDispatch+0xc2",
    "nt!KiPageFault+0x42e", "0x00000032`00360035", "nwifi!Dot11SendCompletion+0x4b", "nwifi!Pt6SendComplete+0x1d",
    "ndis!ndisCallSendCompleteHandler+0x33", "ndis!ndisDataPathExpandStackCallback+0x3e",
    "nt!KeExpandKernelStackAndCalloutInternal+0x78", "nt!KeExpandKernelStackAndCalloutEx+0x1d",
    "ndis!NdisFSendNetBufferListsComplete+0x4c", "vwifimf+0x1f92", "ndis!ndisCallSendCompleteHandler+0x33",
    "ndis!ndisDataPathExpandStackCallback+0x3e", "nt!KeExpandKernelStackAndCalloutInternal+0x78",
    "nt!KeExpandKernelStackAndCalloutEx+0x1d", "ndis!ndisMSendNetBufferListsCompleteInternal+0x5e",
    "ndis!NdisMSendNetBufferListsComplete+0x2d", "wdiwifi!CPort::SendCompleteNetBufferLists+0x47",
    "wdiwifi!CTxMgr::CompleteNBLs+0x8a", "wdiwifi!AdapterTxTransferCompleteInd+0x2e", "nt!KiExecuteAllDpcs+0x2e9",
    "nt!KiRetireDpcList+0x1ef", "nt!KiIdleLoop+0x5a"]
TEXT_FRAME, DOT11_FRAME, PAGE_FAULT, BREAKPOINT = 0x10, 0x11, 0xF, 0x8
# The seed's Child-SP column (`k` on memory-copy.dmp) for frames 00-16, then 1a-1f: the three inline
# frames between them (ndisExpandStack ...) have no stack of their own.
SEED_CHILD_SP = [0xFFFF840132BDD808 + d for d in (
    0x0, 0x8, 0x48, 0x88, 0xF8, 0x128, 0x878, 0xF28, 0x1108, 0x1298, 0x12C8, 0x1338, 0x1368, 0x1AB8, 0x2168,
    0x2348, 0x24E0, 0x24E8, 0x2528, 0x2558, 0x2598, 0x25E8, 0x2658, 0x2698, 0x2788, 0x27D8, 0x2818, 0x2868,
    0x28D8)]


@pytest.fixture(scope="module", params=["full", "bitmap"])
def nwifi(request, tmp_path_factory):
    return build_builtin("nwifi-completion", str(tmp_path_factory.mktemp("nwifi-" + request.param)), request.param)


@pytest.fixture(scope="module")
def walked(nwifi):
    """pytriage's walk from the dump's context, with the registers `.trap` shows for both trap frames."""
    target = OfflineDumpTarget.open(nwifi.dump_path)
    symbolizer = store_symbolizer(target, nwifi)
    try:
        walk = target.stack(symbolizer=symbolizer)
        traps = {n: trap_context(target, walk.frames[n].trap_frame, symbolizer) for n in (BREAKPOINT, PAGE_FAULT)
                 if walk.frames[n].trap_frame is not None}
    finally:
        symbolizer.close()
        target.close()
    return walk, traps


def _spec_doc():
    with open(builtin_path("nwifi-completion"), encoding="utf-8") as fh:
        return json.load(fh)


def _qword(built, va):
    return struct.unpack("<Q", built.expected(va, 8))[0]


def test_builder_lays_out_the_seed_stack(nwifi):
    plan, a = nwifi.stack, nwifi.nbl_addresses
    frames = plan.frames
    assert [f.name for f in frames] == FRAMES
    assert [f.child_sp - frames[0].child_sp for f in frames[:0x1D]] == [sp - SEED_CHILD_SP[0] for sp in SEED_CHILD_SP]
    assert frames[0].child_sp == 0xFFFF840132B04278 and frames[-1].return_address == 0
    assert [(f.number, f.trap_frame) for f in frames if f.trap_frame] == [
        (BREAKPOINT, frames[BREAKPOINT].child_sp), (PAGE_FAULT, frames[PAGE_FAULT].child_sp)]
    # the text frame: KiPageFault interrupted the fetch at 0x3200360035; the call's return address into
    # Dot11SendCompletion is at its rsp, right after `call qword ptr [rbx]` and before `sub rbx,18h`
    text, dot11 = frames[TEXT_FRAME], frames[DOT11_FRAME]
    assert (text.rip, frames[PAGE_FAULT].return_address) == (TEXT_562, TEXT_562)
    assert dot11.child_sp == text.child_sp + 8 and _qword(nwifi, text.child_sp) == dot11.rip == NWIFI + 0x104B
    assert nwifi.expected(dot11.rip - 2, 6) == bytes.fromhex("ff13 4883eb18")
    assert _qword(nwifi, frames[PAGE_FAULT].trap_frame + 0x168) == TEXT_562                 # KTRAP_FRAME.Rip
    assert _qword(nwifi, frames[PAGE_FAULT].trap_frame + 0x180) == text.child_sp            # KTRAP_FRAME.Rsp
    # the failing frame's registers (references to the nbl section): the NBL, the entry under pTOS
    assert (a["seed"], a["filt562"]) == (0xFFFFDA8ACC2E02B0, 0xFFFFDA8ACC2E0240)
    assert {r: dot11.registers[r] for r in ("rbx", "rsi", "rdi")} == {"rbx": a["filt562"] + 0x18, "rsi": 0,
                                                                      "rdi": a["seed"]}
    assert {r: text.registers[r] for r in ("rax", "rcx", "rdx", "r8", "r9")} == {
        "rax": TEXT_562, "rcx": a["seed"], "rdx": 0, "r8": PCTXT, "r9": PCTXT2}
    assert [_qword(nwifi, a["filt562"] + 0x18 + 8 * i) for i in range(3)] == [TEXT_562, PCTXT, PCTXT2]
    context = _qword(nwifi, a["seed"] + 0x10)                                  # NBL->Context
    assert _qword(nwifi, context + 0x10 + 0x28) == a["filt562"] + 0x30 == dot11.registers["rbx"] + 0x18   # pTOS


def test_bugcheck_parameters_point_at_the_breakpoint_and_the_dispatch(nwifi):
    frames = nwifi.stack.frames
    code, (p1, p2, p3, p4) = nwifi.spec.bugcheck_code, nwifi.spec.bugcheck_parameters
    assert (code, p1) == (0x1E, 0xFFFFFFFF80000003)
    assert p2 == frames[BREAKPOINT + 1].rip - 1 == NT + 0x1C45 and nwifi.expected(p2, 1) == b"\xcc"   # int 3
    assert p3 == frames[7].child_sp + 0x138 and p4 == frames[6].child_sp + 0x30     # the dispatch's frames
    assert (nwifi.context["rcx"], nwifi.context["rdx"], nwifi.context["r8"], nwifi.context["r9"]) == (0x1E, p1, p2, p3)


def test_pytriage_stack_walks_through_the_text_frame(nwifi, walked):
    walk, traps = walked
    plan = nwifi.stack
    assert rows(walk) == plan_rows(plan)
    assert [f.call_site for f in walk.frames] == FRAMES
    assert (walk.frames[TEXT_FRAME].found_by, walk.frames[DOT11_FRAME].found_by) == ("machine-frame", "leaf")
    assert (walk.complete, walk.stop_reason) == (True, "end")
    assert [{r: f.registers.get(r) for r in NONVOLATILE} for f in walk.frames] == \
        [{r: f.registers[r] for r in NONVOLATILE} for f in plan.frames]
    a = nwifi.nbl_addresses
    assert (walk.frames[DOT11_FRAME].registers["rbx"], walk.frames[DOT11_FRAME].registers["rdi"]) == (
        a["filt562"] + 0x18, a["seed"])
    # `.trap` on KiPageFault's frame: the jump to the text, its call's arguments
    page_fault = traps[PAGE_FAULT]
    assert (page_fault["rip"], page_fault["rsp"]) == (TEXT_562, plan.frames[TEXT_FRAME].child_sp)
    assert {r: page_fault[r] for r in ("rax", "rcx", "rdx", "r8", "r9")} == {
        "rax": TEXT_562, "rcx": a["seed"], "rdx": 0, "r8": PCTXT, "r9": PCTXT2}
    breakpoint_trap = traps[BREAKPOINT]
    assert (breakpoint_trap["rip"], breakpoint_trap["rcx"]) == (NT + 0x1C46, TEXT_562)


@pytest.mark.parametrize("start", ["trap", "rip"])
def test_stack_from_the_page_fault_starts_at_the_text(nwifi, capsys, start):
    """`pytriage stack --trap` on KiPageFault's trap frame (WinDbg's `.trap` + `k`), and `--rip/--rsp` with
    the same values: frame 0 is the text, a leaf, then Dot11SendCompletion and the rest of the stack."""
    plan = nwifi.stack
    text = plan.frames[TEXT_FRAME]
    where = ["--trap", "%x" % plan.frames[PAGE_FAULT].trap_frame] if start == "trap" else \
        ["--rip", "%x" % text.rip, "--rsp", "%x" % text.child_sp]
    assert cli.main(["stack", nwifi.dump_path, "--json", "--symbols", nwifi.symstore_path] + where) == 0
    record = json.loads(capsys.readouterr().out)
    frames = record["frames"]
    assert [f["call_site"] for f in frames] == FRAMES[TEXT_FRAME:] and record["complete"]
    assert [int(f["child_sp"], 16) for f in frames] == [f.child_sp for f in plan.frames[TEXT_FRAME:]]
    assert [f["found_by"] for f in frames[:2]] == ["context", "leaf"]


def test_nblwalk_from_the_failing_frame_names_vwifimf_and_the_text(nwifi, walked):
    """The NBL in rdi of Dot11SendCompletion's frame, walked as `pytriage nblwalk` does."""
    walk, _traps = walked
    registers = walk.frames[DOT11_FRAME].registers
    target = OfflineDumpTarget.open(nwifi.dump_path)
    symbolizer = store_symbolizer(target, nwifi)
    try:
        record = nbl_walk(target, symbolizer, registers["rdi"], NblWalkOptions())
    finally:
        symbolizer.close()
        target.close()
    (nbl,) = record["nbls"]
    dot11 = nbl["dot11"]
    filt = nwifi.nbl_addresses["filt562"]
    assert int(dot11["pTOS"], 16) == filt + 0x30 and not dot11["healthy"]
    assert (dot11["pTOS_memory"]["tag"], int(dot11["pTOS_memory"]["block"], 16)) == ("Filt", filt - 0x10)
    assert [o["binary"] for o in dot11["pTOS_memory"]["owners"]] == ["vwifimf.sys"]
    (entry,) = dot11["entries"]
    assert int(entry["address"], 16) == registers["rbx"] and int(entry["pRoutine"], 16) == TEXT_562
    assert (entry["routine_kind"], entry["ok"]) == ("text", False) and 'UTF-16 "562"' in entry["routine"]
    assert dot11["suspects"] == ["vwifimf.sys"] and "the driver below nwifi (vwifimf.sys)" in dot11["verdict"]
    assert (nbl["memory"]["tag"], nbl["pool_handle_memory"]["tag"]) == ("Filt", "Filt")


def test_cli_nblwalk_and_pooltag_on_the_seed(nwifi, capsys):
    a = nwifi.nbl_addresses
    assert nwifi.spec.nbl.demo == "seed"
    assert cli.main(["nblwalk", nwifi.dump_path, "%x" % a["seed"], "--symbols", nwifi.symstore_path]) == 0
    out = capsys.readouterr().out
    assert "pRoutine 00000032`00360035 is not an address: it is UTF-16 \"562\"" in out
    assert "the driver below nwifi (vwifimf.sys) completed or corrupted an NBL it did not own" in out
    assert cli.main(["pooltag", nwifi.dump_path, "%x" % (a["filt562"] + 0x18), "--symbols",
                     nwifi.symstore_path]) == 0
    out = capsys.readouterr().out
    assert "vwifimf.sys: vwifimf+0x1790: mov r8d, 0x746c6946 [41b846696c74]" in out      # the seed's !tag hit
    assert "then calls nt!ExAllocatePoolWithTag" in out
    # the healthy NBL of the scenario, for contrast
    assert cli.main(["nblwalk", nwifi.dump_path, "%x" % a["wifi"], "--symbols", nwifi.symstore_path, "--json"]) == 0
    (healthy,) = json.loads(capsys.readouterr().out)["nbls"]
    assert healthy["dot11"]["healthy"] and healthy["dot11"]["depth"] == 3


# --- the two builder features the scenario needs: an "address" frame, registers as references ----------

def test_register_references_resolve_to_the_nbl_section_and_symbols(tmp_path):
    doc = _spec_doc()
    doc["stack"][TEXT_FRAME]["registers"]["r10"] = "nwifi!Pt6SendComplete+0x1d"
    doc["stack"][DOT11_FRAME]["registers"]["rsi"] = "@wifi+0x10"
    built = build_scenario(parse_spec(doc), str(tmp_path), "bitmap")
    frames = built.stack.frames
    assert frames[TEXT_FRAME].registers["r10"] == frames[DOT11_FRAME + 1].rip == NWIFI + 0x109D
    assert frames[DOT11_FRAME].registers["rsi"] == built.nbl_addresses["wifi"] + 0x10
    assert frames[DOT11_FRAME].registers["rdi"] == built.nbl_addresses["seed"]


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop(PAGE_FAULT),                           # nothing interrupts the text frame any more
     r"stack\[15\]\.address: 0x00000032`00360035 is in no module, so only an interrupted frame \(right after a "
     r"trap handler\) may stop there"),
    (lambda s: s[TEXT_FRAME].update(address="0xfffff8013ed01000"),
     r"stack\[16\]\.address: 0xfffff8013ed01000 is inside nwifi\.sys \(name the frame with \"function\""),
    (lambda s: s[TEXT_FRAME].update(offset="0x4"),
     r"stack\[16\]\.offset: an \"address\" frame is in no module and no function"),
    (lambda s: s[TEXT_FRAME].update(registers={"rbx": "0x1"}),
     r"stack\[16\]\.registers\.rbx: 0x00000032`00360035 does not save rbx in its prolog"),
    (lambda s: s[DOT11_FRAME]["registers"].update(rdi="@nope"),
     r"stack\[17\]\.registers\.rdi: no NBL or block with id 'nope' in the nbl section"),
    (lambda s: s[DOT11_FRAME]["registers"].update(rdi="$rsp+0x10"),
     r"stack\[17\]\.registers\.rdi: \$rsp is where the stack ends up"),
    (lambda s: s[DOT11_FRAME + 1].update(registers={"rbx": "@seed"}),     # Pt6SendComplete pushes nothing
     r"stack\[18\]\.registers\.rbx: nwifi!Pt6SendComplete\+0x1d does not save rbx in its prolog"),
    (lambda s: s[DOT11_FRAME]["registers"].update(rdi="nwifi!NoSuchFunction"),
     r"stack\[17\]\.registers\.rdi: no symbol nwifi!NoSuchFunction among the spec's modules"),
])
def test_address_frames_and_register_references_are_checked(tmp_path, change, message):
    doc = copy.deepcopy(_spec_doc())
    change(doc["stack"])
    with pytest.raises(SpecError, match=message):
        build_scenario(parse_spec(doc), str(tmp_path), "bitmap")
