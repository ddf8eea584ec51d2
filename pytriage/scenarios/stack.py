"""The crashing thread's call stack, laid out so that a real x64 unwinder walks exactly the spec's frames.

Why this exists: `k` in WinDbg (and our own unwinder, DESIGN 5) does not read a list of frames from the
dump; it starts at the context's rip/rsp and, frame by frame, finds the function's RUNTIME_FUNCTION in
``.pdata``, undoes its prolog as the UNWIND_INFO describes it (pushed registers, stack allocation, frame
pointer, machine frame) and reads the return address. A scenario that wants `k` to show given frames
must therefore *execute* the calls: the builder starts at the outermost frame with an empty stack and,
going inward, runs each function's prolog as its unwind codes say (pushing the caller's values of the
registers it saves), then the call (pushing the return address) or, for an interrupt or exception
handler (UWOP_PUSH_MACHFRAME), what the processor pushes on a trap (alignment, SS, RSP, RFLAGS, CS, RIP
and the error code). What is left at the end is frame 0: the crash CONTEXT's rip, rsp and registers.

Rules the plan enforces, each reported with the spec path (``stack[2].offset: ...``): a return address
must follow a ``call`` instruction in the caller's code; a frame that changes a nonvolatile register
must have saved it in its prolog (the x64 calling convention, which is what lets the unwinder restore
the caller's value); an exact rip (frame 0, an interrupted frame) inside an epilog must be declared
(``"epilog": true``): the builder then runs the epilog's instructions up to that rip (``add rsp`` /
``lea rsp, [rbp+d]``, pops), so the frame stops with its pops partly done. The supported unwind codes are
those Windows x64 code uses: UWOP_PUSH_NONVOL, UWOP_ALLOC_SMALL, UWOP_ALLOC_LARGE (both forms),
UWOP_SET_FPREG, UWOP_SAVE_NONVOL(_FAR), UWOP_SAVE_XMM128(_FAR) (no XMM values are written),
UWOP_PUSH_MACHFRAME; version 2's UWOP_EPILOG entries are skipped. Chained unwind info is described with
the function's ``chain`` (the primary function's unwind data is appended by the image builder, never
written into ``unwind`` by hand): the primary's prolog runs first, then the fragment's own codes.
A frame at an address in no module (``outside``: a call through a corrupt function pointer that faulted
fetching its first instruction) must be interrupted: it is a leaf, its caller's return address at its rsp,
which is how unwinders treat an rip outside every module.
"""

import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from pytriage.errors import SpecError

# x64 register numbers as UNWIND_CODE.OpInfo and UNWIND_INFO.FrameRegister use them.
REGISTER_NAMES = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                  "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
NONVOLATILE = ("rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15")
VOLATILE = ("rax", "rcx", "rdx", "r8", "r9", "r10", "r11")
FRAME_REGISTERS = NONVOLATILE + VOLATILE       # what a frame's "registers" may set (rsp/rip are the stack's)

UWOP_PUSH_NONVOL, UWOP_ALLOC_LARGE, UWOP_ALLOC_SMALL, UWOP_SET_FPREG = 0, 1, 2, 3
UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR, UWOP_EPILOG = 4, 5, 6
UWOP_SAVE_XMM128, UWOP_SAVE_XMM128_FAR, UWOP_PUSH_MACHFRAME = 8, 9, 10
UNW_FLAG_CHAININFO = 4

KGDT64_R0_CODE, KGDT64_R0_DATA = 0x10, 0x18
TRAP_RFLAGS = 0x10282                  # IF, SF, RF: what an interrupted kernel frame typically shows
KTRAP_FRAME_RIP = 0x168                # KTRAP_FRAME.Rip (x64): the machine frame sits at the trap frame's end
# KTRAP_FRAME's volatile registers, which a Windows trap handler saves (x64, the same since Windows 7).
KTRAP_FRAME_VOLATILE = {"rax": 0x30, "rcx": 0x38, "rdx": 0x40, "r8": 0x48, "r9": 0x50, "r10": 0x58, "r11": 0x60}
OUTERMOST_GAP = 0x100                  # bytes left above the outermost frame's return-address slot


@dataclass
class UnwindCode:
    offset: int                        # prolog offset just after the instruction
    op: int
    info: int
    value: int = 0                     # allocation size or save offset


@dataclass
class UnwindInfo:
    version: int
    flags: int
    prolog_size: int
    frame_register: int
    frame_offset: int                  # bytes (FrameOffset * 16)
    codes: List[UnwindCode]

    @property
    def machine_frame(self) -> Optional[UnwindCode]:
        return next((c for c in self.codes if c.op == UWOP_PUSH_MACHFRAME), None)


