"""pytriage's own x64 stack walk on scenario dumps, against the builder's plan (the frames it laid out).

The built-in ``unwind-zoo`` scenario has every unwind code, a frame-pointer function, chained unwind
info, version 2 unwind info, two machine frames (with and without error code: two trap frames in the
middle of the stack), a frame interrupted inside its prolog and one inside its epilog; ``basic`` tells
the 0xD1 story. Microsoft's engine walks the same stacks in tests/oracle_dbgeng (`kvn` = pytriage
stack, frame by frame). The other tests doctor a dump or hide memory to exercise every fallback and
every stop: missing images, a corrupt return address, unmapped stack, an unwind loop, the limits.
"""

import copy
import json

import pytest

from pytriage.analysis.function_table import UnwindCatalog
from pytriage.analysis.stack_walk import NONVOLATILE, WalkLimits, walk_stack
from pytriage.errors import PytriageError, format_address
from pytriage.scenarios import build_builtin, builtin_path
from pytriage.scenarios.builder import build_scenario
from pytriage.scenarios.spec import parse_spec
from pytriage.target.offline import OfflineDumpTarget
from tests.analysis.stack_helpers import HidingTarget, module, patched_copy, plan_rows, rows, store_symbolizer


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return {kind: build_builtin("unwind-zoo", str(tmp_path_factory.mktemp("zoo-" + kind)), kind)
            for kind in ("full", "bitmap")}


def _walk(built, path=None, hidden=(), store=True, limits=None, context=None):
    target = HidingTarget(path or built.dump_path, hidden)
    symbolizer = store_symbolizer(target, built)
    catalog = UnwindCatalog(target, symbolizer.store if store else None)
    try:
        return walk_stack(target, context if context is not None else target.context_record(), symbolizer,
                          limits=limits, catalog=catalog)
    finally:
        symbolizer.close()
        target.close()


def _registers(frames):
    return [{r: f.registers.get(r) for r in NONVOLATILE} for f in frames]


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_basic_stack_is_the_builders_plan(kind, basic_full, basic_bitmap):
    built = basic_full if kind == "full" else basic_bitmap
    walk = _walk(built)
    assert rows(walk) == plan_rows(built.stack)
    assert [f.found_by for f in walk.frames] == ["context", "unwind", "unwind", "machine-frame", "unwind", "unwind"]
    assert _registers(walk.frames) == [{r: f.registers[r] for r in NONVOLATILE} for f in built.stack.frames]
    assert walk.frames[2].trap_frame == 0xFFFFC08BE0006CC0 and walk.frames[2].call_site == "nt!KiPageFault+0x1a"
    assert (walk.complete, walk.stop_reason, walk.stop_text, walk.notes) == (True, "end", "", [])
    assert all(f.unwind_data == "dump memory" for f in walk.frames)
    assert walk.trap_frame_layout == "built-in _KTRAP_FRAME (Windows 10 19041 x64)"


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_every_unwind_code_chained_info_prolog_and_epilog_stops(kind, zoo):
    built = zoo[kind]
    walk = _walk(built)
    assert rows(walk) == plan_rows(built.stack)
    assert [f.call_site for f in walk.frames] == [
        "nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0xc", "nt!KiPageFault+0x1a", "unwindzoo!EpilogStop+0xc",
        "unwindzoo!SavesFar+0x18", "unwindzoo!FramePointer+0x13", "nt!KiInterruptDispatch+0x17",
        "unwindzoo!PrologStop+0x1", "unwindzoo!ChainedFragment+0xa", "unwindzoo!AllocLarge16+0xc",
        "unwindzoo!AllocHuge+0xc", "unwindzoo!PushesNonvol+0x14", "unwindzoo!V2Epilogs+0xa"]
    # frame N is found by unwinding frame N-1: KiPageFault's machine frame (with error code) leads to
    # EpilogStop, interrupted in its epilog, which is run forward; KiInterruptDispatch's machine frame
    # (no error code) leads to PrologStop, interrupted after its first push.
    assert [f.found_by for f in walk.frames] == [
        "context", "unwind", "unwind", "machine-frame", "epilog", "unwind", "unwind", "machine-frame", "unwind",
        "unwind", "unwind", "unwind", "unwind"]
    assert [(f.number, f.trap_frame) for f in walk.frames if f.trap_frame] == [
        (2, built.stack.frames[2].trap_frame), (6, built.stack.frames[6].trap_frame)]
    # every nonvolatile register each prolog saved (pushes, SAVE_NONVOL(_FAR), the frame pointer) is restored
    assert _registers(walk.frames) == [{r: f.registers[r] for r in NONVOLATILE} for f in built.stack.frames]
    assert walk.frames[4].registers["rsi"] == 0xFFFFC08BE0220000             # SavesFar: UWOP_SAVE_NONVOL_FAR
    assert walk.frames[11].registers["r15"] == 0x15                          # PushesNonvol: push r15
    assert walk.frames[12].registers["rbx"] == 0xB0                          # restored by PushesNonvol
    assert walk.frames[10].child_sp - walk.frames[9].child_sp == 0x1008 + 8   # UWOP_ALLOC_LARGE, OpInfo 0
    assert walk.frames[11].child_sp - walk.frames[10].child_sp == 0x3010 + 8  # UWOP_ALLOC_LARGE, OpInfo 1
    assert walk.complete and walk.notes == []


