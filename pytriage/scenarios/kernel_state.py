"""Kernel globals a debugger reads first: KDDEBUGGER_DATA64, processors (KPCR/KPRCB), threads, System.

Why this exists: a debugger does not trust the dump header alone. dbgeng opens a kernel dump through
KDDEBUGGER_DATA64 ("KDBG"): it reads KiProcessorBlock[n] -> KPRCB, takes each processor's registers from
KPRCB.ProcessorState.ContextFrame (and the KPRCB.Context pointer), the current thread from
KPRCB.CurrentThread, the process from KTHREAD.ApcState.Process, and the sizes and offsets of all those
structures from the KDBG's offset table. Without them it refuses the dump ("KiProcessorBlock[0] could not
be read"). The offsets below are those of Windows 10 19041 x64, as the KDDEBUGGER_DATA64 saved in the
corpus triage dump records them (shared/corpus/dumps/triage_x64.dmp, at DebuggerDataOffset).
"""

import struct
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

KDBG_SIZE = 0x380

# KDDEBUGGER_DATA64 pointer fields (offset in the block) the builder fills with kernel variable addresses.
KDBG_POINTERS = {
    "KernBase": 0x018, "KiBugcheckData": 0x088, "PsLoadedModuleList": 0x048, "PsActiveProcessHead": 0x050,
    "MmPfnDatabase": 0x0C0, "MmHighestUserAddress": 0x1C8, "MmSystemRangeStart": 0x1D0,
    "MmUserProbeAddress": 0x1D8, "NtBuildLab": 0x208, "KiProcessorBlock": 0x218,
    "MmPhysicalMemoryBlock": 0x270,
}
MM_PTE_BASE_OFFSET = 0x360             # KDDEBUGGER_DATA64.PteBase (a value, not a pointer)

# Structure sizes and field offsets (USHORTs at 0x298..0x35e of KDDEBUGGER_DATA64), Windows 10 19041 x64.
KDBG_OFFSETS_19041 = {
    0x298: 0x218,   # OffsetKThreadNextProcessor
    0x29A: 0x0F0,   # OffsetKThreadTeb
    0x29C: 0x058,   # OffsetKThreadKernelStack
    0x29E: 0x028,   # OffsetKThreadInitialStack
    0x2A0: 0x0B8,   # OffsetKThreadApcProcess
    0x2A2: 0x184,   # OffsetKThreadState
    0x2A8: 0xA40,   # SizeEProcess
    0x2AA: 0x550,   # OffsetEprocessPeb
    0x2AC: 0x540,   # OffsetEprocessParentCID
    0x2AE: 0x028,   # OffsetEprocessDirectoryTableBase
    0x2B0: 0xAF00,  # SizePrcb
    0x2B2: 0x312A,  # OffsetPrcbDpcRoutine
    0x2B4: 0x008,   # OffsetPrcbCurrentThread
    0x2B6: 0x044,   # OffsetPrcbMhz
    0x2B8: 0x040,   # OffsetPrcbCpuType
    0x2BA: 0x8590,  # OffsetPrcbVendorString
    0x2BC: 0x1F0,   # OffsetPrcbProcStateContext
    0x2BE: 0x024,   # OffsetPrcbNumber
    0x2C0: 0x898,   # SizeEThread
    0x2E0: 0xB080,  # SizePcr
    0x2E2: 0x018,   # OffsetPcrSelfPcr
    0x2E4: 0x020,   # OffsetPcrCurrentPrcb
    0x2E6: 0x180,   # OffsetPcrContainedPrcb
    0x2F2: 0x100,   # OffsetPrcbProcStateSpecialReg
    0x2F4: 0x10, 0x2F6: 0x18, 0x2FA: 0x33, 0x2FC: 0x2B, 0x302: 0x40, 0x304: 0x23, 0x306: 0x53,   # GDT selectors
    0x338: 0x85C0,  # OffsetPrcbContext
    0x340: 0x30, 0x344: 0x38, 0x348: 0x208, 0x34C: 0x4B0,
    0x350: 0x18, 0x352: 0x312C, 0x354: 0x3110, 0x356: 0x85D8, 0x358: 0x50, 0x35A: 0x2A0, 0x35C: 0x283,
}

