"""pytriage's stack walk on the REAL triage dump (Windows 10 19041, 0x1000007E in amdppm.sys).

Oracle: the corpus facts' 37-frame stack (rizin's walk with Microsoft's PDBs, return addresses re-checked
against the saved stack bytes). The triage dump keeps the thread's stack, the first 0x100 bytes of each
module and small blocks around addresses the stack points at; it keeps no ``.pdata``. amdppm.sys and
Wdf01000.sys come from the corpus symbol store (their images, by TimeDateStamp/SizeOfImage), so every
amdppm and Wdf01000 frame is unwound with real unwind data. ntoskrnl's image is not in the store: its
frames can only be found by scanning, and what that finds is measured here, frame by frame.
"""

import os

import pytest

from pytriage.analysis.stack_walk import WalkLimits, walk_stack
from pytriage.commands.stack import context_at
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.symbolizer import Symbolizer
from pytriage.target.offline import OfflineDumpTarget
from tests.conftest import CORPUS

SYMSTORE = os.path.join(CORPUS, "symstore")
KERNEL_ISF_DIR = os.path.join(CORPUS, "symbols")
EXCEPTION_CONTEXT = 0xFFFF850429891720        # 0x7E's BugCheckParameter4
BUGCHECK_CONTEXT = 0xFFFF9B00021FF340         # KPRCB.Context (the facts' registers at bugcheck)
TRAP_FRAME = 0xFFFF850429891F90               # built by nt!KiSegmentNotPresentFault


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, triage_dump_path):
    target = OfflineDumpTarget.open(triage_dump_path)
    cache = tmp_path_factory.mktemp("corpus-cache")
    store = SymbolStore("srv*%s*%s" % (cache, SYMSTORE))
    symbolizer = Symbolizer(target, store=store, isf_dirs=[KERNEL_ISF_DIR])
    yield target, symbolizer, str(cache)
    symbolizer.close()
    target.close()


def _facts(triage_facts):
    return [(int(f["sp"], 16), int(f["address"], 16)) for f in triage_facts["stack"]["frames"]]


def _frames(walk):
    return [(f.child_sp, f.instruction_pointer) for f in walk.frames]


def _rizin(symbol):
    """``pdb.amdppm.WriteIoMemRawEx+112`` (rizin, decimal offset) -> ``amdppm!WriteIoMemRawEx+0x70``."""
    _pdb, module, rest = symbol.split(".", 2)
    name, _, offset = rest.partition("+")
    return "%s!%s%s" % (module, name, "+0x%x" % int(offset) if offset else "")