def test_frames_name_themselves_without_symbols(basic_bitmap):
    target = OfflineDumpTarget.open(basic_bitmap.dump_path)
    try:
        walk = target.stack()
    finally:
        target.close()
    assert [(sp, ret) for sp, ret, _name, _trap in rows(walk)] == \
        [(sp, ret) for sp, ret, _name, _trap in plan_rows(basic_bitmap.stack)]
    assert [f.call_site for f in walk.frames] == ["nt+0x1000", "nt+0x104c", "nt+0x109a", "contosolwf+0x1029",
                                                 "ndis+0x104f", "ndis+0x1089"]


def test_images_come_from_the_symbol_store_when_the_dump_lacks_them(basic_full):
    """Every module's header page hidden (as in a triage dump): each image file comes from the store by
    TimeDateStamp/SizeOfImage and the walk is the same."""
    hidden = [(m.spec.base, m.spec.base + 0x1000) for m in basic_full.modules]
    walk = _walk(basic_full, hidden=hidden)
    assert rows(walk) == plan_rows(basic_full.stack) and walk.complete
    used = sorted({f.unwind_data.split("/")[-1] for f in walk.frames})
    assert used == ["contosolwf.sys", "ndis.sys", "ntoskrnl.exe"]
    assert [n.split(" (")[0].split(": ")[0] for n in walk.notes] == ["nt", "contosolwf", "ndis"]
    assert all(n.endswith("(not in the dump)") and "unwind data from the image file" in n for n in walk.notes)


def test_pdata_paged_out_is_read_from_the_image_file(basic_full):
    ndis = module(basic_full, "ndis.sys")
    pdata = ndis.spec.base + ndis.image.pdata_rva
    walk = _walk(basic_full, hidden=[(pdata & ~0xFFF, (pdata & ~0xFFF) + 0x1000)])
    assert rows(walk) == plan_rows(basic_full.stack)
    image = module(basic_full, "ndis.sys").image
    path = "%s/ndis.sys/%s/ndis.sys" % (basic_full.symstore_path, image.symbol_store_key)
    assert set(walk.frames[4].unwind_data.split(", ")) == {"dump memory", "image file " + path}
    assert walk.notes == ["ndis: unwind data from the image file %s (not in the dump)" % path]


def test_no_unwind_data_falls_back_to_a_marked_scan(basic_full):
    """ndis's headers are not in the dump and no store has its image: its frames' return addresses are
    found by scanning for a value that follows a call. The scan finds the real frame 5, marks it, and
    cannot find the outermost frame's zero return address."""
    ndis = module(basic_full, "ndis.sys")
    walk = _walk(basic_full, hidden=[(ndis.spec.base, ndis.spec.base + 0x1000)], store=False)
    plan = basic_full.stack.frames
    assert [(f.child_sp, f.instruction_pointer) for f in walk.frames] == [(f.child_sp, f.rip) for f in plan]
    assert [f.found_by for f in walk.frames] == ["context", "unwind", "unwind", "machine-frame", "unwind", "scanned"]
    hit = walk.frames[5].scan
    assert (hit.slot, hit.evidence, hit.passed_over) == (plan[5].child_sp - 8, "call", 0)
    assert hit.instruction == "call 0xfffff80472001040 at fffff804`72001084"      # to ndisCallReceiveHandler
    assert not walk.frames[5].certain and walk.frames[4].certain
    assert walk.frames[5].return_address is None and not walk.complete
    assert walk.notes[0] == ("ndis has no unwind data: its headers are not in the dump; no symbol path to fetch "
                             "ndis.sys from")
    assert (walk.stop_reason, walk.stop_text) == (
        "scan-failed", "frame 05 (ndis!NdisMIndicateReceiveNetBufferLists+0x9): no unwind data, and no return address "
        "in the 0x2000 bytes of stack above ffffc08b`e0006ec0")


