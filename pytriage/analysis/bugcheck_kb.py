"""Bug check knowledge base: what a stop code means, what its four parameters are, where to look next.

A kernel dump carries a bug check code and four 64-bit parameters, and their meaning changes with the
code (and for some codes with a *subcode* held in one of the parameters). Triage needs that meaning as
data: which parameter is the faulting instruction (to blame a module), which is the memory address (for
pointer forensics and ``!pooltag``), which holds an exception code, which selects the meaning of the
others. This module is that table, written in our own words from the public bug check reference and
from real crash write-ups, plus small decoders (NTSTATUS names, IRQL names, read/write/execute) so a
renderer can print ``Arg1: ffffffffc0000005  exception code 0xC0000005 (STATUS_ACCESS_VIOLATION)``.

It is pure data and pure functions: no ``Target``, no other pytriage module. Next steps may contain the
placeholders ``<Arg1>``..``<Arg4>``; :func:`next_steps_for` fills them with the dump's values.

Run ``python -m pytriage.analysis.bugcheck_kb`` to print the Markdown table kept in docs/bugchecks.md.
"""

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

FAMILIES = ("access-violation", "exception", "pool-corruption", "trap", "verifier", "irql", "timeout",
            "memory-management", "security-check", "other")
KINDS = ("address", "ip", "irql", "access", "status", "subcode", "pointer", "pte", "value", "reserved")

_MASK64 = 0xFFFFFFFFFFFFFFFF
_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True)
class ParamInfo:
    """One bug check parameter: a short label, what kind of value it is, one line of explanation."""

    name: str
    kind: str
    text: str


@dataclass(frozen=True)
class BugcheckInfo:
    """Everything pytriage knows about one bug check code.

    ``subcode_layouts`` gives, for a subcode value, a label per parameter (the subcode's own slot is
    ``""``) because codes such as 0x19 reuse Arg2..Arg4 for different things per subcode.
    ``value_meanings`` decodes fixed values of a non-subcode parameter (index -> value -> meaning).
    """

    code: int
    name: str
    summary: str
    family: str
    parameters: Tuple[ParamInfo, ParamInfo, ParamInfo, ParamInfo]
    next_steps: Tuple[str, ...]
    subcode_param: Optional[int] = None
    subcodes: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    exception_param: Optional[int] = None
    faulting_ip_param: Optional[int] = None
    address_param: Optional[int] = None
    subcode_layouts: Mapping[int, Tuple[str, str, str, str]] = field(default_factory=lambda: _EMPTY)
    value_meanings: Mapping[int, Mapping[int, str]] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class ExplainedParam:
    """A parameter value of a real dump next to its meaning (``detail`` decodes the value itself)."""

    index: int
    value: int
    name: str
    kind: str
    text: str
    detail: str


# --------------------------------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------------------------------

# NTSTATUS / exception codes that show up as bug check parameters (exception codes of 0x1E/0x7E/0x8E/0x3B,
# exit statuses of critical processes, I/O failures of paging). Values from ntstatus.h.
_STATUS_NAMES: Dict[int, str] = {
    0x00000000: "STATUS_SUCCESS",
    0x00000103: "STATUS_PENDING",
    0x80000001: "STATUS_GUARD_PAGE_VIOLATION",
    0x80000002: "STATUS_DATATYPE_MISALIGNMENT",
    0x80000003: "STATUS_BREAKPOINT",
    0x80000004: "STATUS_SINGLE_STEP",
    0x80000005: "STATUS_BUFFER_OVERFLOW",
    0xC0000001: "STATUS_UNSUCCESSFUL",
    0xC0000002: "STATUS_NOT_IMPLEMENTED",
    0xC0000005: "STATUS_ACCESS_VIOLATION",
    0xC0000006: "STATUS_IN_PAGE_ERROR",
    0xC0000008: "STATUS_INVALID_HANDLE",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC000000E: "STATUS_NO_SUCH_DEVICE",
    0xC0000010: "STATUS_INVALID_DEVICE_REQUEST",
    0xC0000017: "STATUS_NO_MEMORY",
    0xC000001D: "STATUS_ILLEGAL_INSTRUCTION",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC0000023: "STATUS_BUFFER_TOO_SMALL",
    0xC0000025: "STATUS_NONCONTINUABLE_EXCEPTION",
    0xC0000026: "STATUS_INVALID_DISPOSITION",
    0xC000008C: "STATUS_ARRAY_BOUNDS_EXCEEDED",
    0xC000008D: "STATUS_FLOAT_DENORMAL_OPERAND",
    0xC000008E: "STATUS_FLOAT_DIVIDE_BY_ZERO",
    0xC000008F: "STATUS_FLOAT_INEXACT_RESULT",
    0xC0000090: "STATUS_FLOAT_INVALID_OPERATION",
    0xC0000091: "STATUS_FLOAT_OVERFLOW",
    0xC0000092: "STATUS_FLOAT_STACK_CHECK",
    0xC0000093: "STATUS_FLOAT_UNDERFLOW",
    0xC0000094: "STATUS_INTEGER_DIVIDE_BY_ZERO",
    0xC0000095: "STATUS_INTEGER_OVERFLOW",
    0xC0000096: "STATUS_PRIVILEGED_INSTRUCTION",
    0xC000009A: "STATUS_INSUFFICIENT_RESOURCES",
    0xC000009C: "STATUS_DEVICE_DATA_ERROR",
    0xC000009D: "STATUS_DEVICE_NOT_CONNECTED",
    0xC00000B5: "STATUS_IO_TIMEOUT",
    0xC00000BB: "STATUS_NOT_SUPPORTED",
    0xC00000FD: "STATUS_STACK_OVERFLOW",
    0xC0000120: "STATUS_CANCELLED",
    0xC000016A: "STATUS_DISK_OPERATION_FAILED",
    0xC0000185: "STATUS_IO_DEVICE_ERROR",
    0xC0000194: "STATUS_POSSIBLE_DEADLOCK",
    0xC000021A: "STATUS_SYSTEM_PROCESS_TERMINATED",
    0xC00002B4: "STATUS_FLOAT_MULTIPLE_FAULTS",
    0xC00002B5: "STATUS_FLOAT_MULTIPLE_TRAPS",
    0xC00002C5: "STATUS_DATATYPE_MISALIGNMENT_ERROR",
    0xC0000374: "STATUS_HEAP_CORRUPTION",
    0xC0000409: "STATUS_STACK_BUFFER_OVERRUN",
    0xC000041D: "STATUS_FATAL_USER_CALLBACK_EXCEPTION",
    0xC0000420: "STATUS_ASSERTION_FAILURE",
    0xC0000602: "STATUS_FAIL_FAST_EXCEPTION",
}

# x64 IRQL names (wdm.h, AMD64). 3..12 are device interrupt levels.
_IRQL_NAMES = {0: "PASSIVE_LEVEL", 1: "APC_LEVEL", 2: "DISPATCH_LEVEL", 13: "CLOCK_LEVEL", 14: "IPI_LEVEL",
               15: "HIGH_LEVEL"}

# Access codes: 0xD1/0x0A/0xC5 and pre-Windows 10 page faults use 0/1/8; Windows 10 (1507+) x64/x86 0x50
# family faults pass the page-fault error bits instead (2 = write, 0x10 = instruction fetch).
_ACCESS_CLASSIC = MappingProxyType({0: "read", 1: "write", 8: "execute"})
_ACCESS_PAGE_FAULT = MappingProxyType({0: "read", 1: "write", 2: "write", 8: "execute", 0x10: "execute"})
_CLASSIC_ACCESS_CODES = frozenset((0x0A, 0xC5, 0xD1))


def status_name(status: int) -> Optional[str]:
    """Symbolic name of a common NTSTATUS, also when the dump stores it sign-extended to 64 bits."""
    value = _status32(status)
    return None if value is None else _STATUS_NAMES.get(value)


def irql_name(irql: int) -> str:
    """x64 name of an IRQL value ("DISPATCH_LEVEL"); device levels and junk say what they are."""
    if irql in _IRQL_NAMES:
        return _IRQL_NAMES[irql]
    if 3 <= irql <= 12:
        return "device IRQL (DIRQL)"
    return "not a valid x64 IRQL"