def parse_unwind_info(data: bytes) -> UnwindInfo:
    """Decode an UNWIND_INFO (ValueError with the reason if it is malformed or unsupported). Chained info
    is refused here: a spec gives it as the function's ``chain``, not as raw bytes."""
    if len(data) < 4:
        raise ValueError("UNWIND_INFO needs its 4-byte header")
    version, flags = data[0] & 7, data[0] >> 3
    if version not in (1, 2):
        raise ValueError("UNWIND_INFO version %d (only 1 and 2 exist)" % version)
    if flags & UNW_FLAG_CHAININFO:
        raise ValueError("chained unwind info in the unwind bytes (name the primary function with \"chain\")")
    count = data[2]
    if len(data) < 4 + 2 * count:
        raise ValueError("UNWIND_INFO says %d codes but has %d bytes" % (count, len(data)))
    slots = [struct.unpack_from("<BB", data, 4 + 2 * i) for i in range(count)]
    raw = [struct.unpack_from("<H", data, 4 + 2 * i)[0] for i in range(count)]
    codes: List[UnwindCode] = []
    i = 0

    def need(n: int, what: str) -> None:
        if i + n > count:
            raise ValueError("%s at code %d needs %d slots, only %d left" % (what, i, n, count - i))

    while i < count:
        offset, opbyte = slots[i]
        op, info = opbyte & 0xF, opbyte >> 4
        if op in (UWOP_PUSH_NONVOL, UWOP_ALLOC_SMALL, UWOP_SET_FPREG, UWOP_PUSH_MACHFRAME):
            value = info * 8 + 8 if op == UWOP_ALLOC_SMALL else 0
            if op == UWOP_PUSH_MACHFRAME and info > 1:
                raise ValueError("UWOP_PUSH_MACHFRAME info %d (0 or 1)" % info)
            codes.append(UnwindCode(offset, op, info, value))
            i += 1
        elif op == UWOP_ALLOC_LARGE:
            if info == 0:
                need(2, "UWOP_ALLOC_LARGE")
                codes.append(UnwindCode(offset, op, info, raw[i + 1] * 8))
                i += 2
            elif info == 1:
                need(3, "UWOP_ALLOC_LARGE")
                codes.append(UnwindCode(offset, op, info, raw[i + 1] | raw[i + 2] << 16))
                i += 3
            else:
                raise ValueError("UWOP_ALLOC_LARGE info %d (0 or 1)" % info)
        elif op in (UWOP_SAVE_NONVOL, UWOP_SAVE_XMM128):
            need(2, "UWOP_SAVE_*")
            codes.append(UnwindCode(offset, op, info, raw[i + 1] * (8 if op == UWOP_SAVE_NONVOL else 16)))
            i += 2
        elif op in (UWOP_SAVE_NONVOL_FAR, UWOP_SAVE_XMM128_FAR):
            need(3, "UWOP_SAVE_*_FAR")
            codes.append(UnwindCode(offset, op, info, raw[i + 1] | raw[i + 2] << 16))
            i += 3
        elif op == UWOP_EPILOG and version == 2:
            i += 1                     # epilog descriptions (version 2): no prolog operation
        else:
            raise ValueError("unwind code %d at slot %d is not supported" % (op, i))
    frame_register = data[3] & 0xF
    if any(c.op == UWOP_SET_FPREG for c in codes) and frame_register == 0:
        raise ValueError("UWOP_SET_FPREG without a frame register in the header")
    return UnwindInfo(version, flags, data[1], frame_register, (data[3] >> 4) * 16, codes)


# --- call and epilog recognition ---------------------------------------------------------------------

def _modrm_length(code: bytes, at: int) -> Optional[int]:
    """Length of a ModRM operand (ModRM, SIB, displacement) starting at ``at``; None past the end."""
    if at >= len(code):
        return None
    modrm = code[at]
    mod, rm = modrm >> 6, modrm & 7
    length = 1
    if mod != 3 and rm == 4:
        if at + 1 >= len(code):
            return None
        length += 1
        if mod == 0 and code[at + 1] & 7 == 5:
            length += 4
    if mod == 0 and rm == 5:
        length += 4                    # rip-relative disp32
    elif mod == 1:
        length += 1
    elif mod == 2:
        length += 4
    return length