def test_scan_without_the_code_before_a_candidate(basic_full):
    """ndis's .pdata and code are not in the dump (its headers are): a candidate cannot be checked for a
    call. Strictly, the scan finds nothing; with scan_unverified it takes the value, marked so."""
    ndis = module(basic_full, "ndis.sys")
    hidden = [(ndis.spec.base + 0x1000, ndis.spec.base + ndis.spec.size)]
    strict = _walk(basic_full, hidden=hidden, store=False)
    assert len(strict.frames) == 5
    assert (strict.stop_reason, strict.stop_text) == (
        "scan-failed", "frame 04 (ndis!ndisCallReceiveHandler+0xf): no unwind data, and no return address in the "
        "0x2000 bytes of stack above ffffc08b`e0006e80 (1 value pointed into module code, none after a verified call)")
    assert strict.notes[0] == ("ndis has no unwind data: its exception directory (.pdata at rva 0x%x) is not in the "
                               "dump; no symbol path to fetch ndis.sys from" % ndis.image.pdata_rva)
    loose = _walk(basic_full, hidden=hidden, store=False, limits=WalkLimits(scan_unverified=True))
    plan = basic_full.stack.frames
    assert [(f.child_sp, f.instruction_pointer) for f in loose.frames] == [(f.child_sp, f.rip) for f in plan]
    assert (loose.frames[5].found_by, loose.frames[5].scan.evidence) == ("scanned", "code-unavailable")
    assert loose.frames[5].scan.instruction is None


def test_trap_frame_of_a_known_handler_without_unwind_data(basic_full):
    """nt's image is neither in the dump nor in a store: frames 1 and 2 are scanned (each a verified call
    to the frame below), and nt!KiPageFault, a trap handler, has its KTRAP_FRAME at its stack pointer:
    the walk crosses it to the faulting frame and unwinds on from there."""
    nt = basic_full.modules[0]
    walk = _walk(basic_full, hidden=[(nt.spec.base, nt.spec.base + 0x1000)], store=False)
    assert rows(walk) == plan_rows(basic_full.stack)
    assert [f.found_by for f in walk.frames] == ["context", "scanned", "scanned", "trap-frame", "unwind", "unwind"]
    assert [f.scan.instruction for f in walk.frames[1:3]] == ["call 0xfffff80470001000 at fffff804`70001047",
                                                              "call 0xfffff80470001040 at fffff804`70001095"]
    assert walk.frames[2].trap_frame == walk.frames[2].child_sp == basic_full.stack.frames[2].trap_frame
    assert walk.frames[3].registers["rax"] == 0 and walk.frames[3].registers["rcx"] == 0xFFFFC08BE0140000
    assert walk.complete


def _nt_image_but_its_data(built):
    """nt's headers, code and unwind data hidden (as in a triage dump); its .data (PsLoadedModuleList)
    stays readable."""
    nt = built.modules[0]
    data = next(s for s in nt.image.sections if s.name == ".data")
    return [(nt.spec.base, nt.spec.base + data.rva), (nt.spec.base + data.rva + data.virtual_size,
                                                      nt.spec.base + nt.spec.size)]


def test_trap_frame_found_on_the_stack_when_no_return_address_can_be_checked(basic_full):
    """nt's image, code included, is not in the dump and no store has it: from KeBugCheckEx no value on
    the stack can be checked for a call. The KTRAP_FRAME that KiPageFault built is found by its contents
    (saved Rsp right above it, kernel selectors, Rip in contosolwf's code); the value just below it
    returns into KiPageFault, a trap handler: that frame, then the faulting frame and its callers,
    exactly as planned. KiBugCheckDispatch (between the two) is missing, and a note says frames may be."""
    walk = _walk(basic_full, hidden=_nt_image_but_its_data(basic_full), store=False)
    plan = plan_rows(basic_full.stack)
    assert rows(walk) == [plan[0][:1] + (basic_full.stack.frames[2].rip, "nt!KeBugCheckEx", None)] + plan[2:]
    assert [f.found_by for f in walk.frames] == ["context", "trap-search", "trap-frame", "unwind", "unwind"]
    trap = basic_full.stack.frames[2].trap_frame
    assert walk.frames[1].trap_frame == walk.frames[1].child_sp == trap
    assert walk.frames[2].registers["rax"] == 0 and walk.complete
    assert "frame 01 (nt!KiPageFault+0x1a) was found through the _KTRAP_FRAME at %s on the stack, 0x%x bytes " \
        "above frame 00: frames between the two may be missing" % (format_address(trap),
                                                                   trap - plan[0][0]) in walk.notes