def _status32(value: int) -> Optional[int]:
    """The 32-bit status in a parameter: plain, or sign-extended (0xFFFFFFFFC0000005); else None."""
    value &= _MASK64
    if value <= 0xFFFFFFFF:
        return value
    if value >> 32 == 0xFFFFFFFF and value & 0x80000000:
        return value & 0xFFFFFFFF
    return None


def _hex(value: int) -> str:
    return "0x%X" % value


def _code_text(code: int) -> str:
    return "0x%02X" % code


# --------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------

_P = ParamInfo


def _reserved(text: str = "Not used, or not documented; pytriage does not rely on it.") -> ParamInfo:
    return _P("reserved", "reserved", text)


_MEM_IRQL_PARAMS = (
    _P("memory referenced", "address", "The address whose access faulted."),
    _P("IRQL", "irql", "The IRQL at the time of the access. At DISPATCH_LEVEL or above a page fault cannot be "
                      "serviced, so any address that is not resident (or not valid at all) is fatal."),
    _P("access type", "access", "What the instruction did with the address: 0 read, 1 write, 8 execute "
                               "(the fetch of the instruction itself)."),
    _P("faulting instruction", "ip", "Address of the instruction that made the access; `ln` on it names the "
                                    "module and function."),
)

_IRQL_STEPS = (
    "`kv`, then `.trap` on the trap frame of nt!KiPageFault: registers and instruction at the moment of the fault",
    "`ln <Arg4>` and `ub <Arg4>`: which function made the access and how it computed the address",
    "`!pte <Arg1>` (was the address ever mapped?) and `!pool <Arg1>` (is it inside a pool block, freed or live?)",
    "`!pytriage -v`: pointer forensics on Arg1 (NULL + offset, NULL - offset, non-canonical, text or fill "
    "bytes) and blame that looks past Microsoft frames",
    "Driver Verifier on the suspect drivers: `verifier /standard /driver <name>.sys` (standard settings include "
    "special pool and IRQL checking)",
)

_EXCEPTION_CODE = _P("exception code", "status", "NTSTATUS of the exception nobody handled, e.g. 0xC0000005 "
                                                "access violation, 0x80000003 breakpoint.")
_EXCEPTION_ADDRESS = _P("exception address", "ip", "Where the exception was raised: the faulting instruction, or "
                                                  "the bogus address the processor had jumped to.")

_PAGE_FAULT_ACCESS = _P("access type", "access", "What was attempted. Windows 10 1507 and later (x64/x86): 0 read, "
                                                "2 write, 0x10 execute; older releases 0 read, 1 write; ARM 0, "
                                                "1, 8.")

_PAGE_FAULT_TYPES = MappingProxyType({
    0x0: "the PTE of the address is marked free (NONPAGED_BUGCHECK_FREED_PTE)",
    0x2: "no valid page table maps the address (NONPAGED_BUGCHECK_NOT_PRESENT_PAGE_TABLE)",
    0x3: "a session-space address was used from a process without a session (NONPAGED_BUGCHECK_WRONG_SESSION; "
         "reported as 0x2 since Windows 10 RS4)",
    0x4: "the address is not canonical, no x64 mapping can exist (NONPAGED_BUGCHECK_VA_NOT_CANONICAL)",
    0xF: "kernel code touched a user-mode address where that is not allowed "
         "(NONPAGED_BUGCHECK_USER_VA_ACCESS_INCONSISTENT)",
})

# 0x7F: the x86/x64 exception vector that the kernel could not take.
_TRAP_VECTORS = {
    0x0: "divide error (#DE): integer division by zero, or a quotient too large for the register",
    0x1: "debug exception (#DB) with nobody to take it: a hardware breakpoint or single-step left armed",
    0x3: "breakpoint (#BP, int 3) hit in kernel mode with no kernel debugger attached",
    0x4: "overflow trap (#OF) raised by an INTO instruction",
    0x5: "BOUND range exceeded (#BR)",
    0x6: "invalid opcode (#UD): the processor ran bytes that are not an instruction, corrupted code or a jump "
         "into data",
    0x7: "device not available (#NM): floating-point or SIMD use in kernel code without saving that state first",
    0x8: "double fault (#DF): a fault while delivering another fault, nearly always a kernel stack overflow "
         "(the stack guard page was hit); look for deep or recursive call chains",
    0x9: "coprocessor segment overrun (legacy vector)",
    0xA: "invalid TSS (#TS)",
    0xB: "segment not present (#NP)",
    0xC: "stack-segment fault (#SS)",
    0xD: "general protection fault (#GP) the kernel could not turn into an exception: a bad selector, a "
         "privileged instruction or a non-canonical address",
    0xE: "page fault (#PF) taken where it cannot be handled (rare here; page faults normally surface as "
         "0x50, 0xD1 or 0x0A)",
    0x10: "x87 floating-point error (#MF)",
    0x11: "alignment check (#AC)",
    0x12: "machine check (#MC): a hardware error (usually reported as 0x9C or 0x124 instead)",
    0x13: "SIMD floating-point exception (#XM)",
}

# 0x19 BAD_POOL_HEADER subcodes and the layout of Arg2..Arg4 for each.
_BAD_POOL_HEADER = {
    0x2: "special pool's fill pattern next to a block was damaged: the owner wrote outside its allocation",
    0x3: "a free-list entry's links do not point back at it (in a healthy list Arg2, Arg3 and Arg4 are equal): "
         "the list entry was overwritten, typically by an overrun of the block in front or a write after free",
    0x5: "two neighbouring pool headers (Arg2 and Arg4) contradict each other; at least one was overwritten",
    0x6: "a header's PreviousSize is larger than its position in the page allows",
    0x7: "a header's BlockSize is corrupt (Arg4 is the bad entry)",
    0x8: "a header's BlockSize is zero (Arg4 is the bad entry)",
    0x9: "a header's BlockSize is too large and runs past the page (Arg4 is the bad entry)",
    0xA: "walking the page did not arrive at the expected entry (Arg2): a BlockSize in the chain is corrupt; "
         "Arg4 is the page",
    0xD: "the header of a free block changed after it was freed, usually an overrun by the block before it",
    0xE: "the header of a free block changed after it was freed, usually an overrun by the block before it",
    0xF: "the header of a free block changed after it was freed, usually an overrun by the block before it",
    0x20: "the entry that should come next (Arg2) is not where the header's size says; Arg3 is the entry found "
          "there: a BlockSize is corrupt",
    0x21: "the bytes right after the block being freed were overwritten: its owner overran the buffer "
          "(Arg2 block, Arg3 its size, Arg4 the value found past the end)",
    0x22: "the address being freed (Arg2) has no pool tracking entry: it was already freed (double free) or "
          "never came from the pool",
    0x23: "the header of a free block changed after it was freed, usually an overrun by the block before it",
    0x24: "the header of a free block changed after it was freed, usually an overrun by the block before it",
    0x25: "the header of a free block changed after it was freed, usually an overrun by the block before it",
}
_BAD_POOL_HEADER_LAYOUT = {
    0x2: ("", "pool entry being checked", "size of the block", "zero"),
    0x3: ("", "pool entry being checked", "forward link read back from the list", "back link read back from "
                                                                                  "the list"),
    0x5: ("", "one pool entry", "reserved", "the other pool entry"),
    0x6: ("", "entry whose size was computed wrongly", "reserved", "entry that caused the miscalculation"),
    0x7: ("", "zero", "reserved", "the bad pool entry"),
    0x8: ("", "zero", "reserved", "the bad pool entry"),
    0x9: ("", "entry whose size was computed wrongly", "reserved", "entry that caused the miscalculation"),
    0xA: ("", "entry that should have been found", "reserved", "page that should hold that entry"),
    0x20: ("", "entry that should have been found", "the next pool entry", "reserved"),
    0x21: ("", "address being freed", "number of bytes allocated", "the corrupted value found after the block"),
    0x22: ("", "address being freed", "reserved", "reserved"),
}

