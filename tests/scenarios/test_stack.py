"""The spec's `stack`: the builder lays out frames so that an x64 unwinder walks exactly them.

Oracle without wine: an unwinder written here from Microsoft's x64 exception-handling documentation
(RtlVirtualUnwind's rules), reading UNWIND_INFO through pefile's parser and the stack through kdmp-parser
(both independent of the builder). Microsoft's own engine walks the same stacks in tests/oracle_dbgeng.
"""

import copy
import json
import os
import re
import struct

import kdmp_parser
import pefile
import pytest

from pytriage.errors import SpecError
from pytriage.scenarios import build_builtin
from pytriage.scenarios.builder import build_scenario
from pytriage.scenarios.spec import parse_spec
from pytriage.scenarios.stack import (
    NONVOLATILE,
    REGISTER_NAMES,
    UWOP_ALLOC_LARGE,
    UWOP_ALLOC_SMALL,
    UWOP_EPILOG,
    UWOP_PUSH_MACHFRAME,
    UWOP_PUSH_NONVOL,
    UWOP_SAVE_NONVOL,
    UWOP_SAVE_NONVOL_FAR,
    UWOP_SET_FPREG,
    call_before,
    epilog_at,
    parse_unwind_info,
)
from tests.conftest import REPO

# --- an independent unwinder: pefile's UNWIND_INFO, kdmp-parser's memory --------------------------------

class _Memory:
    def __init__(self, oracle):
        self.oracle = oracle

    def qword(self, va):
        page = self.oracle.read_virtual_page(va & ~0xFFF)
        assert page is not None, hex(va)
        return struct.unpack_from("<Q", bytes(page), va & 0xFFF)[0]


def _pe_images(built):
    return [(bm.spec.base, bm.spec.size, pefile.PE(data=bm.image.data)) for bm in built.modules]


def _runtime_function(images, rip):
    for base, size, pe in images:
        if base <= rip < base + size:
            rva = rip - base
            for entry in getattr(pe, "DIRECTORY_ENTRY_EXCEPTION", []):
                if entry.struct.BeginAddress <= rva < entry.struct.EndAddress:
                    return base, entry
            return base, None
    raise AssertionError("0x%x is in no module" % rip)


def _epilog(code, regs, memory):
    """If ``code`` (at an exact rip) is an epilog -- [add rsp,n | lea rsp,[rbp+n]] pops ret -- run it and
    return the caller's rip; None otherwise."""
    regs = dict(regs)
    at = 0
    if code[:3] == b"\x48\x83\xc4":
        regs["rsp"] += code[3]
        at = 4
    elif code[:3] == b"\x48\x81\xc4":
        regs["rsp"] += struct.unpack_from("<i", code, 3)[0]
        at = 7
    elif code[:3] == b"\x48\x8d\x65":
        regs["rsp"] = regs["rbp"] + struct.unpack_from("<b", code, 3)[0]
        at = 4
    while True:
        if 0x58 <= code[at] <= 0x5F:
            regs[REGISTER_NAMES[code[at] - 0x58]] = memory.qword(regs["rsp"])
            regs["rsp"] += 8
            at += 1
        elif code[at] == 0x41 and 0x58 <= code[at + 1] <= 0x5F:
            regs[REGISTER_NAMES[code[at + 1] - 0x50]] = memory.qword(regs["rsp"])
            regs["rsp"] += 8
            at += 2
        else:
            break
    if code[at] != 0xC3:
        return None
    rip = memory.qword(regs["rsp"])
    regs["rsp"] += 8
    return rip, regs


