"""Does a ``call`` instruction end exactly at an address? (What makes a stack value a return address.)

A return address is the address after a call. The forms x64 compilers emit are ``e8 rel32`` and
``ff /2`` (indirect through a register or memory, with an optional REX prefix, a SIB byte and a
displacement: 2 to 8 bytes). Capstone decodes the candidate instruction that would end at the address;
it must decode to exactly that length and be a near ``call``.
"""

import struct
from dataclasses import dataclass
from typing import Optional

_LENGTHS = (5, 6, 2, 3, 4, 7, 8)      # e8 rel32 first, then ff /2 forms by how common they are
MAX_CALL_LENGTH = max(_LENGTHS)

_DISASSEMBLER = None


def _capstone():
    global _DISASSEMBLER
    if _DISASSEMBLER is None:
        import capstone  # imported on first use: only stack scans need it

        _DISASSEMBLER = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return _DISASSEMBLER


@dataclass(frozen=True)
class CallInstruction:
    address: int                 # where the call starts
    length: int
    text: str                    # "call qword ptr [rax + 0x18]"
    target: Optional[int]        # e8 rel32: the called address; indirect: None


def _decode(code: bytes, end: int, length: int) -> Optional[CallInstruction]:
    """The near call of exactly ``length`` bytes ending at ``end``, if the bytes before ``end`` are one."""
    if length > len(code):
        return None
    raw = code[len(code) - length:]
    if raw[0] == 0xE8:
        if length != 5:
            return None
    else:
        at = 1 if 0x40 <= raw[0] <= 0x4F else 0                 # an optional REX prefix
        if raw[at] != 0xFF or at + 1 >= length or (raw[at + 1] >> 3) & 7 != 2:     # ff /2 only (not /3, far)
            return None
    start = end - length
    insn = next(_capstone().disasm(raw, start, 1), None)
    if insn is None or insn.size != length or insn.mnemonic != "call":
        return None
    target = None
    if raw[0] == 0xE8:
        target = (end + struct.unpack_from("<i", raw, 1)[0]) & 0xFFFFFFFFFFFFFFFF
    return CallInstruction(start, length, ("%s %s" % (insn.mnemonic, insn.op_str)).strip(), target)


def call_ending_at(code: bytes, end: int) -> Optional[CallInstruction]:
    """The call instruction ending at virtual address ``end``; ``code`` holds the bytes just before it
    (``code[-1]`` is the byte at ``end - 1``). None if no call ends there. When a REX prefix precedes an
    indirect call that also decodes without it (``41 ff d0``: call r8, not call rax), the prefix is
    part of the instruction."""
    for length in _LENGTHS:
        found = _decode(code, end, length)
        if found is not None:
            if found.target is None and len(code) > length and 0x40 <= code[len(code) - length - 1] <= 0x4F:
                return _decode(code, end, length + 1) or found
            return found
    return None