def call_before(code: bytes, offset: int) -> Optional[Tuple[int, Optional[int]]]:
    """If a ``call`` instruction ends exactly at ``offset`` of ``code``: (its start, rel32 target or None).

    Recognised: ``e8 rel32`` and ``ff /2`` (indirect through a register or memory, with an optional REX
    prefix), the forms x64 compilers emit.
    """
    if offset >= 5 and code[offset - 5] == 0xE8:
        rel = struct.unpack_from("<i", code, offset - 4)[0]
        return offset - 5, offset + rel
    for start in range(max(0, offset - 8), offset - 1):
        at = start
        if 0x40 <= code[at] <= 0x4F:
            at += 1
        if at + 1 >= offset or code[at] != 0xFF or (code[at + 1] >> 3) & 7 != 2:
            continue
        length = _modrm_length(code, at + 1)
        if length is not None and at + 1 + length == offset:
            return start, None
    return None


def epilog_at(code: bytes, offset: int) -> bool:
    """Whether ``offset`` starts an epilog as the unwinder recognises one: [add rsp,imm] pops ret."""
    at = offset
    if code[at:at + 3] == b"\x48\x83\xc4":
        at += 4
    elif code[at:at + 3] == b"\x48\x81\xc4":
        at += 7
    while at < len(code):
        if 0x58 <= code[at] <= 0x5F:
            at += 1
        elif code[at] == 0x41 and at + 1 < len(code) and 0x58 <= code[at + 1] <= 0x5F:
            at += 2
        else:
            break
    return at < len(code) and code[at] in (0xC3, 0xC2)


def epilog_steps(code: bytes, offset: int) -> Optional[List[Tuple[int, str, int]]]:
    """The instructions of an epilog starting at ``offset``: ``(offset, kind, value)`` with kind "add"
    (value: bytes), "lea" (``lea rsp, [rbp+value]``), "pop" (value: register number) and a final "ret";
    None if no such epilog starts there."""
    at, out = offset, []
    if code[at:at + 3] == b"\x48\x83\xc4" and at + 4 <= len(code):
        out.append((at, "add", code[at + 3]))
        at += 4
    elif code[at:at + 3] == b"\x48\x81\xc4" and at + 7 <= len(code):
        out.append((at, "add", struct.unpack_from("<i", code, at + 3)[0]))
        at += 7
    elif code[at:at + 3] == b"\x48\x8d\x65" and at + 4 <= len(code):
        out.append((at, "lea", struct.unpack_from("<b", code, at + 3)[0]))
        at += 4
    elif code[at:at + 3] == b"\x48\x8d\xa5" and at + 7 <= len(code):
        out.append((at, "lea", struct.unpack_from("<i", code, at + 3)[0]))
        at += 7
    while at < len(code):
        if 0x58 <= code[at] <= 0x5F and code[at] != 0x5C:
            out.append((at, "pop", code[at] - 0x58))
            at += 1
        elif code[at] == 0x41 and at + 1 < len(code) and 0x58 <= code[at + 1] <= 0x5F:
            out.append((at, "pop", code[at + 1] - 0x58 + 8))
            at += 2
        else:
            break
    if at < len(code) and code[at] in (0xC3, 0xC2):
        return out + [(at, "ret", 0)]
    return None


def epilog_path(code: bytes, offset: int, prolog_size: int) -> Optional[List[Tuple[int, str, int]]]:
    """The epilog instructions that already ran when a frame stops at ``offset`` inside an epilog (from
    the epilog's start, the earliest one whose instructions reach ``offset``); None if ``offset`` is in
    no epilog."""
    for start in range(max(prolog_size, 0), offset + 1):
        steps = epilog_steps(code, start)
        if steps is not None and any(at == offset for at, _kind, _value in steps):
            return [step for step in steps if step[0] < offset]
    return None


# --- the plan -------------------------------------------------------------------------------------------

@dataclass
class FrameCode:
    """What the builder knows about one frame's location: resolved by the spec from names."""
    path: str                          # JSON path for errors, "stack[2]"
    name: str                          # module!Function+0xoff as a debugger prints it
    address: int                       # rip of the frame (return address for frames above 0)
    registers: Dict[str, int]          # values this frame sets (see FRAME_REGISTERS)
    code: Optional[bytes] = None       # the bytes of the function containing the address
    code_offset: int = 0               # address - function start
    unwind: Optional[bytes] = None     # its UNWIND_INFO (None: no RUNTIME_FUNCTION, a leaf)
    error_code: int = 0                # pushed by the processor when this frame's function takes a machine frame
    chain: List[bytes] = field(default_factory=list)   # UNWIND_INFO of the primary function(s), nearest first
    epilog: bool = False               # the frame stops inside an epilog (frame 0 or an interrupted frame)
    outside: bool = False              # an address in no module (a jump to garbage): only as an interrupted leaf