def walk(built, dump_path):
    """(child_sp, rip, nonvolatile registers) per frame, from the dump's context until a zero return.

    Chained unwind info is followed with pefile's own resolution of the chain (the primary's codes all
    apply); a frame stopped where it was (frame 0, after a machine frame) inside an epilog runs it."""
    oracle = kdmp_parser.KernelDumpParser(dump_path)
    memory = _Memory(oracle)
    ctx = oracle.context
    regs = {name: getattr(ctx, name.capitalize()) for name in REGISTER_NAMES}
    rip = ctx.Rip
    images = _pe_images(built)
    frames = []
    exact = True
    while rip and len(frames) < 32:
        frames.append((regs["rsp"], rip, {n: regs[n] for n in NONVOLATILE}))
        base, entry = _runtime_function(images, rip)
        if entry is None:                                   # leaf: the return address is at rsp
            rip = memory.qword(regs["rsp"])
            regs["rsp"] += 8
            exact = False
            continue
        info = entry.unwindinfo
        offset = rip - base - entry.struct.BeginAddress
        if exact and offset >= info.SizeOfProlog:
            pe = next(pe for b, _size, pe in images if b == base)
            done = _epilog(pe.get_data(rip - base, 16), regs, memory)
            if done is not None:
                rip, regs = done
                exact = False
                continue
        # pefile lists version 2's UWOP_EPILOG slots among the codes: they describe no prolog operation
        levels = [[c for c in info.UnwindCodes if c.struct.UnwindOp != UWOP_EPILOG and c.struct.CodeOffset <= offset]]
        chained = info.get_chained_function_entry() if info.UNW_FLAG_CHAININFO else None
        while chained is not None:
            levels.append(list(chained.unwindinfo.UnwindCodes))
            chained = chained.unwindinfo.get_chained_function_entry() \
                if chained.unwindinfo.UNW_FLAG_CHAININFO else None
        fp = info.FrameRegister and any(c.struct.UnwindOp == UWOP_SET_FPREG for level in levels for c in level)
        machine = False
        for codes in levels:
            if fp:
                regs["rsp"] = regs[REGISTER_NAMES[info.FrameRegister]] - info.FrameOffset * 16
                fp = False                                  # the frame register is restored by a later pop
            frame_base = regs["rsp"]
            for code in codes:
                op = code.struct.UnwindOp
                if op == UWOP_PUSH_NONVOL:
                    regs[REGISTER_NAMES[code.struct.Reg]] = memory.qword(regs["rsp"])
                    regs["rsp"] += 8
                elif op in (UWOP_ALLOC_SMALL, UWOP_ALLOC_LARGE):
                    regs["rsp"] += code.get_alloc_size()
                elif op in (UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR):
                    regs[REGISTER_NAMES[code.struct.Reg]] = memory.qword(frame_base + code.get_offset())
                elif op == UWOP_PUSH_MACHFRAME:
                    at = regs["rsp"] + (8 if code.struct.OpInfo else 0)
                    rip, regs["rsp"] = memory.qword(at), memory.qword(at + 0x18)
                    machine = True
        if not machine:
            rip = memory.qword(regs["rsp"])
            regs["rsp"] += 8
        exact = machine
    return frames


@pytest.mark.parametrize("kind", ["full", "bitmap"])
@pytest.mark.parametrize("scenario", ["basic", "unwind-zoo"])
def test_an_unwinder_walks_exactly_the_spec_frames(tmp_path, kind, scenario):
    built = build_builtin(scenario, str(tmp_path), kind)
    plan = built.stack
    walked = walk(built, built.dump_path)
    assert [(sp, rip) for sp, rip, _ in walked] == [(f.child_sp, f.rip) for f in plan.frames]
    for (_sp, _rip, regs), frame in zip(walked, plan.frames):
        assert regs == {n: frame.registers[n] for n in NONVOLATILE}, frame.name
    if scenario != "basic":
        assert len(walked) == 13
        return
    names = [f.name for f in built.spec.stack]
    assert names == ["nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0xc", "nt!KiPageFault+0x1a",
                     "contosolwf!FilterReceiveNetBufferLists+0x9", "ndis!ndisCallReceiveHandler+0xf",
                     "ndis!NdisMIndicateReceiveNetBufferLists+0x9"]
    # the nonvolatile registers pushed by the prologs are what the outer frames set
    assert plan.frames[5].registers["rbx"] == 0xFFFFC08BE0160000 and plan.frames[5].registers["rsi"] == 1
    assert plan.frames[3].registers["rbx"] == 0xFFFFC08BE0140000
    assert plan.frames[2].registers["rbp"] == plan.frames[2].child_sp + 0x80      # KiPageFault's frame pointer