PCR_SIZE = 0xB080
PCR_PRCB = 0x180                       # KPCR.Prcb
PRCB_CURRENT_THREAD = 0x008
PRCB_IDLE_THREAD = 0x018
PRCB_NUMBER = 0x024
PRCB_SPECIAL_REGISTERS = 0x100         # ProcessorState.SpecialRegisters (Cr0, Cr2, Cr3, Cr4 ...)
PRCB_CONTEXT_FRAME = 0x1F0             # ProcessorState.ContextFrame (CONTEXT)
PRCB_CONTEXT_POINTER = 0x85C0          # KPRCB.Context
THREAD_SIZE = 0x898
THREAD_HEADER_TYPE = 0x000             # KTHREAD.Header.Type (DISPATCHER_HEADER): ThreadObject
THREAD_OBJECT = 6
PROCESS_HEADER_TYPE = 0x000            # KPROCESS.Header.Type: ProcessObject
PROCESS_OBJECT = 3
THREAD_INITIAL_STACK = 0x028
THREAD_KERNEL_STACK = 0x058
THREAD_APC_PROCESS = 0x0B8
THREAD_STATE = 0x184
THREAD_NEXT_PROCESSOR = 0x218
PROCESS_SIZE = 0xA40
PROCESS_DIRECTORY_TABLE_BASE = 0x028
PROCESS_ACTIVE_LINKS = 0x448           # EPROCESS.ActiveProcessLinks (19041)
PROCESS_IMAGE_FILE_NAME = 0x5A8        # EPROCESS.ImageFileName[15] (19041)
THREAD_RUNNING = 2
PCR_GDT_BASE = 0x000                   # KPCR.GdtBase
PCR_IDT_BASE = 0x038                   # KPCR.IdtBase
SPECIAL_GDTR_LIMIT = 0x056             # KSPECIAL_REGISTERS.Gdtr at 0x50: {USHORT Pad[3], Limit; PVOID Base}
SPECIAL_GDTR_BASE = 0x058
PRCB_CONTEXT_FLAGS_INIT = 0x85C8       # KPRCB.ContextFlagsInit

# The x64 GDT Windows loads (KGDT64_*): a debugger decodes CS through it to know the code is 64-bit.
GDT_ENTRIES = [
    0x0000000000000000,      # 0x00 null
    0x0000000000000000,      # 0x08
    0x00209B0000000000,      # 0x10 KGDT64_R0_CODE: present, DPL 0, long mode
    0x0040930000000000,      # 0x18 KGDT64_R0_DATA
    0x00CFFB000000FFFF,      # 0x20 KGDT64_R3_CMCODE (32-bit user code)
    0x00CFF3000000FFFF,      # 0x28 KGDT64_R3_DATA
    0x0020FB0000000000,      # 0x30 KGDT64_R3_CODE
    0x0000000000000000,      # 0x38
    0x0000000000000000,      # 0x40 KGDT64_SYS_TSS (16 bytes, left empty)
    0x0000000000000000,
    0x0040F30000003C00,      # 0x50 KGDT64_R3_CMTEB
]

SYSTEM_RANGE_START = 0xFFFF800000000000
HIGHEST_USER_ADDRESS = 0x00007FFFFFFEFFFF
USER_PROBE_ADDRESS = 0x00007FFFFFFF0000
PTE_BASE = 0xFFFFFD8000000000


@dataclass
class Processor:
    number: int
    pcr: int
    prcb: int
    thread: int


@dataclass
class KernelState:
    processors: List[Processor] = field(default_factory=list)
    system_process: int = 0