def test_stack_from_the_exception_context_equals_the_facts(corpus, triage_facts):
    target, symbolizer, cache = corpus
    context = context_at(target, EXCEPTION_CONTEXT)
    assert context == target.context_record()        # the header's ContextRecord is the same CONTEXT
    walk = walk_stack(target, context, symbolizer)
    facts = _facts(triage_facts)
    frames = triage_facts["stack"]["frames"]
    # facts frames 8..24: the faulting amdppm frame, 5 amdppm callers, 10 Wdf01000 frames, nt!IofCallDriver
    assert _frames(walk)[:17] == facts[8:25]
    assert [f.return_address for f in walk.frames[:16]] == [address for _sp, address in facts[9:25]]
    assert walk.frames[0].call_site == "amdppm!WriteIoMemRawEx+0x70"          # the faulting frame
    assert [f.call_site for f in walk.frames[:6]] == [_rizin(frames[n]["rizin_symbol"]) for n in range(8, 14)]
    # no Wdf01000 PDB in the store and its exports do not cover these addresses: module+offset
    assert [f.call_site for f in walk.frames[6:16]] == ["Wdf01000+%s" % frames[n]["module_offset"]
                                                       for n in range(14, 24)]
    assert walk.frames[16].call_site == frames[24]["isf_symbol"] == "nt!IofCallDriver+0x55"
    # WriteGenAddrEx returns to `add rsp,20h; pop rbx; ret` right after its call: that epilog is run
    # forward (as Microsoft's unwinder does for every frame): the same caller as its unwind codes give
    assert [f.found_by for f in walk.frames[:17]] == ["context", "unwind", "epilog"] + ["unwind"] * 14
    assert target.read(walk.frames[1].instruction_pointer, 6) == bytes.fromhex("4883c4205bc3")
    amdppm = os.path.join(cache, "amdppm.sys", "C9C030003b000", "amdppm.sys")
    wdf = os.path.join(cache, "Wdf01000.sys", "A9A9D36Ed1000", "Wdf01000.sys")
    assert [f.unwind_data for f in walk.frames[:16]] == ["image file " + amdppm] * 6 + ["image file " + wdf] * 10
    # nt has no unwind data: the scan finds facts frame 34 (a verified call through guard_dispatch_icall)
    # and passes over the 21 code pointers in between, of which frames 25-33 are real: none of their
    # calls can be checked (the code before them is not in the dump, and the kernel's image is not in
    # the store); one that can (nt!PnpSetDeviceAffinityThread+0x55) calls another function.
    assert _frames(walk)[17:] == [facts[34]]
    scanned = walk.frames[17]
    assert (scanned.found_by, scanned.call_site, scanned.scan.evidence, scanned.scan.passed_over) == (
        "scanned", "nt!PspSystemThreadStartup+0x55", "call", 21)
    assert scanned.scan.instruction == "call 0xfffff8047bdfe620 at fffff804`7bd17e20"
    assert (walk.stop_reason, walk.stop_text) == (
        "unreadable", "frame 11 (nt!PspSystemThreadStartup+0x55): no unwind data, and the stack scan for its return "
        "address reached unreadable memory at ffff8504`29893000 (2 values pointed into module code, none after a "
        "verified call)")
    assert walk.notes == [
        "amdppm: unwind data from the image file %s (not in the dump)" % amdppm,
        "Wdf01000: unwind data from the image file %s (not in the dump)" % wdf,
        "nt has no unwind data: its exception directory (.pdata at rva 0xc9000) is not in the dump; ntoskrnl.exe "
        "0D8333E61046000 is not on the symbol path",
        "frame 11 was found by scanning 0x4e0 bytes of stack above frame 10, passing over 21 values into module "
        "code without a verified call before them: frames may be missing between the two"]


# Values the unverified scan takes that are not frames of the facts' stack: stale return addresses and
# code pointers in locals (sp, address), measured on this dump.
EXTRA_FROM_EXCEPTION = [
    (0xFFFF850429892850, 0xFFFFF8047C10AFF5),     # nt!PnpEnableWatchdog+0x41
    (0xFFFF8504298928E0, 0xFFFFF8047C123B86),     # nt!IopUncacheInterfaceInformation+0xca
    (0xFFFF850429892960, 0xFFFFF8047BD6B5B2),     # nt!PoFxActivateDevice+0xe
    (0xFFFF850429892A10, 0xFFFFF8047BD79665),     # nt!PnpDiagnosticTrace+0x5d
    (0xFFFF850429892AF0, 0xFFFFF8047BC25D67),     # nt!KeRemovePriQueue+0x1a7
]


def test_unverified_scan_finds_every_kernel_frame_and_some_false_ones(corpus, triage_facts):
    target, symbolizer, _cache = corpus
    walk = walk_stack(target, context_at(target, EXCEPTION_CONTEXT), symbolizer,
                      limits=WalkLimits(scan_unverified=True))
    facts = _facts(triage_facts)
    frames = _frames(walk)
    assert frames[:17] == facts[8:25]
    scanned = frames[17:]
    assert [f for f in scanned if f in facts] == facts[25:36]          # all 11, in order
    assert [f for f in scanned if f not in facts] == EXTRA_FROM_EXCEPTION
    assert all(f.found_by == "scanned" for f in walk.frames[17:])
    evidence = [f.scan.evidence for f in walk.frames[17:]]
    assert evidence.count("call") == 1 and evidence.count("code-unavailable") == 15
    assert walk.frames[-1].call_site == "nt!KxStartSystemThread+0x28" and walk.stop_reason == "unreadable"