def test_context_and_trap_frame_come_from_the_stack(basic_full):
    plan = basic_full.stack
    oracle = kdmp_parser.KernelDumpParser(basic_full.dump_path)
    assert (oracle.context.Rip, oracle.context.Rsp) == (plan.frames[0].rip, plan.frames[0].child_sp)
    assert oracle.context.Rcx == 0xD1 and oracle.context.Rdx == 0x30              # KeBugCheckEx's arguments
    assert plan.frames[0].rip == basic_full.spec.kernel.base + 0x1000
    # KiPageFault's frame is a KTRAP_FRAME: the machine frame at its end, the faulting rip and rsp in it
    trap = plan.frames[2].trap_frame
    assert trap == plan.frames[2].child_sp
    memory = _Memory(oracle)
    assert memory.qword(trap + 0x168) == basic_full.spec.bugcheck_parameters[3] == plan.frames[3].rip
    assert memory.qword(trap + 0x180) == plan.frames[3].child_sp
    assert memory.qword(trap + 0x170) == 0x10 and memory.qword(trap + 0x188) == 0x18
    assert memory.qword(trap + 0x38) == plan.frames[3].registers["rcx"]           # KTRAP_FRAME.Rcx


def test_basic_return_addresses_follow_calls_to_the_callee(basic_full):
    """The built-in scenario's code is real: each return address follows a call to the next inner frame
    (e8 rel32 within a module, an indirect call across modules)."""
    frames = basic_full.spec.stack
    for inner, outer in zip(frames, frames[1:]):
        if inner.function.unwind is not None and parse_unwind_info(inner.function.unwind).machine_frame:
            continue                                         # interrupted, not called
        found = call_before(outer.function.code, outer.rva - outer.function.rva)
        assert found is not None, outer.name
        start, target = found
        if target is not None:
            assert outer.function.rva + target == inner.function.rva, outer.name


# --- the pieces --------------------------------------------------------------------------------------

@pytest.mark.parametrize("hexbytes, expected", [
    ("01050200 0532 0130", (5, 0, 0, [(5, UWOP_ALLOC_SMALL, 0x20), (1, UWOP_PUSH_NONVOL, 0)])),
    ("01070200 0701 2700", (7, 0, 0, [(7, UWOP_ALLOC_LARGE, 0x138)])),
    ("01080300 0811 0000 0200", (8, 0, 0, [(8, UWOP_ALLOC_LARGE, 0x20000)])),
    ("01100585 1003 0801 2b00 0150 001a 0000", (0x10, 5, 0x80, [
        (0x10, UWOP_SET_FPREG, 0), (8, UWOP_ALLOC_LARGE, 0x158), (1, UWOP_PUSH_NONVOL, 0),
        (0, UWOP_PUSH_MACHFRAME, 0)])),
    ("010a0300 0a34 0600 0432", (0xA, 0, 0, [(0xA, UWOP_SAVE_NONVOL, 0x30), (4, UWOP_ALLOC_SMALL, 0x20)])),
])
def test_unwind_info_is_decoded(hexbytes, expected):
    info = parse_unwind_info(bytes.fromhex(hexbytes.replace(" ", "")))
    assert (info.prolog_size, info.frame_register, info.frame_offset,
            [(c.offset, c.op, c.value) for c in info.codes]) == expected


@pytest.mark.parametrize("hexbytes, message", [
    ("0100", "4-byte header"),
    ("21000000", "chained unwind info"),
    ("01040200 0462", "says 2 codes"),
    ("01040100 0407", "unwind code 7"),
    ("01040100 0401", "needs 2 slots"),
    ("03000000", "version 3"),
])
def test_bad_unwind_info_is_refused(hexbytes, message):
    with pytest.raises(ValueError, match=message):
        parse_unwind_info(bytes.fromhex(hexbytes.replace(" ", "")))


@pytest.mark.parametrize("code, offset, expected", [
    ("4883ec28 e800000000 90", 9, (4, 9)),          # call rel32 (target = next instruction here)
    ("ff5018 90", 3, (0, None)),                    # call [rax+18h]
    ("ff5320 90", 3, (0, None)),                    # call [rbx+20h]
    ("ffd0 90", 2, (0, None)),                      # call rax
    ("41ffd0 90", 3, (0, None)),                    # call r8
    ("ff1500100000 90", 6, (0, None)),              # call [rip+1000h]
    ("ff94240001000090", 7, (0, None)),             # call [rsp+100h]
    ("4883c428 c3", 4, None),                       # add rsp,28h is no call
    ("ff7018 90", 3, None),                         # push [rax+18h] (ff /6) is no call
])
def test_call_instructions_are_recognised(code, offset, expected):
    assert call_before(bytes.fromhex(code.replace(" ", "")), offset) == expected