# 0xC2 BAD_POOL_CALLER.
_BAD_POOL_CALLER = {
    0x0: "a zero-byte allocation was requested (Arg3 pool type, Arg4 tag)",
    0x1: "the pool header of the block is corrupt (Arg2 header, Arg3 its first bytes)",
    0x2: "the pool header of the block is corrupt (Arg2 header, Arg3 its first bytes)",
    0x4: "the pool header of the block is corrupt (Arg2 header, Arg3 its first bytes)",
    0x6: "the block is freed a second time: it is already free (Arg3 header, Arg4 header contents)",
    0x7: "the block is freed a second time: it is already free, the classic double free (Arg3 header contents, "
         "Arg4 the block)",
    0x8: "allocation at an IRQL too high for the pool type (Arg2 IRQL, Arg3 pool type, Arg4 bytes)",
    0x9: "free at an IRQL too high for the pool type (Arg2 IRQL, Arg3 pool type, Arg4 address)",
    0xA: "free with a tag other than the allocation's: the memory likely belongs to another component "
         "(Arg3 the owner's tag, Arg4 the tag passed)",
    0xB: "quota release on an allocation whose quota data is damaged (Arg4 the bad process pointer)",
    0xC: "quota release on an allocation whose quota data is damaged (Arg4 the bad process pointer)",
    0xD: "quota release on an allocation whose quota data is damaged (Arg4 the bad process pointer)",
    0x40: "a user-mode address was passed to a kernel pool free (Arg2)",
    0x41: "free of a nonpaged pool address that is not allocated (Arg2)",
    0x42: "free of an address that never belonged to any pool (Arg2)",
    0x43: "free of an address that never belonged to any pool (Arg2)",
    0x50: "free of a paged pool address that is not allocated (Arg2)",
    0x99: "free of an invalid address, or of a block whose pool header is corrupt (Arg2)",
}
_BAD_POOL_CALLER_LAYOUT = {
    0x0: ("", "zero", "pool type", "pool tag"),
    0x1: ("", "pool header", "first part of the header's contents", "zero"),
    0x2: ("", "pool header", "first part of the header's contents", "zero"),
    0x4: ("", "pool header", "first part of the header's contents", "zero"),
    0x6: ("", "reserved", "pool header", "pool header contents"),
    0x7: ("", "reserved", "pool header contents", "address of the block being freed"),
    0x8: ("", "current IRQL", "pool type", "size of the allocation in bytes"),
    0x9: ("", "current IRQL", "pool type", "address of the block"),
    0xA: ("", "address of the block", "tag it was allocated with", "tag passed to the free"),
    0xB: ("", "address of the block", "its tag", "bad quota process pointer"),
    0xC: ("", "address of the block", "its tag", "bad quota process pointer"),
    0xD: ("", "address of the block", "its tag", "bad quota process pointer"),
    0x40: ("", "address being freed", "start of system address space", "zero"),
    0x41: ("", "address being freed", "its physical page frame", "highest physical page frame"),
    0x42: ("", "address being freed", "zero", "zero"),
    0x43: ("", "address being freed", "zero", "zero"),
    0x50: ("", "address being freed", "its offset in pages from the start of paged pool", "size of paged pool "
                                                                                          "in bytes"),
    0x99: ("", "address being freed", "zero", "zero"),
}

# 0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION: a representative set.
_VERIFIER = {
    0x0: "a zero-byte pool allocation was requested",
    0x1: "paged pool was allocated above APC_LEVEL",
    0x2: "nonpaged pool was allocated above DISPATCH_LEVEL",
    0x3: "more than one page of must-succeed pool was requested",
    0x10: "free of an address that no allocation returned (Arg2)",
    0x11: "paged pool was freed above APC_LEVEL",
    0x12: "nonpaged pool was freed above DISPATCH_LEVEL",
    0x13: "pool that was already freed was freed again",
    0x14: "pool that was already freed was freed again",
    0x30: "the IRQL was raised to an invalid level (Arg2 current, Arg3 requested)",
    0x31: "the IRQL was lowered to an invalid level (Arg2 current, Arg3 requested)",
    0x62: "the driver unloaded without freeing all its pool allocations (Arg4 how many are left); "
          "`!verifier 3 <driver>.sys` lists them",
    0x1001: "deadlock detection found locks taken in conflicting orders; `!deadlock` shows the locks and threads",
}
_VERIFIER_LAYOUT = {
    0x0: ("", "current IRQL", "pool type", "number of bytes"),
    0x1: ("", "current IRQL", "pool type", "size of the allocation in bytes"),
    0x2: ("", "current IRQL", "pool type", "size of the allocation in bytes"),
    0x10: ("", "the bad address", "zero", "zero"),
    0x11: ("", "current IRQL", "pool type", "address of the block"),
    0x12: ("", "current IRQL", "pool type", "address of the block"),
    0x13: ("", "reserved", "pool header", "pool header contents"),
    0x14: ("", "reserved", "pool header", "pool header contents"),
    0x30: ("", "current IRQL", "requested IRQL", "zero"),
    0x31: ("", "current IRQL", "requested IRQL", "reserved"),
    0x62: ("", "name of the driver (UNICODE_STRING)", "verifier's record of the driver",
           "number of allocations not freed"),
}

# 0x139 KERNEL_SECURITY_CHECK_FAILURE: the fast-fail code (winnt.h FAST_FAIL_*).
_FAST_FAIL = {
    0x0: "FAST_FAIL_LEGACY_GS_VIOLATION: a stack buffer overrun caught by the older /GS check",
    0x1: "FAST_FAIL_VTGUARD_CHECK_FAILURE: a C++ vtable guard did not match",
    0x2: "FAST_FAIL_STACK_COOKIE_CHECK_FAILURE: a function's stack cookie was overwritten, a local buffer "
         "overran",
    0x3: "FAST_FAIL_CORRUPT_LIST_ENTRY: a LIST_ENTRY's neighbours do not point back at it, the list was "
         "corrupted (use after free, double removal, or an overrun of the structure holding the entry)",
    0x4: "FAST_FAIL_INCORRECT_STACK: the stack pointer is outside the thread's stack",
    0x5: "FAST_FAIL_INVALID_ARG: a function received an argument it refuses to work with",
    0x6: "FAST_FAIL_GS_COOKIE_INIT: the stack cookie was not initialised",
    0x7: "FAST_FAIL_FATAL_APP_EXIT: deliberate fatal exit",
    0x8: "FAST_FAIL_RANGE_CHECK_FAILURE: an index or size failed a bounds check",
    0x9: "FAST_FAIL_UNSAFE_REGISTRY_ACCESS: registry access in an unsafe context",
    0xA: "FAST_FAIL_GUARD_ICALL_CHECK_FAILURE: Control Flow Guard rejected an indirect call target, a "
         "function pointer was corrupted",
    0xB: "FAST_FAIL_GUARD_WRITE_CHECK_FAILURE: a guarded write check failed",
    0xC: "FAST_FAIL_INVALID_FIBER_SWITCH: invalid fiber switch",
    0xD: "FAST_FAIL_INVALID_SET_OF_CONTEXT: an attempt to set an invalid thread context",
    0xE: "FAST_FAIL_INVALID_REFERENCE_COUNT: a reference count overflowed or dropped below zero, typically one "
         "dereference too many",
    0x12: "FAST_FAIL_INVALID_JUMP_BUFFER: a setjmp/longjmp buffer is corrupt",
    0x13: "FAST_FAIL_MRDATA_MODIFIED: mutable read-only data was modified",
    0x14: "FAST_FAIL_CERTIFICATION_FAILURE: a signature or certification check failed",
    0x15: "FAST_FAIL_INVALID_EXCEPTION_CHAIN: the exception handler chain is corrupt",
    0x16: "FAST_FAIL_CRYPTO_LIBRARY: the crypto library detected a fatal condition",
    0x17: "FAST_FAIL_INVALID_CALL_IN_DLL_CALLOUT: a forbidden call during a DLL callout",
    0x18: "FAST_FAIL_INVALID_IMAGE_BASE: an image is loaded at an invalid base",
    0x19: "FAST_FAIL_DLOAD_PROTECTION_FAILURE: delay-load protection failed",
    0x1A: "FAST_FAIL_UNSAFE_EXTENSION_CALL: an extension was called unsafely",
    0x1B: "FAST_FAIL_DEPRECATED_SERVICE_INVOKED: a deprecated service was used",
    0x1C: "FAST_FAIL_INVALID_BUFFER_ACCESS: a buffer was accessed out of its bounds",
    0x1D: "FAST_FAIL_INVALID_BALANCED_TREE: a balanced (RB/AVL) tree node's links are inconsistent",
    0x1E: "FAST_FAIL_INVALID_NEXT_THREAD: the scheduler picked an invalid next thread",
    0x1F: "FAST_FAIL_GUARD_ICALL_CHECK_SUPPRESSED: a suppressed Control Flow Guard call target was used",
    0x20: "FAST_FAIL_APCS_DISABLED: APCs were disabled where they must be enabled",
    0x21: "FAST_FAIL_INVALID_IDLE_STATE: invalid processor idle state",
    0x22: "FAST_FAIL_MRDATA_PROTECTION_FAILURE: mutable read-only data protection failed",
    0x23: "FAST_FAIL_UNEXPECTED_HEAP_EXCEPTION: an unexpected exception inside the heap",
    0x24: "FAST_FAIL_INVALID_LOCK_STATE: a lock is in an impossible state (released twice, or corrupted)",
    0x25: "FAST_FAIL_GUARD_JUMPTABLE: a switch jump-table target failed Control Flow Guard",
    0x26: "FAST_FAIL_INVALID_LONGJUMP_TARGET: invalid longjmp target",
    0x27: "FAST_FAIL_INVALID_DISPATCH_CONTEXT: invalid exception dispatch context",
    0x28: "FAST_FAIL_INVALID_THREAD: an invalid thread object was used",
    0x29: "FAST_FAIL_INVALID_SYSCALL_NUMBER: invalid system call number",
    0x2A: "FAST_FAIL_INVALID_FILE_OPERATION: invalid file operation",
    0x2B: "FAST_FAIL_LPAC_ACCESS_DENIED: access denied to a less-privileged app container",
    0x2C: "FAST_FAIL_GUARD_SS_FAILURE: the hardware shadow stack (CET) did not match the return address",
    0x2D: "FAST_FAIL_LOADER_CONTINUITY_FAILURE: loader continuity check failed",
    0x2E: "FAST_FAIL_GUARD_EXPORT_SUPPRESSION_FAILURE: a suppressed export was called",
}