def test_bugcheck_context_crosses_the_trap_frame_by_the_handlers_name(corpus, triage_facts):
    """From KeBugCheckEx (the KPRCB context) every nt frame needs a scan; nt!KiSegmentNotPresentFault is a
    trap handler, so its KTRAP_FRAME (at its stack pointer, layout from the kernel's ISF) leads to the
    faulting amdppm frame, unwound from there exactly as from the 0x7E CONTEXT."""
    target, symbolizer, _cache = corpus
    context = context_at(target, BUGCHECK_CONTEXT)
    assert context["rip"] == int(triage_facts["registers_at_bugcheck"]["regs"]["rip"], 16)
    walk = walk_stack(target, context, symbolizer, limits=WalkLimits(scan_unverified=True))
    facts = _facts(triage_facts)
    frames = _frames(walk)
    assert [f for f in frames if f in facts] == facts[:36]            # every frame of the facts, in order
    # 28 values that are no frame of the facts; one more (nt!PspSystemThreadStartup+0x55 right above a
    # scanned frame of that same address) is dropped as a stale copy
    assert len(frames) == 64
    handler = next(f for f in walk.frames if f.trap_frame is not None)
    assert (handler.call_site, handler.child_sp, handler.trap_frame) == (
        "nt!KiSegmentNotPresentFault+0x335", TRAP_FRAME, TRAP_FRAME)
    after = walk.frames[handler.number + 1]
    assert (after.found_by, after.call_site, after.child_sp) == ("trap-frame", "amdppm!WriteIoMemRawEx+0x70",
                                                                 facts[8][0])
    assert _frames(walk)[handler.number + 1:handler.number + 18] == facts[8:25]
    assert walk.trap_frame_layout.startswith("nt (") and "ntkrnlmp" in walk.trap_frame_layout


def test_bugcheck_context_reaches_the_faulting_driver_through_a_trap_frame_found_on_the_stack(corpus, triage_facts):
    """Strictly (calls must be verified), the scan from KeBugCheckEx finds a true frame (facts 2) and a
    stale return address, then nothing checkable below facts 34; the _KTRAP_FRAME that
    KiSegmentNotPresentFault built lies below that hit, so it wins: its saved Rsp is exactly the trap
    frame's end, its selectors are the kernel's, and the value just below it returns into a trap handler.
    From there on the stack is the exception context's, frame for frame."""
    target, symbolizer, _cache = corpus
    walk = walk_stack(target, context_at(target, BUGCHECK_CONTEXT), symbolizer)
    facts = _facts(triage_facts)
    stale = (0xFFFF850429890F98, 0xFFFFF8047BD17E25)        # nt!PspSystemThreadStartup+0x55, left in a local
    assert _frames(walk) == [facts[0], facts[2], stale, facts[7]] + facts[8:25] + [facts[34]]
    assert [f.call_site for f in walk.frames[:4]] == [
        "nt!KeBugCheckEx", "nt!_C_specific_handler+0xa2", "nt!PspSystemThreadStartup+0x55",
        "nt!KiSegmentNotPresentFault+0x335"]
    assert [f.found_by for f in walk.frames[:5]] == ["context", "scanned", "scanned", "trap-search", "trap-frame"]
    handler = walk.frames[3]
    assert (handler.child_sp, handler.trap_frame) == (TRAP_FRAME, TRAP_FRAME)
    assert walk.frames[2].return_address == facts[7][1]
    assert "frame 03 (nt!KiSegmentNotPresentFault+0x335) was found through the _KTRAP_FRAME at ffff8504`29891f90 " \
        "on the stack, 0xff8 bytes above frame 02: frames between the two may be missing" in walk.notes
    assert walk.stop_reason == "unreadable"