def test_trap_frame_without_a_known_handler_below_it(basic_full, tmp_path):
    """The value below the trap frame is no trap handler's return address: the walk goes on from the
    interrupted context itself (exact registers: rip is the faulting instruction, not a return address)."""
    trap = basic_full.stack.frames[2].trap_frame
    path = patched_copy(basic_full, tmp_path, {trap - 8: 0})
    walk = _walk(basic_full, path, hidden=_nt_image_but_its_data(basic_full), store=False)
    plan = plan_rows(basic_full.stack)
    assert rows(walk) == [plan[0][:1] + (basic_full.stack.frames[3].rip, "nt!KeBugCheckEx", None)] + plan[3:]
    assert [f.found_by for f in walk.frames] == ["context", "trap-search", "unwind", "unwind"]
    assert walk.frames[1].registers["rax"] == 0 and walk.complete
    assert any(n.startswith("frame 01 is the interrupted context of the _KTRAP_FRAME at %s on the stack"
                            % format_address(trap)) for n in walk.notes)


@pytest.mark.parametrize("field, value", [
    (0x180, 0xFFFFC08BE0007000),        # saved Rsp not where the machine frame was pushed
    (0x170, 0x33),                      # user-mode SegCs
    (0x188, 0x2B),                      # user-mode SegSs
    (0x178, 0x8202),                    # RFLAGS with reserved bit 15 set
    (0x168, 0x4141414141414141),        # Rip in no module
])
def test_trap_frame_search_rejects_what_is_not_a_kernel_trap_frame(basic_full, tmp_path, field, value):
    trap = basic_full.stack.frames[2].trap_frame
    path = patched_copy(basic_full, tmp_path, {trap + field: value})
    walk = _walk(basic_full, path, hidden=_nt_image_but_its_data(basic_full), store=False)
    assert "trap-search" not in [f.found_by for f in walk.frames]
    assert all(f.trap_frame is None for f in walk.frames) and not any("_KTRAP_FRAME" in n for n in walk.notes)
    # the scan goes on past the doctored trap frame, to the next value after a verified call (an indirect
    # one, so it cannot be checked against KeBugCheckEx): contosolwf's return into ndisCallReceiveHandler;
    # then unwinding again. The faulting frame is lost, and the scanned frame is marked so.
    plan = basic_full.stack.frames
    assert [(f.found_by, f.child_sp, f.instruction_pointer) for f in walk.frames] == [
        ("context", plan[0].child_sp, plan[0].rip), ("scanned", plan[4].child_sp, plan[4].rip),
        ("unwind", plan[5].child_sp, plan[5].rip)]


def test_corrupt_return_address_is_shown_and_the_walk_stops(basic_full, tmp_path):
    plan = basic_full.stack
    slot = plan.frames[4].child_sp - 8                       # frame 3's return address
    path = patched_copy(basic_full, tmp_path, {slot: 0x4141414141414141})
    walk = _walk(basic_full, path)
    assert rows(walk)[:3] == plan_rows(plan)[:3]
    assert rows(walk)[3] == (plan.frames[3].child_sp, 0x4141414141414141, plan.frames[3].name, None)
    assert rows(walk)[4] == (plan.frames[4].child_sp, None, "0x41414141`41414141", None)
    assert (walk.stop_reason, walk.stop_text) == ("no-module", "frame 04: 41414141`41414141 is in no loaded module "
                                                  "(a corrupt return address, or code outside the module list): "
                                                  "the walk cannot go on")