# 0x13A KERNEL_MODE_HEAP_CORRUPTION: the heap failure type (HEAP_FAILURE_TYPE).
_HEAP_FAILURE = {
    0x3: "a block header is corrupt (heap_failure_entry_corruption)",
    0x4: "several block headers are corrupt (heap_failure_multiple_entries_corruption)",
    0x5: "the header of a large, separately mapped block is corrupt (heap_failure_virtual_block_corruption)",
    0x6: "damage that looks like a buffer overrun past a block's end (heap_failure_buffer_overrun)",
    0x7: "damage that looks like a buffer underrun before a block's start (heap_failure_buffer_underrun)",
    0x8: "a free block was handed to an operation that needs an allocated one (heap_failure_block_not_busy)",
    0x9: "an invalid argument reached the heap (heap_failure_invalid_argument)",
    0xA: "an invalid allocation type was found (heap_failure_invalid_allocation_type)",
    0xB: "damage that looks like a use after free (heap_failure_usage_after_free)",
    0xC: "the block was passed to a heap that does not own it (heap_failure_cross_heap_operation)",
    0xD: "a free list is corrupt: use after free, or an overrun of the neighbouring block "
         "(heap_failure_freelists_corruption)",
    0xE: "a heap list other than a free list is corrupt (heap_failure_listentry_corruption)",
    0xF: "the low-fragmentation heap's bitmap says the block is already free while the caller frees or sizes "
         "it, typically a double free (heap_failure_lfh_bitmap_mismatch)",
    0x10: "a segment LFH bitmap is corrupt, usually after an overrun (heap_failure_segment_lfh_bitmap_corruption)",
    0x11: "the segment LFH saw a block freed twice or its state damaged; double frees and neighbour overruns "
          "both end here (heap_failure_segment_lfh_double_free)",
    0x12: "a variable-size subsegment is corrupt, usually an overrun of a neighbouring block "
          "(heap_failure_vs_subsegment_corruption)",
    0x13: "a NULL heap handle was passed (heap_failure_null_heap)",
    0x14: "an allocation larger than the heap's limit was requested (heap_failure_allocation_limit)",
    0x15: "committing memory would exceed the commit limit (heap_failure_commit_limit)",
    0x16: "a size query on a VA-manager allocation was invalid (heap_failure_invalid_va_mgr_query)",
    0x17: "the segment LFH delayed-free list is corrupt (heap_failure_segment_lfh_delay_free_corruption)",
}

_SUBCODE_PARAM = _P("subcode", "subcode", "Selects which check failed and what the other parameters hold (see the "
                                         "subcode table).")
_DEPENDS = "Meaning depends on the subcode."


def _entry(code: int, name: str, family: str, summary: str, parameters: Sequence[ParamInfo],
           next_steps: Sequence[str], **extra) -> BugcheckInfo:
    """Build a frozen entry; mappings become read-only views so the shared table cannot be edited."""
    for key in ("subcodes", "subcode_layouts"):
        if key in extra:
            extra[key] = MappingProxyType(dict(extra[key]))
    if "value_meanings" in extra:
        extra["value_meanings"] = MappingProxyType({k: MappingProxyType(dict(v))
                                                    for k, v in extra["value_meanings"].items()})
    return BugcheckInfo(code=code, name=name, summary=summary, family=family, parameters=tuple(parameters),
                        next_steps=tuple(next_steps), **extra)