@dataclass
class PlannedFrame:
    number: int
    name: str
    rip: int
    child_sp: int                      # rsp while the frame runs (at its call, or when interrupted)
    return_address: int               # the next frame's rip (0 for the outermost)
    registers: Dict[str, int]          # every general register while the frame runs (nonvolatile: as unwound)
    trap_frame: Optional[int] = None   # KTRAP_FRAME of a machine-frame handler (its end holds the machine frame)


@dataclass
class StackPlan:
    frames: List[PlannedFrame]
    context: Dict[str, int]            # frame 0: rip, rsp and every general register
    writes: Dict[int, int] = field(default_factory=dict)    # qword slots: address -> value
    lowest: int = 0                    # lowest address written (the stack's depth)


def _unwind(frame: FrameCode) -> Optional[List[UnwindInfo]]:
    """The function's UNWIND_INFO, then its chained primary functions' (nearest first)."""
    if frame.unwind is None:
        return None
    levels = []
    for n, raw in enumerate([frame.unwind] + list(frame.chain)):
        try:
            levels.append(parse_unwind_info(raw))
        except ValueError as exc:
            what = "the function's unwind" if n == 0 else "the unwind of its chained primary function"
            raise SpecError("%s: %s: %s" % (frame.path, what, exc)) from None
    return levels


def _machine_frame(levels: Optional[List[UnwindInfo]]) -> Optional[UnwindCode]:
    for info in levels or []:
        if info.machine_frame is not None:
            return info.machine_frame
    return None