@pytest.mark.parametrize("rsp, reason", [
    (0xFFFFC08BF0000000, "unreadable"),        # canonical, but nothing mapped there
    (0x4141414141414140, "unreadable"),        # not even canonical
])
def test_stack_pointer_into_unmapped_memory(basic_full, rsp, reason):
    rip = basic_full.stack.frames[3].rip       # contosolwf!FilterReceiveNetBufferLists+0x9: pops [rsp+0x20]
    walk = _walk(basic_full, context={"rip": rip, "rsp": rsp})
    assert rows(walk) == [(rsp, None, "contosolwf!FilterReceiveNetBufferLists+0x9", None)]
    assert walk.stop_reason == reason
    assert walk.stop_text.startswith("frame 00 (contosolwf!FilterReceiveNetBufferLists+0x9): the stack is not "
                                     "readable: cannot read address %08x`%08x: "
                                     % ((rsp + 0x20) >> 32, (rsp + 0x20) & 0xFFFFFFFF))


def test_instruction_pointer_outside_every_module_is_a_leaf(basic_full):
    """A call through a garbage pointer faults fetching its first instruction: the return address the call
    pushed is at rsp, and WinDbg's k walks on from it; so does pytriage, saying so."""
    frames = basic_full.stack.frames
    walk = _walk(basic_full, context={"rip": 0x4141414141414141, "rsp": frames[0].child_sp})
    assert rows(walk)[0] == (frames[0].child_sp, frames[1].rip, "0x41414141`41414141", None)
    assert [f.call_site for f in walk.frames[1:3]] == ["nt!KiBugCheckDispatch+0xc", "nt!KiPageFault+0x1a"]
    assert walk.frames[1].child_sp == frames[0].child_sp + 8
    assert any("41414141`41414141 is in no loaded module" in n and "unwound as a leaf" in n for n in walk.notes)


def test_instruction_pointer_outside_every_module_without_a_return_address(basic_full):
    rsp = basic_full.stack.frames[0].child_sp - 0x100          # zeroed stack below the deepest frame
    walk = _walk(basic_full, context={"rip": 0x4141414141414141, "rsp": rsp})
    assert rows(walk) == [(rsp, None, "0x41414141`41414141", None)]
    assert walk.stop_reason == "no-module"
    assert walk.stop_text == ("frame 00: 41414141`41414141 is in no loaded module, and the value at its stack "
                              "pointer (00000000`00000000) is no return address into a module either: the walk "
                              "cannot go on")


def test_unwind_loop_is_reported(basic_full, tmp_path):
    """KiPageFault's machine frame doctored to point back at frame 0 (same rip and rsp)."""
    plan = basic_full.stack
    trap = plan.frames[2].trap_frame
    path = patched_copy(basic_full, tmp_path, {trap + 0x168: plan.frames[0].rip, trap + 0x180: plan.frames[0].child_sp})
    walk = _walk(basic_full, path)
    assert len(walk.frames) == 3 and walk.frames[2].return_address == plan.frames[0].rip
    assert (walk.stop_reason, walk.stop_text) == ("loop", "frame 03 would repeat frame 00 (rip fffff804`70001000, "
                                                  "Child-SP ffffc08b`e0006b78): an unwind loop")


def test_user_mode_machine_frame_ends_the_kernel_stack(basic_full, tmp_path):
    trap = basic_full.stack.frames[2].trap_frame
    walk = _walk(basic_full, patched_copy(basic_full, tmp_path, {trap + 0x170: 0x33}))
    assert len(walk.frames) == 3 and walk.frames[2].trap_frame == trap
    assert (walk.stop_reason, walk.stop_text) == ("user-mode", "frame 02 (nt!KiPageFault+0x1a): the machine frame "
                                                  "returns to user mode (cs 33): the kernel stack ends here")


def test_stack_pointer_must_grow(zoo):
    """A frame pointer below the stack pointer would unwind to a lower rsp: stopped, not followed."""
    built = zoo["full"]
    frame = built.stack.frames[5]                              # unwindzoo!FramePointer+0x13
    walk = _walk(built, context={"rip": frame.rip, "rsp": frame.child_sp, "rbp": frame.child_sp - 0x100})
    assert len(walk.frames) == 1 and walk.stop_reason == "not-increasing"
    assert walk.stop_text == ("frame 00 (unwindzoo!FramePointer+0x13): the stack pointer would go from %08x`%08x to "
                              "%08x`%08x: it must grow from one frame to its caller"
                              % (frame.child_sp >> 32, frame.child_sp & 0xFFFFFFFF,
                                 (frame.child_sp - 0xD0) >> 32, (frame.child_sp - 0xD0) & 0xFFFFFFFF))


