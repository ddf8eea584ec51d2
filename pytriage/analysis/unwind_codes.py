"""x64 unwind data as Microsoft's "x64 exception handling" documentation defines it.

A RUNTIME_FUNCTION (``.pdata``) covers [BeginAddress, EndAddress) of a function and points to its
UNWIND_INFO: version (1, or 2 with epilog descriptions), flags, prolog size, the frame register and its
scaled offset, and the unwind codes, innermost prolog instruction first. Each code records the prolog
offset just *after* the instruction it describes, which is how an unwinder stopped inside a prolog
knows which instructions have run. After the codes (padded to an even count) comes either an exception
handler RVA (UNW_FLAG_EHANDLER / UHANDLER) or, with UNW_FLAG_CHAININFO, the RUNTIME_FUNCTION of the
primary function whose prolog this fragment continues.

This module only decodes bytes; ``unwinder`` gives the codes their meaning on a register context.
"""

import struct
from dataclasses import dataclass
from typing import Optional, Tuple

from pytriage.errors import UnwindError

# x64 register numbers as UNWIND_CODE.OpInfo and UNWIND_INFO.FrameRegister use them.
REGISTERS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
NONVOLATILE = ("rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15")

UWOP_PUSH_NONVOL = 0        # push a nonvolatile register (OpInfo: register)
UWOP_ALLOC_LARGE = 1        # OpInfo 0: size/8 in the next slot; OpInfo 1: size in the next two slots
UWOP_ALLOC_SMALL = 2        # OpInfo * 8 + 8 bytes
UWOP_SET_FPREG = 3          # frame register = rsp + FrameOffset * 16
UWOP_SAVE_NONVOL = 4        # mov [frame base + next slot * 8], register
UWOP_SAVE_NONVOL_FAR = 5    # mov [frame base + next two slots], register
UWOP_EPILOG = 6             # version 2: an epilog description (never a prolog operation)
UWOP_SPARE = 7              # version 1: the retired 64-bit XMM save, far form (3 slots); unused since
UWOP_SAVE_XMM128 = 8        # movaps [frame base + next slot * 16], xmm
UWOP_SAVE_XMM128_FAR = 9    # movaps [frame base + next two slots], xmm
UWOP_PUSH_MACHFRAME = 10    # the processor pushed a machine frame (OpInfo 1: and an error code first)

OP_NAMES = {UWOP_PUSH_NONVOL: "UWOP_PUSH_NONVOL", UWOP_ALLOC_LARGE: "UWOP_ALLOC_LARGE",
            UWOP_ALLOC_SMALL: "UWOP_ALLOC_SMALL", UWOP_SET_FPREG: "UWOP_SET_FPREG",
            UWOP_SAVE_NONVOL: "UWOP_SAVE_NONVOL", UWOP_SAVE_NONVOL_FAR: "UWOP_SAVE_NONVOL_FAR",
            UWOP_EPILOG: "UWOP_EPILOG", UWOP_SPARE: "UWOP_SPARE", UWOP_SAVE_XMM128: "UWOP_SAVE_XMM128",
            UWOP_SAVE_XMM128_FAR: "UWOP_SAVE_XMM128_FAR", UWOP_PUSH_MACHFRAME: "UWOP_PUSH_MACHFRAME"}

UNW_FLAG_EHANDLER = 1
UNW_FLAG_UHANDLER = 2
UNW_FLAG_CHAININFO = 4

RUNTIME_FUNCTION_SIZE = 12
HEADER_SIZE = 4
MAX_UNWIND_INFO_SIZE = HEADER_SIZE + 2 * 256 + RUNTIME_FUNCTION_SIZE


@dataclass(frozen=True)
class RuntimeFunction:
    """One ``.pdata`` entry: image RVAs of the function's start, end (exclusive) and UNWIND_INFO."""
    begin: int
    end: int
    unwind_rva: int

    def contains(self, rva: int) -> bool:
        return self.begin <= rva < self.end

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> "RuntimeFunction":
        return cls(*struct.unpack_from("<III", data, offset))


@dataclass(frozen=True)
class UnwindCode:
    """A decoded prolog operation. ``value`` is the allocation size or the save offset in bytes."""
    prolog_offset: int          # offset in the prolog just after the instruction
    op: int
    info: int
    value: int = 0

    @property
    def register(self) -> str:
        """The general register a push or save names (OpInfo)."""
        return REGISTERS[self.info]

    def describe(self) -> str:
        name = OP_NAMES.get(self.op, "op %d" % self.op)
        if self.op in (UWOP_PUSH_NONVOL, UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR):
            detail = self.register + ("" if self.op == UWOP_PUSH_NONVOL else " at +0x%x" % self.value)
        elif self.op in (UWOP_SAVE_XMM128, UWOP_SAVE_XMM128_FAR):
            detail = "xmm%d at +0x%x" % (self.info, self.value)
        elif self.op in (UWOP_ALLOC_SMALL, UWOP_ALLOC_LARGE):
            detail = "0x%x" % self.value
        elif self.op == UWOP_PUSH_MACHFRAME:
            detail = "with error code" if self.info else ""
        else:
            detail = ""
        return "%02x: %s%s" % (self.prolog_offset, name, " " + detail if detail else "")