_BASE_ENTRIES: Tuple[BugcheckInfo, ...] = (
    _entry(
        0x0A, "IRQL_NOT_LESS_OR_EQUAL", "irql",
        "Kernel-mode code touched memory that was not resident, or not valid at all, while running at an IRQL "
        "where page faults cannot be serviced. The kernel reports 0x0A when the faulting instruction is not in a "
        "driver (0xD1 when it is): the bad pointer often came from driver data that Windows followed.",
        _MEM_IRQL_PARAMS, _IRQL_STEPS, faulting_ip_param=3, address_param=0),
    _entry(
        0x19, "BAD_POOL_HEADER", "pool-corruption",
        "The pool allocator found a damaged block header or free-list entry while allocating or freeing. The "
        "thread on the stack is usually a victim; the culprit overran into, or freed twice, the block that "
        "header belongs to.",
        (_SUBCODE_PARAM,
         _P("entry or address", "pointer", "Usually the pool entry being checked or the address being freed. "
                                          + _DEPENDS),
         _P("detail", "value", _DEPENDS), _P("detail", "value", _DEPENDS)),
        ("`!pool <Arg2>`: walk the page holding the entry; the block just before the first broken header is the "
         "prime suspect",
         "`!pooltag <Arg2>`: the tag of the damaged or neighbouring block and which loaded driver allocates with it",
         "`db <Arg2>-0x20 L0x80`: raw header bytes, look for text or a fill pattern written over them",
         "`!pytriage -v`: the page walk naming the broken header and field (expected vs found) and the owner",
         "Driver Verifier special pool on the owner of the neighbouring tag (`verifier /flags 0x1 /driver "
         "<owner>.sys`) so the next overrun faults at the guilty write (0xD6) instead of at a later free"),
        subcode_param=0, subcodes=_BAD_POOL_HEADER, subcode_layouts=_BAD_POOL_HEADER_LAYOUT),
    _entry(
        0x1E, "KMODE_EXCEPTION_NOT_HANDLED", "exception",
        "Kernel-mode code raised an exception (access violation, breakpoint, invalid instruction...) that no "
        "handler caught. Arg2 is where it happened; when that is not code at all, the processor jumped through a "
        "corrupted pointer and the caller is what matters.",
        (_EXCEPTION_CODE, _EXCEPTION_ADDRESS,
         _P("exception parameter 0", "value", "First ExceptionInformation value; for an access violation the "
                                             "access type (0 read, 1 write, 8 execute)."),
         _P("exception parameter 1", "value", "Second ExceptionInformation value; for an access violation the "
                                             "address that was accessed.")),
        ("`kv`: find the trap frame or context record of the exception, then `.trap` / `.cxr` on it for the "
         "failing registers",
         "`ln <Arg2>`: the faulting module; if Arg2 is in no module, the code jumped there through a bad function "
         "pointer: look at the caller and the register it jumped through",
         "`!pytriage -v`: forensics on Arg2 and the registers (UTF-16 text, fill patterns, data symbols)",
         "`!nblwalk <NBL>` when the stack is in a NET_BUFFER_LIST send or receive completion (the completion "
         "routine pointer may come from another driver's memory)"),
        exception_param=0, faulting_ip_param=1),
    _entry(
        0x3B, "SYSTEM_SERVICE_EXCEPTION", "exception",
        "An exception escaped while the kernel ran a system call for a thread that came from user mode. The code "
        "at Arg2 is often a driver reached through a dispatch routine or an IOCTL handler.",
        (_EXCEPTION_CODE, _EXCEPTION_ADDRESS,
         _P("context record", "pointer", "Address of the CONTEXT saved at the exception: `.cxr <Arg3>` shows the "
                                        "registers."),
         _reserved("Zero; not used.")),
        ("`.cxr <Arg3>` then `kv`: registers and stack at the faulting instruction",
         "`ln <Arg2>` and `ub <Arg2>`: the function that faulted and how it computed the failing operand",
         "`!thread`: which process and system call the thread was serving",
         "`!pytriage -v`: blame and pointer forensics on the failing registers"),
        exception_param=0, faulting_ip_param=1),
    _entry(
        0x50, "PAGE_FAULT_IN_NONPAGED_AREA", "access-violation",
        "A kernel-mode access hit an address with no valid mapping that cannot be paged in: freed or never "
        "allocated memory, a wild pointer, or a non-canonical value. The address is invalid rather than paged "
        "out, so the IRQL does not matter.",
        (_P("memory referenced", "address", "The address that could not be resolved."), _PAGE_FAULT_ACCESS,
         _P("faulting instruction", "ip", "The instruction that made the access, when the kernel knows it "
                                         "(zero otherwise)."),
         _P("fault type", "value", "On Windows 10: why the address is invalid, e.g. 0x2 no page table maps it, "
                                  "0x4 non-canonical address.")),
        ("`.trap` on the trap frame of nt!KiPageFault (`kv` shows it): registers and instruction at the fault",
         "`ln <Arg3>`: the function that made the access",
         "`!pte <Arg1>` and `!pool <Arg1>`: was the page ever mapped, was it pool that has been freed",
         "`!pytriage -v`: pointer forensics on Arg1 (NULL - 0x18 is a CONTAINING_RECORD on a NULL list entry, "
         "text bytes, fill patterns)",
         "Driver Verifier special pool on the suspect driver: a use after free then faults at once as 0xD5"),
        faulting_ip_param=2, address_param=0, value_meanings={3: _PAGE_FAULT_TYPES}),
    _entry(
        0x7E, "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", "exception",
        "A thread created by the system or a driver (not a user thread in a system call) raised an exception "
        "nobody handled. Arg2 is the faulting instruction; Arg3 and Arg4 give the exception record and the "
        "registers at that point.",
        (_EXCEPTION_CODE,
         _P("exception address", "ip", "The instruction that raised the exception."),
         _P("exception record", "pointer", "Address of the EXCEPTION_RECORD: `.exr <Arg3>`."),
         _P("context record", "pointer", "Address of the CONTEXT with the registers at the fault: `.cxr <Arg4>` "
                                        "then `k`.")),
        ("`.exr <Arg3>`: the exception code, address and, for an access violation, the address accessed",
         "`.cxr <Arg4>` then `kv`: the faulting thread's stack as it was at the fault",
         "`ln <Arg2>`: the faulting module and function",
         "`!pytriage -v`: blame, forensics on the accessed address and the registers",
         "Driver Verifier on the faulting driver if the access hit freed or overrun memory"),
        exception_param=0, faulting_ip_param=1),
    _entry(
        0x7F, "UNEXPECTED_KERNEL_MODE_TRAP", "trap",
        "The processor raised a trap in kernel mode that the kernel must not take or cannot survive; Arg1 is the "
        "exception vector. Vector 8, a double fault, nearly always means the kernel stack overflowed, often "
        "because drivers stacked deep call chains (network filters in the send path are a classic case).",
        (_P("trap number", "subcode", "The processor exception vector that fired (8 = double fault)."),
         _reserved(), _reserved(), _reserved()),
        ("`kv`: the trap handler frame (nt!KiDoubleFaultAbort for 8) and `.trap` on its trap frame",
         "`kf`: stack use per frame (Memory column) shows which drivers consume the stack",
         "`!thread`: the stack base and limit; a stack pointer at the limit confirms an overflow",
         "`!pytriage -v`: names the third-party filter in the deep chain even when it sits below Microsoft "
         "frames"),
        subcode_param=0, subcodes=_TRAP_VECTORS),
    _entry(
        0x8E, "KERNEL_MODE_EXCEPTION_NOT_HANDLED", "exception",
        "Kernel-mode code raised an exception that no handler caught, reported by the trap handler together with "
        "its trap frame. Read it like 0x1E: Arg2 is the faulting instruction and Arg3 holds the registers.",
        (_EXCEPTION_CODE, _EXCEPTION_ADDRESS,
         _P("trap frame", "pointer", "Address of the KTRAP_FRAME: `.trap <Arg3>` shows the registers."),
         _reserved()),
        ("`.trap <Arg3>` then `kv`: registers and stack at the faulting instruction",
         "`ln <Arg2>`: the faulting module and function",
         "`!pytriage -v`: blame and pointer forensics on the failing registers"),
        exception_param=0, faulting_ip_param=1),
    _entry(
        0x9F, "DRIVER_POWER_STATE_FAILURE", "timeout",
        "A driver broke the power-IRP rules or took too long over a power transition. Most dumps are subcode 3: "
        "a device stack held a power IRP past the watchdog during sleep, hibernate or resume.",
        (_SUBCODE_PARAM, _P("detail", "value", _DEPENDS), _P("detail", "value", _DEPENDS),
         _P("detail", "value", _DEPENDS)),
        ("for subcode 3: `!irp <Arg4>`: which driver holds the power IRP and in which stack location",
         "`!devstack <Arg2>`: the drivers layered on that device",
         "`!poaction`: the power transition in progress and what it waits for",
         "for subcode 4: `!thread <Arg3>`: what the owner of the PnP lock waits on"),
        subcode_param=0,
        subcodes={
            0x1: "a device object was freed while a power request of its own was still pending (Arg2 the device)",
            0x2: "a system power IRP was completed without PoStartNextPowerIrp (older Windows)",
            0x3: "a device stack held a power IRP for too long (Arg2 PDO, Arg4 the blocked IRP)",
            0x4: "the power transition timed out waiting for the PnP lock (Arg2 timeout in seconds, Arg3 the "
                 "thread holding the lock)",
            0x5: "a device did not finish a directed power transition in time (Arg2 PDO)",
            0x6: "a device's directed power transition callback did not complete successfully",
            0x500: "a system power IRP was completed without PoStartNextPowerIrp (Arg4 the device object)",
        },
        subcode_layouts={
            0x1: ("", "device object", "reserved", "reserved"),
            0x2: ("", "target device object, if known", "device object", "driver object, if known"),
            0x3: ("", "physical device object (PDO) of the stack", "nt!_TRIAGE_9F_POWER block", "the blocked IRP"),
            0x4: ("", "timeout in seconds", "thread holding the PnP lock", "nt!TRIAGE_9F_PNP block"),
            0x5: ("", "physical device object (PDO) of the stack", "POP_FX_DEVICE object", "zero"),
            0x6: ("", "POP_FX_DEVICE object", "1 power down, 0 power up", "zero"),
            0x500: ("", "reserved", "target device object, if known", "device object"),
        }),
    _entry(
        0xBE, "ATTEMPTED_WRITE_TO_READONLY_MEMORY", "access-violation",
        "Kernel code wrote to a page mapped read-only, such as a driver's code section or constant data. Usually "
        "a stray pointer, or a driver patching code or kernel structures it should leave alone.",
        (_P("address written", "address", "The read-only address the write went to."),
         _P("PTE contents", "pte", "The page table entry of that address; its write bit is clear."),
         _reserved("Documented as reserved; often the trap frame of the write, try `.trap <Arg3>`."),
         _reserved()),
        ("`ln <Arg1>`: which image's read-only section was written",
         "`!pte <Arg1>`: the page's protection",
         "`.trap <Arg3>` then `k`: the code that wrote, and the register holding the address",
         "`!pytriage -v`: blame and forensics on the written address"),
        address_param=0),
    _entry(
        0xC1, "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION", "verifier",
        "Special pool found a driver breaking its rules on a special-pool block: freeing something it does not "
        "own, or overwriting bytes beside its allocation on the same page (caught at free time). Arg4 says "
        "which.",
        (_P("address being freed", "address", "Usually the special-pool address the driver passed to the free; for "
                                             "subcodes 0x30 and 0x31 the current IRQL instead."),
         _P("detail", "value", _DEPENDS), _P("detail", "value", _DEPENDS),
         _P("subcode", "subcode", "Selects which check failed (this code keeps its subcode in Arg4).")),
        ("`!pool <Arg1>` and `!pooltag <Arg1>`: size, tag and owner of the special-pool block",
         "for 0x23/0x24: `db <Arg2>`: the overwritten bytes next to the allocation, text or a pattern names the "
         "writer",
         "`kv`: the driver doing the free",
         "`!verifier 0x80 <Arg1>`: the allocate/free log of that address"),
        subcode_param=3, address_param=0,
        subcodes={
            0x20: "free of special pool that was not allocated",
            0x21: "free of a bad address: the size asked for and the size given disagree",
            0x22: "free of a bad address: the size asked for and the size given disagree",
            0x23: "at free time, bytes elsewhere on the allocation's page were found overwritten (Arg2 where)",
            0x24: "at free time, bytes after the end of the allocation were found overwritten: an overrun that "
                  "stayed inside the page (Arg2 where)",
            0x30: "allocation at an invalid IRQL (Arg1 IRQL, Arg2 pool type, Arg3 bytes)",
            0x31: "free at an invalid IRQL (Arg1 IRQL, Arg2 pool type, Arg3 address)",
            0x32: "at free time a single flipped bit was found next to the allocation, suspect hardware (Arg2 "
                  "where)",
        },
        subcode_layouts={
            0x20: ("address being freed", "reserved", "zero", ""),
            0x21: ("address being freed", "bytes requested", "bytes actually given", ""),
            0x22: ("address being freed", "bytes requested", "bytes actually given", ""),
            0x23: ("address being freed", "address of the corrupted bytes", "reserved", ""),
            0x24: ("address being freed", "address of the corrupted bytes", "reserved", ""),
            0x30: ("current IRQL", "pool type", "number of bytes", ""),
            0x31: ("current IRQL", "pool type", "address being freed", ""),
            0x32: ("address being freed", "address of the corrupted bit", "reserved", ""),
        }),
    _entry(
        0xC2, "BAD_POOL_CALLER", "pool-corruption",
        "A pool allocate or free call was itself invalid: a double free, a free with the wrong tag, a free of an "
        "address that never came from the pool, or a call at an IRQL the pool type forbids. Unlike 0x19 the "
        "caller on the stack is usually the culprit.",
        (_SUBCODE_PARAM, _P("detail", "value", _DEPENDS), _P("detail", "value", _DEPENDS),
         _P("detail", "value", _DEPENDS)),
        ("`kv`: the function calling ExFreePool*/ExAllocatePool* is the usual culprit",
         "`!pool` and `!pooltag` on the block address from the parameters: its state, tag and owner",
         "Driver Verifier with pool tracking on the caller (`verifier /standard /driver <name>.sys`), then "
         "`!verifier 3 <name>.sys` lists its live allocations"),
        subcode_param=0, subcodes=_BAD_POOL_CALLER, subcode_layouts=_BAD_POOL_CALLER_LAYOUT),
    _entry(
        0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION", "verifier",
        "Driver Verifier caught a driver breaking a rule it checks (pool use, IRQL, locks, handles, DDI "
        "compliance). The crash is the bug itself, not a later symptom; the verified driver is on the stack or "
        "in the verifier data.",
        (_P("violation code", "subcode", "Verifier's violation code; 0x1000-0x1020 come from deadlock detection, "
                                        "0x2000x codes are DDI compliance rules (`!ruleinfo <Arg1>`)."),
         _P("detail", "value", _DEPENDS), _P("detail", "value", _DEPENDS), _P("detail", "value", _DEPENDS)),
        ("`!verifier`: which drivers are verified and with which checks",
         "`kv`: the verified driver's frame that made the offending call",
         "DDI compliance codes: `!ruleinfo <Arg1>` explains the rule",
         "subcode 0x62: `!verifier 3 <driver>.sys` lists the leaked allocations; 0x1001: `!deadlock`"),
        subcode_param=0, subcodes=_VERIFIER, subcode_layouts=_VERIFIER_LAYOUT),
    _entry(
        0xC5, "DRIVER_CORRUPTED_EXPOOL", "pool-corruption",
        "The pool allocator faulted at raised IRQL while following its own structures (a free list or a header): "
        "the pool was already corrupt. The thread on the stack is usually innocent; look for whoever overran or "
        "double-freed a block next to the damaged one.",
        (_MEM_IRQL_PARAMS[0], _MEM_IRQL_PARAMS[1],
         _P("access type", "access", "0 read, 1 write."),
         _P("faulting instruction", "ip", "The instruction that faulted, normally inside the kernel's pool code "
                                         "(nt!ExAllocatePoolWithTag, nt!ExFreePoolWithTag...).")),
        ("`.trap` on the nt!KiPageFault trap frame and `r`: which register held the corrupt link and where it "
         "was read from",
         "`!pool` on the block whose header or free-list entry held that value, then `!pooltag` on its neighbours",
         "`!pytriage -v`: blame from pool evidence (the overrunning block's tag and its owner) when the stack is "
         "all Microsoft",
         "Driver Verifier special pool on the owners of the neighbouring tags"),
        faulting_ip_param=3, address_param=0),
    _entry(
        0xCE, "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS", "access-violation",
        "Something called into, or read data of, a driver that had already been unloaded: the driver left a timer, "
        "DPC, work item, callback or pending IRP behind when it unloaded.",
        (_P("memory referenced", "address", "An address inside the unloaded driver's former image range."),
         _PAGE_FAULT_ACCESS,
         _P("faulting instruction", "ip", "The instruction that made the access, when known."),
         _reserved()),
        ("`lm`: the unloaded modules at the end of the list; the one whose old range holds Arg1 left work behind",
         "`!timer` and `!dpcs`: stale timers or DPCs pointing into that range",
         "`ln <Arg3>` and `kv`: who called through the stale pointer"),
        faulting_ip_param=2, address_param=0),
    _entry(
        0xD1, "DRIVER_IRQL_NOT_LESS_OR_EQUAL", "irql",
        "A driver touched pageable or invalid memory at DISPATCH_LEVEL or above (in a DPC, an ISR, or holding a "
        "spin lock). Most often the pointer is bad (NULL, freed, garbage) rather than the data being paged out.",
        _MEM_IRQL_PARAMS,
        _IRQL_STEPS + (
            "If Arg1 equals Arg4 and Arg3 is 8, the processor tried to run code that was paged out or unloaded: "
            "pageable code called at raised IRQL, or a call through a stale function pointer",),
        faulting_ip_param=3, address_param=0),
    _entry(
        0xD5, "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL", "verifier",
        "With Driver Verifier's special pool on, a driver touched memory it had already freed (use after free). "
        "Arg3 is the guilty access itself.",
        (_P("memory referenced", "address", "The freed special-pool address that was touched."), _PAGE_FAULT_ACCESS,
         _P("faulting instruction", "ip", "The instruction that made the access, when known."), _reserved()),
        ("`ln <Arg3>` and `kv`: the code that used the freed memory",
         "`!pool <Arg1>`: the special-pool page and the freed block",
         "`!verifier 0x80 <Arg1>`: the allocate/free log of the address shows who freed it and when"),
        faulting_ip_param=2, address_param=0),
    _entry(
        0xD6, "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION", "verifier",
        "With special pool on, a driver read or wrote past the end of its allocation and hit the guard page placed "
        "right after it. Arg3 is the overrunning instruction; the allocation just before Arg1 is the one overrun.",
        (_P("memory referenced", "address", "The address on the guard page that was touched."), _PAGE_FAULT_ACCESS,
         _P("faulting instruction", "ip", "The instruction that overran, when known."), _reserved()),
        ("`!pool <Arg1>` and `!pooltag <Arg1>`: the allocation next to the guard page (size, tag, owner)",
         "`ln <Arg3>` and `kv`: the code that overran",
         "`!verifier 0x80 <Arg1>`: where the allocation was made"),
        faulting_ip_param=2, address_param=0),
    _entry(
        0xEF, "CRITICAL_PROCESS_DIED", "other",
        "A process (or one of its threads) that Windows marks as critical, such as csrss, wininit, smss or "
        "services, terminated, so the system stopped. The cause is in that process (a crash or a forced kill), "
        "rarely in a kernel driver.",
        (_P("process", "pointer", "The EPROCESS of the process that died: `!process <Arg1> 7`."),
         _P("process or thread", "value", "0: the process itself terminated; 1: one of its critical threads did."),
         _reserved(), _reserved()),
        ("`!process <Arg1> 7`: image name and the threads left",
         "`dt nt!_EPROCESS <Arg1> ImageFileName ExitStatus`: which process and its exit status (often an "
         "exception code)",
         "Look for a user-mode dump of that process (Windows Error Reporting): the real crash is usually there"),
        value_meanings={1: {0: "the critical process itself terminated", 1: "a critical thread terminated"}}),
    _entry(
        0xFC, "ATTEMPTED_EXECUTE_OF_NOEXECUTE_MEMORY", "access-violation",
        "The processor was sent to execute an address whose page is marked no-execute (data, pool or stack). "
        "Typically a corrupted function pointer: a callback or completion routine overwritten with a data address.",
        (_P("executed address", "address", "The address the processor tried to run, i.e. where the bad function "
                                          "pointer pointed."),
         _P("PTE contents", "pte", "The page table entry of that address; its no-execute bit (63) is set."),
         _reserved("Documented as reserved; in Windows 10 dumps it is usually the trap frame of the fault, try "
                   "`.trap <Arg3>`."),
         _reserved()),
        ("`ln <Arg1>`: a data symbol here (e.g. tcpip!Ipv4Global) means a function pointer was overwritten with "
         "a data address",
         "`!pte <Arg1>`: the page is present but not executable",
         "`.trap <Arg3>` then `k`: the caller that made the indirect call or jump, and the register it used",
         "`!pytriage -v`, and `!nblwalk <NBL>` when the caller is a NET_BUFFER_LIST completion "
         "(nwifi!Dot11SendCompletion)"),
        address_param=0),
    _entry(
        0x101, "CLOCK_WATCHDOG_TIMEOUT", "timeout",
        "One processor stopped taking clock interrupts for longer than the watchdog allows, typically spinning "
        "with interrupts masked or stuck in firmware or the hypervisor. The hung processor, not the one that "
        "reported, holds the answer.",
        (_P("timeout", "value", "The watchdog interval, in clock ticks."), _reserved("Zero."),
         _P("PRCB of the hung processor", "pointer", "Processor control block of the processor that stopped "
                                                    "responding."),
         _P("hung processor", "value", "Number of the unresponsive processor (recent Windows; zero on old ones).")),
        ("`~<Arg4>s` then `k`: the hung processor's stack (a minidump may not hold its context)",
         "`!running -ti`: what every processor was running",
         "`!prcb <Arg4>`: that processor's state",
         "Firmware, microcode and hypervisor updates when the hung processor sits in firmware code")),
    _entry(
        0x124, "WHEA_UNCORRECTABLE_ERROR", "other",
        "The hardware reported an error it could not correct (machine check, PCI Express, NMI...) through the "
        "Windows Hardware Error Architecture. Software is rarely the cause; the error record names the component.",
        (_P("error source", "subcode", "Which kind of hardware error source reported it (0 = machine check)."),
         _P("error record", "pointer", "Address of the WHEA_ERROR_RECORD: `!errrec <Arg2>` decodes it."),
         _P("MCi_STATUS high", "value", "For a machine check: the high 32 bits of the failing bank's MCi_STATUS."),
         _P("MCi_STATUS low", "value", "For a machine check: the low 32 bits of the failing bank's MCi_STATUS.")),
        ("`!errrec <Arg2>`: the error record section by section (bank, severity, error type)",
         "`!whea`: the error sources Windows knows about",
         "Firmware and microcode updates, remove overclocking, run the vendor's hardware diagnostics"),
        subcode_param=0,
        subcodes={0x0: "machine check exception", 0x1: "corrected machine check", 0x2: "corrected platform error",
                  0x3: "non-maskable interrupt (NMI) error", 0x4: "uncorrectable PCI Express error",
                  0x5: "generic hardware error", 0x6: "initialization (INIT) error", 0x7: "BOOT error",
                  0x8: "Scalable Coherent Interface (SCI) generic error"}),
    _entry(
        0x133, "DPC_WATCHDOG_VIOLATION", "timeout",
        "A processor stayed at DISPATCH_LEVEL or above too long: one DPC or ISR overran its budget (subcode 0) or "
        "the total time at raised IRQL crossed the watchdog limit (subcode 1). Spinning on a lock, long loops in "
        "DPCs and interrupt storms are the usual causes.",
        (_SUBCODE_PARAM,
         _P("ticks", "value", "Subcode 0: ticks the DPC ran; subcode 1: the watchdog period in ticks."),
         _P("limit or triage block", "value", "Subcode 0: ticks allowed; subcode 1: address of "
                                             "nt!DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK."),
         _P("triage block", "value", "Subcode 0: address of nt!DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK; subcode 1: "
                                    "reserved.")),
        ("`k`: the code running when the watchdog fired, often a spin loop or a lock acquire",
         "`!running -ti`: every processor's stack; another processor holding the contended spin lock is the real "
         "culprit",
         "`!dpcs`: DPCs queued per processor",
         "`dt nt!_DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK` on the triage block address from Arg3/Arg4, where the "
         "kernel's symbols carry that type (the 19041 public symbols do not)"),
        subcode_param=0,
        subcodes={0x0: "a single DPC or ISR ran longer than its allotment (Arg2 ticks used, Arg3 ticks allowed)",
                  0x1: "the time spent at DISPATCH_LEVEL or above, summed, exceeded the watchdog period (Arg2)"},
        subcode_layouts={0x0: ("", "DPC time count (ticks)", "DPC time allotment (ticks)",
                               "nt!DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK"),
                         0x1: ("", "watchdog period (ticks)", "nt!DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK", "reserved")}),
    _entry(
        0x139, "KERNEL_SECURITY_CHECK_FAILURE", "security-check",
        "Kernel code found one of its own invariants broken, most often a corrupted LIST_ENTRY (subcode 3) or an "
        "overwritten stack cookie, and stopped at once with a fast-fail. The damage happened earlier; the function "
        "that detected it is usually a victim.",
        (_P("fast-fail code", "subcode", "Which check failed (3 = corrupted doubly linked list)."),
         _P("trap frame", "pointer", "Address of the trap frame of the fast-fail: `.trap <Arg2>`."),
         _P("exception record", "pointer", "Address of the exception record: `.exr <Arg3>`."),
         _reserved()),
        ("`.trap <Arg2>` then `k`: the function that found the corruption",
         "subcode 3: `dq` the list entry and its neighbours' Flink/Blink, then `!pool` on the structure that holds "
         "the entry; the owner of a freed or overrun block is the suspect",
         "subcode 2: the function whose stack cookie was overwritten overran one of its local buffers",
         "`!pytriage -v`: blame and pool evidence for the corrupted structure"),
        subcode_param=0, subcodes=_FAST_FAIL),
    _entry(
        0x13A, "KERNEL_MODE_HEAP_CORRUPTION", "pool-corruption",
        "The kernel's segment heap, which backs pool allocations since Windows 10 19H1, found its metadata "
        "damaged; the subcode says how. As with 0x19, the code that trips over the damage is rarely the code that "
        "caused it.",
        (_P("corruption type", "subcode", "How the heap found itself damaged (see the subcode table)."),
         _P("heap", "pointer", "Address of the heap that reported the problem."),
         _P("corrupted address", "address", "Where the corruption was detected: start with `!pool <Arg3>`."),
         _reserved()),
        ("`!pool <Arg3>`: the block at the corruption and its neighbours",
         "`!pooltag <Arg3>`: tags of the blocks around it and the drivers that allocate with them",
         "`db <Arg3>-0x40 L0x100`: raw bytes, look for text or a fill pattern written over heap metadata",
         "Driver Verifier special pool on the suspect owners: each allocation gets its own page, so an overrun "
         "faults at the guilty write (0xD6)"),
        subcode_param=0, address_param=2, subcodes=_HEAP_FAILURE),
    _entry(
        0x1C8, "MANUALLY_INITIATED_POWER_BUTTON_HOLD", "timeout",
        "Not a failure Windows detected: the user held the power button long enough (on a machine configured for "
        "it) to force a dump before the firmware's hard reset. Treat it as a hang dump: the question is what the "
        "machine was stuck on.",
        (_P("hold time (ms)", "value", "How long the power button was held, in milliseconds."),
         _P("triage block", "pointer", "Address of the power manager's nt!_POP_POWER_BUTTON_TRIAGE_BLOCK."),
         _reserved(), _reserved()),
        ("`!running -ti`: each processor's stack; one spinning at raised IRQL explains a frozen machine",
         "`!stacks 2`: all threads; look for many waiting on the same lock, IRP or driver",
         "`dt nt!_POP_POWER_BUTTON_TRIAGE_BLOCK <Arg2>`: the power manager's view at the time, where the "
         "kernel's symbols carry that type",
         "`!pytriage -v`")),
)