def test_frame_pointer_unknown_after_a_user_context(zoo):
    """--rip/--rsp without --rbp in a frame-pointer function: its frame base is unknown, so the walk says
    so and scans (the return address of FramePointer is found just above its frame)."""
    built = zoo["full"]
    frame = built.stack.frames[5]
    walk = _walk(built, context={"rip": frame.rip, "rsp": frame.child_sp})
    assert walk.notes[0].startswith("frame 00 (unwindzoo!FramePointer+0x13): unwindzoo: the function at rva 0x1180 "
                                    "uses frame register rbp, whose value is unknown here")
    assert (walk.frames[1].child_sp, walk.frames[1].instruction_pointer, walk.frames[1].found_by) == (
        built.stack.frames[6].child_sp, built.stack.frames[6].rip, "scanned")


def test_limits_stop_the_walk(zoo):
    built = zoo["bitmap"]
    walk = _walk(built, limits=WalkLimits(max_frames=3))
    assert rows(walk)[:2] == plan_rows(built.stack)[:2] and rows(walk)[2][1] is None
    assert (walk.stop_reason, walk.stop_text) == ("max-frames", "stopped after 3 frames (the frame limit)")
    walk = _walk(built, limits=WalkLimits(max_read_bytes=1))
    assert len(walk.frames) == 1 and walk.stop_reason == "read-budget"
    assert walk.stop_text.startswith("stopped after reading ") and walk.stop_text.endswith(" (the read limit)")


def test_walk_needs_rip_and_rsp(basic_full):
    target = OfflineDumpTarget.open(basic_full.dump_path)
    try:
        with pytest.raises(PytriageError, match="a stack walk needs rip and rsp; the context has rip"):
            target.stack({"rip": 1})
    finally:
        target.close()


# --- hand-built stacks: frame 0 in an epilog, frame 0 in a leaf function ---------------------------------

def test_frame_zero_inside_its_epilog(basic_doc, tmp_path):
    doc = copy.deepcopy(basic_doc)
    doc["stack"] = [{"function": "contosolwf!FilterReceiveNetBufferLists", "offset": "0x10", "epilog": True},
                    doc["stack"][4], doc["stack"][5]]                     # stopped at its `pop rbx`
    doc["context"] = {}
    built = build_scenario(parse_spec(doc), str(tmp_path), "full")
    walk = _walk(built)
    assert rows(walk) == plan_rows(built.stack)
    assert [f.found_by for f in walk.frames] == ["context", "epilog", "unwind"]
    assert walk.frames[1].registers["rbx"] == 0xFFFFC08BE0140000        # popped by the epilog


def test_frame_zero_in_a_leaf_function(basic_doc, tmp_path):
    """hal has no .pdata at all: a frame there is a leaf, its return address at [rsp]."""
    doc = copy.deepcopy(basic_doc)
    doc["stack"] = [{"module": "hal.dll", "offset": "0x1010"}, doc["stack"][4], doc["stack"][5]]
    doc["context"] = {}
    built = build_scenario(parse_spec(doc), str(tmp_path), "full")
    walk = _walk(built)
    assert rows(walk) == plan_rows(built.stack)
    assert [f.found_by for f in walk.frames] == ["context", "leaf", "unwind"]
    assert walk.frames[0].call_site == "hal+0x1010"


@pytest.mark.parametrize("offset, found", [("0x18", "epilog"), ("0x1c", "epilog")])
def test_frame_zero_in_a_frame_pointer_epilog(tmp_path, offset, found):
    """unwindzoo!FramePointer stopped at its `lea rsp,[rbp+20h]` (rsp from the frame pointer) or at the
    `pop rbp` after it; the rest of the zoo's stack above it. (Its `mov rbx,[rbp+10h]` before the epilog
    has restored rbx already: an epilog only undoes pushes and the allocation, so frame 0 keeps the
    caller's rbx.)"""
    with open(builtin_path("unwind-zoo"), encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["stack"] = [{"function": "unwindzoo!FramePointer", "offset": offset, "epilog": True}] + doc["stack"][6:]
    built = build_scenario(parse_spec(doc), str(tmp_path), "bitmap")
    walk = _walk(built)
    assert rows(walk) == plan_rows(built.stack) and len(walk.frames) == 8
    assert [f.found_by for f in walk.frames[:3]] == ["context", found, "machine-frame"]
    assert _registers(walk.frames) == [{r: f.registers[r] for r in NONVOLATILE} for f in built.stack.frames]
