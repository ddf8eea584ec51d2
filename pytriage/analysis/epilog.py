"""Is an instruction pointer inside an epilog? If so, run the rest of the epilog forward.

Microsoft's x64 conventions restrict epilogs to one shape so that an unwinder can recognise them from
the code alone (unwind codes describe only prologs):

    [add rsp, imm8/imm32  |  lea rsp, [frame register + disp8/disp32]]   (only at the epilog's start)
    pop <register>  (zero or more, 8-byte pops: 58+r, or 41 58+r)
    ret | ret imm16 | rep ret | jmp rel8/rel32 out of the function | jmp qword ptr [mod 00 operand]

When the instruction pointer is at any instruction of such a sequence, the function has already undone
part of its prolog, so applying the unwind codes would be wrong; the unwinder runs the remaining
instructions instead (each ``pop`` restores a register, the ``ret``/tail ``jmp`` leaves the frame).

The check applies to every frame, as in Microsoft's unwinder: for a return address just after a call
that ends a function's body, running the epilog forward and applying the unwind codes agree whenever
the epilog matches the prolog.
"""

import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from pytriage.analysis.unwind_codes import REGISTERS

MAX_EPILOG_BYTES = 7 + 2 * 16 + 8     # add/lea, sixteen pops, the longest jmp


@dataclass(frozen=True)
class EpilogStep:
    kind: str                          # "add", "lea", "pop", "ret", "jmp"
    register: Optional[str] = None     # pop: the register; lea: the base (frame) register
    value: int = 0                     # add: bytes; lea: displacement


def _rsp_adjust(code: bytes, at: int, frame_register: Optional[int]) -> Optional[tuple]:
    """(length, step) of ``add rsp, imm`` or ``lea rsp, [frame register + disp]`` at ``at``."""
    if code[at:at + 3] == b"\x48\x83\xc4" and len(code) >= at + 4:
        return 4, EpilogStep("add", value=code[at + 3] if code[at + 3] < 0x80 else code[at + 3] - 0x100)
    if code[at:at + 3] == b"\x48\x81\xc4" and len(code) >= at + 7:
        return 7, EpilogStep("add", value=struct.unpack_from("<i", code, at + 3)[0])
    if frame_register is None or len(code) < at + 4:
        return None
    rex, opcode, modrm = code[at], code[at + 1], code[at + 2]
    if rex not in (0x48, 0x49) or opcode != 0x8D or (modrm >> 3) & 7 != 4:       # lea rsp, [...]
        return None
    base = (modrm & 7) | (8 if rex == 0x49 else 0)
    mod, length = modrm >> 6, 3
    if modrm & 7 == 4:                                                            # r12 needs a SIB byte
        if code[at + 3] != 0x24:
            return None
        length += 1
    if base != frame_register or mod not in (1, 2):
        return None
    if mod == 1:
        if len(code) < at + length + 1:
            return None
        disp = struct.unpack_from("<b", code, at + length)[0]
        return length + 1, EpilogStep("lea", REGISTERS[base], disp)
    if len(code) < at + length + 4:
        return None
    return length + 4, EpilogStep("lea", REGISTERS[base], struct.unpack_from("<i", code, at + length)[0])


def _terminator(code: bytes, at: int, address: int, inside: Callable[[int], bool]) -> Optional[EpilogStep]:
    """``ret`` or a jmp that leaves the function, at ``at`` (``address`` is its virtual address)."""
    op = code[at] if at < len(code) else None
    if op in (0xC3, 0xC2):
        return EpilogStep("ret")
    if op == 0xF3 and code[at + 1:at + 2] == b"\xc3":
        return EpilogStep("ret")
    if op == 0xE9 and len(code) >= at + 5:
        target = address + 5 + struct.unpack_from("<i", code, at + 1)[0]
        return None if inside(target) else EpilogStep("jmp")
    if op == 0xEB and len(code) >= at + 2:
        target = address + 2 + struct.unpack_from("<b", code, at + 1)[0]
        return None if inside(target) else EpilogStep("jmp")
    if op is not None and 0x40 <= op <= 0x4F:                 # a REX prefix before jmp [mem]
        at += 1
        op = code[at] if at < len(code) else None
    if op == 0xFF and at + 1 < len(code):
        modrm = code[at + 1]
        if (modrm >> 3) & 7 == 4 and modrm >> 6 == 0:          # jmp qword ptr [...], mod 00 only
            return EpilogStep("jmp")
    return None


def parse_epilog(code: bytes, address: int, frame_register: Optional[int],
                 inside: Callable[[int], bool]) -> Optional[List[EpilogStep]]:
    """The epilog instructions from ``code[0]`` (at ``address``) to its end, or None if ``address`` is not
    inside an epilog. ``frame_register`` is the function's (UNWIND_INFO) or None; ``inside(va)`` says
    whether a jump target stays in the function (then the jmp is no tail call)."""
    steps: List[EpilogStep] = []
    at = 0
    adjust = _rsp_adjust(code, 0, frame_register)
    if adjust is not None:
        at, step = adjust
        steps.append(step)
    while at < len(code):
        op = code[at]
        if 0x58 <= op <= 0x5F and op != 0x5C:
            steps.append(EpilogStep("pop", REGISTERS[op - 0x58]))
            at += 1
        elif op == 0x41 and at + 1 < len(code) and 0x58 <= code[at + 1] <= 0x5F:
            steps.append(EpilogStep("pop", REGISTERS[code[at + 1] - 0x58 + 8]))
            at += 2
        else:
            break
    end = _terminator(code, at, address + at, inside)
    if end is None:
        return None
    steps.append(end)
    return steps


def run_epilog(steps: List[EpilogStep], registers: Dict[str, int], read_u64: Callable[[int], int]) -> Dict[str, int]:
    """The caller's registers after the epilog runs from the current state (rip = the return address)."""
    regs = dict(registers)
    for step in steps:
        if step.kind == "add":
            regs["rsp"] = (regs["rsp"] + step.value) & 0xFFFFFFFFFFFFFFFF
        elif step.kind == "lea":
            regs["rsp"] = (regs[step.register] + step.value) & 0xFFFFFFFFFFFFFFFF     # type: ignore[index]
        elif step.kind == "pop":
            regs[step.register] = read_u64(regs["rsp"])                                # type: ignore[index]
            regs["rsp"] += 8
        else:                                                                           # ret, or a tail jmp
            regs["rip"] = read_u64(regs["rsp"])
            regs["rsp"] += 8
    return regs