def build_processors(alloc: Callable[[bytes, int], int], reserve: Callable[[int, int], int], count: int,
                     contexts: List[bytes], dtb: int, stack_tops: List[int]) -> KernelState:
    """Lay out the System process, one KPCR (with its KPRCB) and one running thread per processor.

    ``alloc(data, align)`` places bytes in kernel memory and returns their address, ``reserve(size,
    align)`` returns the address the next ``alloc`` of that size will use; ``contexts[n]`` is processor
    n's CONTEXT (0x4d0 bytes), ``stack_tops[n]`` its thread's initial stack.
    """
    state = KernelState()
    process = bytearray(PROCESS_SIZE)
    process[PROCESS_HEADER_TYPE] = PROCESS_OBJECT           # debuggers check an object's type before using it
    struct.pack_into("<Q", process, PROCESS_DIRECTORY_TABLE_BASE, dtb)
    process[PROCESS_IMAGE_FILE_NAME:PROCESS_IMAGE_FILE_NAME + 7] = b"System\0"
    state.system_process = alloc(bytes(process), 0x40)
    gdt = alloc(b"".join(struct.pack("<Q", e) for e in GDT_ENTRIES), 0x1000)
    for n in range(count):
        thread = bytearray(THREAD_SIZE)
        thread[THREAD_HEADER_TYPE] = THREAD_OBJECT
        struct.pack_into("<Q", thread, THREAD_INITIAL_STACK, stack_tops[n])
        struct.pack_into("<Q", thread, THREAD_KERNEL_STACK, stack_tops[n] - 0x1000)
        struct.pack_into("<Q", thread, THREAD_APC_PROCESS, state.system_process)
        struct.pack_into("<B", thread, THREAD_STATE, THREAD_RUNNING)
        struct.pack_into("<I", thread, THREAD_NEXT_PROCESSOR, n)
        thread_va = alloc(bytes(thread), 0x40)

        pcr = bytearray(PCR_SIZE)
        pcr_va = reserve(PCR_SIZE, 0x1000)
        prcb_va = pcr_va + PCR_PRCB
        struct.pack_into("<QQ", pcr, 0x18, pcr_va, prcb_va)                       # Self, CurrentPrcb
        struct.pack_into("<Q", pcr, PCR_GDT_BASE, gdt)
        prcb = PCR_PRCB
        struct.pack_into("<Q", pcr, prcb + PRCB_CURRENT_THREAD, thread_va)
        struct.pack_into("<Q", pcr, prcb + PRCB_IDLE_THREAD, thread_va)
        struct.pack_into("<I", pcr, prcb + PRCB_NUMBER, n)
        special = prcb + PRCB_SPECIAL_REGISTERS
        struct.pack_into("<QQQQ", pcr, special, 0x80050033, 0, dtb, 0x350EF8)         # Cr0, Cr2, Cr3, Cr4
        struct.pack_into("<H", pcr, special + SPECIAL_GDTR_LIMIT, len(GDT_ENTRIES) * 8 - 1)
        struct.pack_into("<Q", pcr, special + SPECIAL_GDTR_BASE, gdt)
        pcr[prcb + PRCB_CONTEXT_FRAME:prcb + PRCB_CONTEXT_FRAME + len(contexts[n])] = contexts[n]
        struct.pack_into("<QI", pcr, prcb + PRCB_CONTEXT_POINTER, prcb_va + PRCB_CONTEXT_FRAME, 0x10001F)
        placed = alloc(bytes(pcr), 0x1000)
        assert placed == pcr_va
        state.processors.append(Processor(n, pcr_va, prcb_va, thread_va))
    return state


def kdbg_block(kdbg_va: int, pointers: Dict[str, int]) -> bytes:
    """KDDEBUGGER_DATA64, unencoded (as in a dump written with KdpDataBlockEncoded off)."""
    block = bytearray(KDBG_SIZE)
    struct.pack_into("<QQ4sI", block, 0, kdbg_va, kdbg_va, b"KDBG", KDBG_SIZE)
    for name, value in pointers.items():
        struct.pack_into("<Q", block, KDBG_POINTERS[name], value)
    for offset, value in KDBG_OFFSETS_19041.items():
        struct.pack_into("<H", block, offset, value)
    struct.pack_into("<Q", block, MM_PTE_BASE_OFFSET, PTE_BASE)
    return bytes(block)


def kernel_variables(build: int) -> List[Tuple[str, int, bytes]]:
    """(name, offset in the kernel's .data, initial bytes) of the simple variables KDBG points at."""
    lab = ("%d.1.amd64fre.vb_release.191206-1406" % build).encode("ascii") + b"\0"
    return [
        ("MmSystemRangeStart", 0x028, struct.pack("<Q", SYSTEM_RANGE_START)),
        ("MmHighestUserAddress", 0x030, struct.pack("<Q", HIGHEST_USER_ADDRESS)),
        ("MmUserProbeAddress", 0x038, struct.pack("<Q", USER_PROBE_ADDRESS)),
        ("NtBuildLab", 0x280, lab[:0x7F]),
    ]