def plan_stack(frames: List[FrameCode], top: int) -> StackPlan:
    """Run the frames from the outermost (last) to frame 0 on a stack whose highest address is ``top``."""
    if not frames:
        raise SpecError("stack: at least one frame is needed")
    if top % 16:
        raise SpecError("stack: the stack top 0x%x is not 16-byte aligned" % top)
    infos = [_unwind(f) for f in frames]
    writes: Dict[int, int] = {}
    regs: Dict[str, int] = {name: 0 for name in REGISTER_NAMES if name != "rsp"}
    rsp = top - OUTERMOST_GAP - 8
    writes[rsp] = 0                    # the outermost frame's return address: the walk ends there
    planned: List[Optional[PlannedFrame]] = [None] * len(frames)
    trap_frames: Dict[int, int] = {}
    for index in range(len(frames) - 1, -1, -1):
        frame, levels = frames[index], infos[index]
        entry_regs = dict(regs)
        saved: Set[str] = set()
        fp_set = None
        # The primary function's prolog ran first (all of it), then each chained fragment's codes; the
        # innermost UNWIND_INFO's codes ran up to the frame's offset. Save offsets are relative to rsp
        # after each level's codes (the frame base an unwinder sees at that level).
        for depth in range(len(levels or []) - 1, -1, -1):
            info = levels[depth]                                           # type: ignore[index]
            applied = [c for c in reversed(info.codes) if depth > 0 or c.offset <= frame.code_offset]
            frame_base_saves: List[Tuple[str, int]] = []
            for code in applied:
                if code.op == UWOP_PUSH_NONVOL:
                    rsp -= 8
                    writes[rsp] = entry_regs[REGISTER_NAMES[code.info]]
                    saved.add(REGISTER_NAMES[code.info])
                elif code.op in (UWOP_ALLOC_SMALL, UWOP_ALLOC_LARGE):
                    rsp -= code.value
                elif code.op == UWOP_SET_FPREG:
                    fp_set = REGISTER_NAMES[info.frame_register]
                    if fp_set not in saved:
                        raise SpecError("%s: the function sets frame register %s without saving it first"
                                        % (frame.path, fp_set))
                    regs[fp_set] = rsp + info.frame_offset
                elif code.op in (UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR):
                    frame_base_saves.append((REGISTER_NAMES[code.info], code.value))
                    saved.add(REGISTER_NAMES[code.info])
                elif code.op == UWOP_PUSH_MACHFRAME:
                    pass               # pushed by the processor before the handler's first instruction
            base = regs[fp_set] - info.frame_offset if fp_set is not None and info.frame_register else rsp
            for name, offset in frame_base_saves:          # relative to the frame base, after the prolog
                writes[base + offset] = entry_regs[name]
        for name, value in frame.registers.items():
            outermost = index == len(frames) - 1           # its caller's values are not on the stack
            if name in NONVOLATILE and value != regs[name] and name not in saved and not outermost:
                raise SpecError("%s.registers.%s: %s does not save %s in its prolog, so its caller's value "
                                "would be lost; the unwinder could not restore it" % (frame.path, name,
                                                                                      frame.name, name))
            if name == fp_set and value != regs[name]:
                raise SpecError("%s.registers.%s: %s is the function's frame pointer (set by its prolog)"
                                % (frame.path, name, name))
            regs[name] = value
        machine = _machine_frame(infos[index - 1]) if index else None
        exact = index == 0 or machine is not None          # rip is where the frame stopped, not a return
        if frame.outside and machine is None:
            raise SpecError("%s.address: %s is in no module, so only an interrupted frame (right after a trap "
                            "handler) may stop there, as a leaf whose return address is at its rsp"
                            % (frame.path, frame.name))
        in_epilog = exact and frame.code is not None and frame.code_offset and \
            epilog_path(frame.code, frame.code_offset, levels[0].prolog_size if levels else 0) is not None
        if frame.epilog and not exact:
            raise SpecError("%s.epilog: only frame 0 or an interrupted frame stops inside an epilog; %s returns "
                            "to a call" % (frame.path, frame.name))
        if frame.epilog and not in_epilog:
            raise SpecError("%s.epilog: %s is not inside an epilog ([add rsp,n | lea rsp,[rbp+n]] pops ret)"
                            % (frame.path, frame.name))
        if in_epilog and not frame.epilog:
            raise SpecError("%s.offset: %s is in an epilog (say \"epilog\": true to stop the frame there)"
                            % (frame.path, frame.name))
        if frame.epilog:
            for _at, kind, value in epilog_path(frame.code, frame.code_offset,      # type: ignore[union-attr]
                                                levels[0].prolog_size if levels else 0) or []:
                if kind == "add":
                    rsp += value
                elif kind == "lea":
                    rsp = regs["rbp"] + value
                else:                                      # pop: the value the prolog pushed there
                    if rsp not in writes:
                        raise SpecError("%s.epilog: the epilog of %s pops a slot its prolog did not write"
                                        % (frame.path, frame.name))
                    regs[REGISTER_NAMES[value]] = writes[rsp]
                    rsp += 8
        planned[index] = PlannedFrame(index, frame.name, frame.address, rsp,
                                      frames[index + 1].address if index + 1 < len(frames) else 0,
                                      dict(regs))
        if index == 0:
            break
        callee = frames[index - 1]
        if machine is not None:
            # An interrupt or exception: this frame stops where it is, the processor pushes a machine frame.
            interrupted_rsp = rsp
            rsp &= ~0xF
            for value in (KGDT64_R0_DATA, interrupted_rsp, TRAP_RFLAGS, KGDT64_R0_CODE, frame.address):
                rsp -= 8
                writes[rsp] = value
            trap_frames[index - 1] = rsp - KTRAP_FRAME_RIP
            if machine.info:
                rsp -= 8
                writes[rsp] = callee.error_code
        else:
            if frame.code is None:
                raise SpecError("%s: %s is not inside a function of the spec, so there is no call "
                                "instruction before it" % (frame.path, frame.name))
            if call_before(frame.code, frame.code_offset) is None:
                raise SpecError("%s.offset: no call instruction ends at %s (a return address follows a call)"
                                % (frame.path, frame.name))
            rsp -= 8
            writes[rsp] = frame.address
    done = [p for p in planned if p is not None]
    done.sort(key=lambda p: p.number)
    for number, trap in trap_frames.items():
        done[number].trap_frame = trap
    context = dict(regs, rip=frames[0].address, rsp=done[0].child_sp)
    return StackPlan(done, context, writes, min(writes))


def trap_frame_writes(plan: StackPlan) -> Dict[int, bytes]:
    """KTRAP_FRAME contents for machine frames whose handler allocated a whole KTRAP_FRAME below it.

    The processor wrote the machine frame (Rip .. SegSs, the last 0x28 bytes of the KTRAP_FRAME) and the
    handler's prolog pushed Rbp and the error code; a Windows trap handler then stores the interrupted
    frame's volatile registers in the trap frame. The builder writes those from the interrupted frame's
    registers, so that `.trap` shows them.
    """
    out: Dict[int, bytes] = {}
    for handler in plan.frames:
        if handler.trap_frame is None or handler.child_sp > handler.trap_frame:
            continue                   # the handler's frame does not reach down to a whole KTRAP_FRAME
        interrupted = plan.frames[handler.number + 1].registers
        for name in VOLATILE:
            out[handler.trap_frame + KTRAP_FRAME_VOLATILE[name]] = struct.pack("<Q", interrupted[name])
    return out