# The _M variants carry the same condition and parameters as the base code; bugcodes.h lists these five.
_VARIANTS = {0x10000050: 0x50, 0x1000007E: 0x7E, 0x1000007F: 0x7F, 0x1000008E: 0x8E, 0x100000D6: 0xD6}


def _variant(code: int, base: BugcheckInfo) -> BugcheckInfo:
    summary = ("The _M variant of %s %s: same condition, same parameters, same analysis. %s"
               % (_code_text(base.code), base.name, base.summary.split(". ")[0]))
    if not summary.endswith("."):
        summary += "."
    return BugcheckInfo(code=code, name=base.name + "_M", summary=summary, family=base.family,
                        parameters=base.parameters, next_steps=base.next_steps, subcode_param=base.subcode_param,
                        subcodes=base.subcodes, exception_param=base.exception_param,
                        faulting_ip_param=base.faulting_ip_param, address_param=base.address_param,
                        subcode_layouts=base.subcode_layouts, value_meanings=base.value_meanings)


def _build_table() -> Dict[int, BugcheckInfo]:
    table = {entry.code: entry for entry in _BASE_ENTRIES}
    for code, base in _VARIANTS.items():
        table[code] = _variant(code, table[base])
    return table


_TABLE: Mapping[int, BugcheckInfo] = MappingProxyType(_build_table())