@dataclass(frozen=True)
class UnwindInfo:
    rva: int
    version: int
    flags: int
    prolog_size: int
    frame_register: int         # 0: no frame register
    frame_offset: int           # bytes (FrameOffset * 16)
    codes: Tuple[UnwindCode, ...]
    chained: Optional[RuntimeFunction] = None     # the primary function's entry (UNW_FLAG_CHAININFO)
    handler: Optional[int] = None                 # exception/termination handler RVA

    @property
    def frame_register_name(self) -> Optional[str]:
        return REGISTERS[self.frame_register] if self.frame_register else None

    @property
    def is_chained(self) -> bool:
        return bool(self.flags & UNW_FLAG_CHAININFO)


def unwind_info_size(header: bytes) -> int:
    """Bytes an UNWIND_INFO occupies, from its 4-byte header: codes padded to an even count, then the
    chained RUNTIME_FUNCTION or the handler RVA."""
    count = header[2]
    size = HEADER_SIZE + 2 * ((count + 1) & ~1)
    flags = header[0] >> 3
    if flags & UNW_FLAG_CHAININFO:
        size += RUNTIME_FUNCTION_SIZE
    elif flags & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER):
        size += 4
    return size


def decode_unwind_info(data: bytes, rva: int = 0, base: int = 0) -> UnwindInfo:
    """Decode the UNWIND_INFO at the start of ``data`` (``rva`` and ``base`` only position errors).

    Raises ``UnwindError`` naming what is wrong: an unknown version or code, a code whose extra slots
    run past the count, UWOP_SET_FPREG without a frame register, a truncated buffer.
    """
    where = base + rva if base else None
    if len(data) < HEADER_SIZE:
        raise UnwindError("UNWIND_INFO at rva 0x%x is cut short (%d bytes)" % (rva, len(data)), where)
    version, flags = data[0] & 7, data[0] >> 3
    if version not in (1, 2):
        raise UnwindError("UNWIND_INFO at rva 0x%x has version %d (1 and 2 exist)" % (rva, version), where)
    count = data[2]
    need = unwind_info_size(data[:HEADER_SIZE])
    if len(data) < need:
        raise UnwindError("UNWIND_INFO at rva 0x%x needs 0x%x bytes, 0x%x readable" % (rva, need, len(data)), where)
    slots = struct.unpack_from("<%dH" % count, data, HEADER_SIZE)
    codes = []
    i = 0
    while i < count:
        offset, op, info = slots[i] & 0xFF, (slots[i] >> 8) & 0xF, slots[i] >> 12
        if op in (UWOP_PUSH_NONVOL, UWOP_SET_FPREG):
            size, value = 1, 0
        elif op == UWOP_ALLOC_SMALL:
            size, value = 1, info * 8 + 8
        elif op == UWOP_ALLOC_LARGE and info == 0:
            size = 2
            value = slots[i + 1] * 8 if i + 1 < count else 0
        elif op == UWOP_ALLOC_LARGE and info == 1:
            size = 3
            value = slots[i + 1] | slots[i + 2] << 16 if i + 2 < count else 0
        elif op == UWOP_ALLOC_LARGE:
            raise UnwindError("UNWIND_INFO at rva 0x%x: UWOP_ALLOC_LARGE with OpInfo %d (0 or 1)" % (rva, info), where)
        elif op in (UWOP_SAVE_NONVOL, UWOP_SAVE_XMM128):
            size = 2
            value = slots[i + 1] * (8 if op == UWOP_SAVE_NONVOL else 16) if i + 1 < count else 0
        elif op in (UWOP_SAVE_NONVOL_FAR, UWOP_SAVE_XMM128_FAR):
            size = 3
            value = slots[i + 1] | slots[i + 2] << 16 if i + 2 < count else 0
        elif op == UWOP_EPILOG and version == 2:
            i += 1                  # epilog descriptions, one slot each: they describe no prolog operation
            continue
        elif op in (UWOP_EPILOG, UWOP_SPARE) and version == 1:
            i += 2 if op == UWOP_EPILOG else 3     # the retired 64-bit XMM saves: no general register
            continue
        elif op == UWOP_PUSH_MACHFRAME:
            if info > 1:
                raise UnwindError("UNWIND_INFO at rva 0x%x: UWOP_PUSH_MACHFRAME with OpInfo %d (0 or 1)"
                                  % (rva, info), where)
            size, value = 1, 0
        else:
            raise UnwindError("UNWIND_INFO at rva 0x%x: unknown unwind code %d in slot %d" % (rva, op, i), where)
        if i + size > count:
            raise UnwindError("UNWIND_INFO at rva 0x%x: %s in slot %d needs %d slots, %d left"
                              % (rva, OP_NAMES.get(op, op), i, size, count - i), where)
        codes.append(UnwindCode(offset, op, info, value))
        i += size
    frame_register, frame_offset = data[3] & 0xF, (data[3] >> 4) * 16
    if frame_register == 4:
        raise UnwindError("UNWIND_INFO at rva 0x%x names rsp as its frame register" % rva, where)
    if frame_register == 0 and any(c.op == UWOP_SET_FPREG for c in codes):
        raise UnwindError("UNWIND_INFO at rva 0x%x: UWOP_SET_FPREG without a frame register" % rva, where)
    tail = HEADER_SIZE + 2 * ((count + 1) & ~1)
    chained = handler = None
    if flags & UNW_FLAG_CHAININFO:
        chained = RuntimeFunction.parse(data, tail)
    elif flags & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER):
        handler = struct.unpack_from("<I", data, tail)[0]
    return UnwindInfo(rva, version, flags, data[1], frame_register, frame_offset, tuple(codes), chained, handler)