def test_epilogs_are_recognised():
    code = bytes.fromhex("53 4883ec20 488b4208 8b4030 4883c420 5b c3".replace(" ", ""))
    assert [o for o in range(len(code)) if epilog_at(code, o)] == [0x0C, 0x10, 0x11]


# --- spec errors -------------------------------------------------------------------------------------

def _build(doc, tmp_path):
    return build_scenario(parse_spec(doc), str(tmp_path))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["stack"][1].update(function="nt!NoSuch"), r"stack\[1\]\.function: ntoskrnl.exe has no function"),
    (lambda d: d["stack"][1].update(function="nosuch!F"), r"stack\[1\]: no module 'nosuch'"),
    (lambda d: d["stack"][1].update(offset="0x40"), r"stack\[1\]\.offset: 0x40 is past the end"),
    (lambda d: d["stack"][1].update(module="nt"), r"stack\[1\]: give either"),
    (lambda d: d["stack"][1].update(registers={"rsp": "0x1"}), r"stack\[1\]\.registers\.rsp: not a general"),
    (lambda d: d["stack"][1].update(color="red"), r"stack\[1\]: unknown key\(s\) color"),
    (lambda d: d.update(stack=[]), r"stack: at least one frame"),
    (lambda d: d["stack"][4].update(offset="0xe"), r"stack\[4\]\.offset: no call instruction ends at "
                                                   r"ndis!ndisCallReceiveHandler\+0xe"),
    (lambda d: d["stack"][3].update(registers={"rsi": "0x5"}), r"stack\[3\]\.registers\.rsi: "
                                                               r"contosolwf!FilterReceiveNetBufferLists\+0x9 "
                                                               r"does not save rsi"),
    (lambda d: d["context"].update(rbx="0x7"), r"stack\[0\]\.registers\.rbx: nt!KeBugCheckEx does not save rbx"),
    (lambda d: d["context"].update(rip="0xfffff80475001029"), r"context\.rip: 0xfffff80475001029 disagrees with "
                                                              r"the stack, whose frame 0 gives 0xfffff80470001000"),
    (lambda d: d["stack"][3].update(offset="0x10"), r"stack\[3\]\.offset: contosolwf!FilterReceiveNetBufferLists"
                                                    r"\+0x10 is in an epilog"),
    (lambda d: d.update(stack=[{"function": "contosolwf!FilterReceiveNetBufferLists", "offset": "0x11"}]),
     r"stack\[0\]\.offset: contosolwf!FilterReceiveNetBufferLists\+0x11 is in an epilog"),
    (lambda d: d["stack"].append({"module": "hal.dll", "offset": "0x1010"}),
     r"stack\[6\]: hal\+0x1010 is not inside a function"),
    (lambda d: d["kernel"]["functions"][2].update(unwind="21000000"), r"stack\[2\]: the function's unwind: "
                                                                      r"chained unwind info in the unwind bytes"),
    (lambda d: d["stack"][3].update(epilog=True), r"stack\[3\]\.epilog: contosolwf!FilterReceiveNetBufferLists\+0x9 "
                                                  r"is not inside an epilog"),
    (lambda d: d["stack"][4].update(epilog=True), r"stack\[4\]\.epilog: only frame 0 or an interrupted frame"),
    (lambda d: d["stack"][3].update(epilog="yes"), r"stack\[3\]\.epilog: expected true or false"),
    (lambda d: d["modules"][4]["functions"][1].update(chain="NoSuch"),
     r"modules\[4\]\.functions\[1\]\.chain: the module has no function 'NoSuch'"),
    (lambda d: (d["modules"][4]["functions"][0].update(chain="FilterReceiveNetBufferLists"),
                d["modules"][4]["functions"][1].update(chain="FilterSendNetBufferLists")),
     r"modules\[4\]\.functions\[0\]\.chain: the chain of FilterSendNetBufferLists loops back"),
    (lambda d: d["modules"][4]["functions"][1].update(chain=7), r"modules\[4\]\.functions\[1\]\.chain: expected"),
])
def test_stack_mistakes_are_one_line_errors(basic_doc, tmp_path, mutate, message):
    doc = copy.deepcopy(basic_doc)
    mutate(doc)
    with pytest.raises(SpecError, match=message):
        _build(doc, tmp_path)