# For these codes Arg3/Arg4 are the exception's own parameters; for an access violation they are the access
# type and the address accessed, which is worth decoding.
_EXCEPTION_INFO_PARAMS = {0x1E: (2, 3)}
_ACCESS_VIOLATION = 0xC0000005


# --------------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------------

def lookup(code: int) -> Optional[BugcheckInfo]:
    """The entry for a bug check code, or None when pytriage has none."""
    return _TABLE.get(code)


def bugcheck_name(code: int) -> str:
    """The code's symbolic name, or ``UNKNOWN_BUGCHECK_0x...`` when pytriage has no entry for it."""
    info = _TABLE.get(code)
    return info.name if info is not None else "UNKNOWN_BUGCHECK_0x%X" % code


def all_codes() -> List[int]:
    """Every code in the table, sorted."""
    return sorted(_TABLE)


def explain_parameters(code: int, params: Sequence[int]) -> List[ExplainedParam]:
    """Four entries (Arg1..Arg4) pairing a dump's parameter values with their meaning and a decoded detail.

    Missing values count as 0 and values are taken as unsigned 64-bit. An unknown code gives generic
    entries rather than an error: a triage report must still print the four numbers.
    """
    values = [(int(v) & _MASK64) for v in list(params)[:4]]
    values += [0] * (4 - len(values))
    info = lookup(code)
    if info is None:
        return [ExplainedParam(i, v, "Arg%d" % (i + 1), "value",
                               "pytriage has no description of this bug check's parameters.", "")
                for i, v in enumerate(values)]
    subcode = values[info.subcode_param] if info.subcode_param is not None else None
    out = []
    for i, (param, value) in enumerate(zip(info.parameters, values)):
        detail = _detail(info, i, param, value, values, subcode)
        out.append(ExplainedParam(i, value, param.name, param.kind, param.text, detail))
    return out


