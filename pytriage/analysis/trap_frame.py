"""``_KTRAP_FRAME``: where an interrupted frame's registers are, and which kernel functions build one.

When the processor takes an interrupt or exception it pushes a *machine frame* (SS, RSP, RFLAGS, CS,
RIP, and for some exceptions an error code); the Windows x64 trap handlers (``nt!KiPageFault``,
``nt!KiDoubleFaultAbort``, ``nt!KiBreakpointTrap`` ...) push rbp and allocate the rest of a
``_KTRAP_FRAME`` below it, so that the machine frame is the trap frame's last 0x28 bytes
(``Rip`` at +0x168 on x64 since Windows 7) and the handler's stack pointer is the trap frame's address.
That is where a crash report's story starts (WinDbg's ``.trap``); `k` marks the handler's frame
``(TrapFrame @ ...)``.

The layout comes from the kernel's symbols when we have them (``nt!_KTRAP_FRAME``), else from the
built-in table below (Windows 10 19041 x64, identical in the fields used here from Windows 7 to 11).
"""

from dataclasses import dataclass
from typing import Dict, Optional

from pytriage.errors import PytriageError

# Windows 10 19041 x64 nt!_KTRAP_FRAME (0x190 bytes), from the 19041.804 kernel's symbols (corpus ISF).
KTRAP_FRAME_19041 = {"Rax": 0x30, "Rcx": 0x38, "Rdx": 0x40, "R8": 0x48, "R9": 0x50, "R10": 0x58, "R11": 0x60,
                     "Rbx": 0x140, "Rdi": 0x148, "Rsi": 0x150, "Rbp": 0x158, "ErrorCode": 0x160, "Rip": 0x168,
                     "SegCs": 0x170, "EFlags": 0x178, "Rsp": 0x180, "SegSs": 0x188}
KTRAP_FRAME_SIZE = 0x190
FIELDS = tuple(KTRAP_FRAME_19041)
_REGISTER_OF = {"Rax": "rax", "Rcx": "rcx", "Rdx": "rdx", "R8": "r8", "R9": "r9", "R10": "r10", "R11": "r11",
                "Rbp": "rbp", "Rip": "rip", "Rsp": "rsp"}

# Interrupt and exception entry points of the x64 kernel (IDT handlers; "Shadow" variants are the KVA
# shadow entry points of the same handlers). Each builds a KTRAP_FRAME at its stack pointer.
TRAP_HANDLERS = frozenset((
    "KiDivideErrorFault", "KiDebugTrapOrFault", "KiNmiInterrupt", "KiBreakpointTrap", "KiOverflowTrap",
    "KiBoundFault", "KiInvalidOpcodeFault", "KiNpxNotAvailableFault", "KiDoubleFaultAbort",
    "KiNpxSegmentOverrunAbort", "KiInvalidTssFault", "KiSegmentNotPresentFault", "KiStackFault",
    "KiGeneralProtectionFault", "KiPageFault", "KiFloatingErrorFault", "KiAlignmentFault", "KiMcheckAbort",
    "KiXmmException", "KiVirtualizationException", "KiControlProtectionFault", "KiRaiseSecurityCheckFailure",
    "KiRaiseAssertion", "KiDebugServiceTrap", "KiApcInterrupt", "KiDpcInterrupt", "KiIpiInterrupt",
    "KiSwInterrupt", "KiHvInterrupt", "KiVmbusInterrupt0", "KiVmbusInterrupt1", "KiVmbusInterrupt2",
    "KiVmbusInterrupt3", "KiInterruptDispatch", "KiInterruptDispatchNoLock", "KiInterruptDispatchNoLockNoEtw",
    "KiInterruptDispatchNoEOI", "KiChainedDispatch", "KiSpuriousDispatchNoEOI",
))

KERNEL_CS, USER_CS, WOW64_CS = 0x10, 0x33, 0x23


@dataclass(frozen=True)
class TrapFrameLayout:
    offsets: Dict[str, int]
    size: int
    source: str


BUILTIN_LAYOUT = TrapFrameLayout(dict(KTRAP_FRAME_19041), KTRAP_FRAME_SIZE,
                                 "built-in _KTRAP_FRAME (Windows 10 19041 x64)")


def trap_frame_layout(symbolizer=None) -> TrapFrameLayout:
    """``nt!_KTRAP_FRAME`` from the kernel's symbols when they have every field used, else the built-in one."""
    if symbolizer is None:
        return BUILTIN_LAYOUT
    try:
        layout, where = symbolizer.type_layout("nt!_KTRAP_FRAME")
    except PytriageError:
        return BUILTIN_LAYOUT
    offsets = {}
    for name in FIELDS:
        member = layout.field(name) if hasattr(layout, "field") else None
        if member is None:
            return BUILTIN_LAYOUT
        offsets[name] = member.offset
    return TrapFrameLayout(offsets, layout.size, where)


def is_trap_handler(function: Optional[str]) -> bool:
    """Whether a kernel function name (``KiPageFault``, ``KiPageFaultShadow``) is a trap handler."""
    if not function:
        return False
    name = function[:-len("Shadow")] if function.endswith("Shadow") else function
    return name in TRAP_HANDLERS


def read_trap_frame(target, address: int, layout: TrapFrameLayout) -> Dict[str, int]:
    """The interrupted context a KTRAP_FRAME holds: rip, rsp, rbp, the volatile registers, cs, eflags, ss
    (``MemoryReadError`` if it is not in the dump)."""
    return parse_trap_frame(target.read(address, layout.size), layout)


def parse_trap_frame(raw: bytes, layout: TrapFrameLayout) -> Dict[str, int]:
    """The registers of a KTRAP_FRAME's ``layout.size`` bytes (``read_trap_frame`` without the read)."""
    def field(name: str, size: int = 8) -> int:
        off = layout.offsets[name]
        return int.from_bytes(raw[off:off + size], "little")

    regs = {reg: field(name) for name, reg in _REGISTER_OF.items()}
    regs["cs"] = field("SegCs", 2)
    regs["ss"] = field("SegSs", 2)
    regs["rflags"] = field("EFlags", 4)
    return regs


def trap_frame_problem(regs: Dict[str, int], address: int) -> Optional[str]:
    """Why the registers read at ``address`` do not look like a kernel trap frame, or None if they do."""
    cs = regs["cs"]
    if cs not in (KERNEL_CS, USER_CS, WOW64_CS):
        return "SegCs 0x%x is no x64 code segment" % cs
    if cs == KERNEL_CS:
        if regs["rip"] >> 47 not in (0, 0x1FFFF):       # kernel code can jump anywhere canonical (seed 004)
            return "kernel-mode Rip %x is not a canonical address" % regs["rip"]
        if regs["rsp"] >> 47 != 0x1FFFF or regs["rsp"] & 7:
            return "kernel-mode Rsp %x is not an aligned kernel address" % regs["rsp"]
    return None