def test_chained_unwind_info_is_written_with_the_primary_function(tmp_path):
    """``chain``: the fragment's UNWIND_INFO gets UNW_FLAG_CHAININFO and, after its codes, the primary's
    RUNTIME_FUNCTION (as pefile resolves it); the primary's own UNWIND_INFO is unchanged."""
    built = build_builtin("unwind-zoo", str(tmp_path), "bitmap")
    zoo = next(m for m in built.modules if m.spec.name == "unwindzoo.sys")
    pe = pefile.PE(data=zoo.image.data)
    by_start = {e.struct.BeginAddress: e for e in pe.DIRECTORY_ENTRY_EXCEPTION}
    fragment, primary = by_start[0x1100], by_start[0x10C0]
    assert fragment.unwindinfo.UNW_FLAG_CHAININFO and not primary.unwindinfo.UNW_FLAG_CHAININFO
    assert fragment.unwindinfo.get_chained_function_entry() is primary
    raw = zoo.image.data[fragment.struct.UnwindData:fragment.struct.UnwindData + 20]
    assert raw == bytes.fromhex("21050200 0574 0200") + struct.pack("<III", 0x10C0, 0x10CA, primary.struct.UnwindData)


def test_module_frames_and_deep_stacks(basic_doc, tmp_path):
    """A frame named by module and RVA finds its function; the outermost frame may set any register;
    a stack deeper than a kernel stack gets a bigger one."""
    doc = copy.deepcopy(basic_doc)
    doc["stack"][5] = {"module": "ndis.sys", "offset": "0x1089", "registers": {"r12": "0x12"}}
    built = _build(doc, tmp_path / "a")
    assert built.stack.frames[5].name == "ndis!NdisMIndicateReceiveNetBufferLists+0x9"
    assert built.stack.frames[0].registers["r12"] == 0x12
    doc = copy.deepcopy(basic_doc)
    big = doc["modules"][1]["functions"][2]
    big["hex"] = "4881ec08800000 e8b4ffffff 90 4881c408800000 c3"      # sub rsp,8008h
    big["unwind"] = "01070200 0701 0110"
    doc["stack"][5]["offset"] = "0xc"
    built = _build(doc, tmp_path / "b")
    assert walk(built, built.dump_path)[-1][0] == built.stack.frames[-1].child_sp
    assert max(built.stack.writes) - built.stack.lowest > 0x8000          # deeper than the 0x6000 default


# --- the stacks docs/scenarios.md shows are the ones the builder lays out -----------------------------

_DOC_K = re.compile(r"^([0-9a-f]{2}) ([0-9a-f]{8}`[0-9a-f]{8}) ([0-9a-f]{8}`[0-9a-f]{8}) (?::[^:]*: )?(\S+)"
                    r"(?: \(TrapFrame @ ([0-9a-f]{8}`[0-9a-f]{8})\))?$")


def _doc_k_blocks():
    with open(os.path.join(REPO, "docs", "scenarios.md"), encoding="utf-8") as fh:
        text = fh.read()
    blocks = re.findall(r"```\n( # Child-SP.*?)```", text, re.S)
    return text, [[_DOC_K.match(line).groups() for line in block.splitlines()[1:]] for block in blocks]


def _h(text):
    return int(text.replace("`", ""), 16) if text else None


def test_the_documented_k_outputs_are_what_the_builder_lays_out(tmp_path, basic_full):
    text, (example, basic) = _doc_k_blocks()
    doc = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    built = build_scenario(parse_spec(doc), str(tmp_path), "full")
    for shown, frames, dump in ((example, built.stack.frames, built), (basic, basic_full.stack.frames, basic_full)):
        assert [(int(n, 16), _h(sp), _h(ret), name, _h(trap)) for n, sp, ret, name, trap in shown] == \
            [(f.number, f.child_sp, f.return_address, f.name, f.trap_frame) for f in frames]
        assert [(sp, rip) for sp, rip, _regs in walk(dump, dump.dump_path)] == [(f.child_sp, f.rip) for f in frames]