def next_steps_for(code: int, params: Sequence[int]) -> List[str]:
    """The entry's next steps with ``<Arg1>``..``<Arg4>`` replaced by the dump's values (``0x...``)."""
    info = lookup(code)
    if info is None:
        return ["`!pytriage -v`: stack, blame and forensics work for any code",
                "`!analyze -v`: the debugger's own description of this code's parameters"]
    values = [(int(v) & _MASK64) for v in list(params)[:4]]
    values += [0] * (4 - len(values))
    steps = []
    for step in info.next_steps:
        for i, value in enumerate(values):
            step = step.replace("<Arg%d>" % (i + 1), "0x%x" % value)
        steps.append(step)
    return steps


def _detail(info: BugcheckInfo, index: int, param: ParamInfo, value: int, values: Sequence[int],
            subcode: Optional[int]) -> str:
    """Decode one value: by kind first, then by the subcode's layout, then by fixed value meanings."""
    kind = param.kind
    if kind == "status":
        status = _status32(value)
        if status is None:
            return "0x%X is not a 32-bit status code" % value
        name = _STATUS_NAMES.get(status)
        return "exception code 0x%08X (%s)" % (status, name) if name else "exception code 0x%08X" % status
    if kind == "irql":
        return "IRQL %d (%s)" % (value, irql_name(value)) if value < 0x100 else "0x%X is not an IRQL" % value
    if kind == "access":
        table = _ACCESS_CLASSIC if info.code in _CLASSIC_ACCESS_CODES else _ACCESS_PAGE_FAULT
        return table.get(value, "unrecognised access code %s" % _hex(value))
    if kind == "subcode":
        meaning = info.subcodes.get(value)
        return "subcode %s: %s" % (_hex(value), meaning if meaning else "not in pytriage's table")
    if subcode is not None and subcode in info.subcode_layouts:
        label = info.subcode_layouts[subcode][index]
        if label:
            return "with subcode %s: %s" % (_hex(subcode), label)
    meanings = info.value_meanings.get(index)
    if meanings is not None and value in meanings:
        return "%s: %s" % (_hex(value), meanings[value])
    av_params = _EXCEPTION_INFO_PARAMS.get(info.code)
    if av_params and _status32(values[info.exception_param or 0]) == _ACCESS_VIOLATION:
        if index == av_params[0]:
            return _ACCESS_CLASSIC.get(value, "unrecognised access code %s" % _hex(value))
        if index == av_params[1]:
            return "address the instruction tried to access"
    return ""


# --------------------------------------------------------------------------------------------------
# Documentation
# --------------------------------------------------------------------------------------------------

def markdown_table() -> str:
    """The table of docs/bugchecks.md: one row per code, each parameter's name and (when it differs) its kind."""
    lines = ["| Code | Name | Family | Arg1 | Arg2 | Arg3 | Arg4 |",
             "|---|---|---|---|---|---|---|"]
    for code in all_codes():
        info = _TABLE[code]
        cells = [p.name if p.name == p.kind else "%s (%s)" % (p.name, p.kind) for p in info.parameters]
        lines.append("| %s | %s | %s | %s |" % (_code_text(code), info.name, info.family, " | ".join(cells)))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - documentation helper
    print(markdown_table(), end="")
