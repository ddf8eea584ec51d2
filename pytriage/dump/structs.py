"""On-disk layouts of Windows kernel crash dumps, declared once as data.

Offsets follow the public ``DUMP_HEADER64``/``DUMP_HEADER32`` definitions (wdm.h / the debugger SDK)
and were checked against the real corpus dump (``shared/corpus/reference/triage_x64.facts.json``, which
rizin reads the same way) and against files that ``kdmp-parser`` opens. Sizes in comments are bytes.
"""

from pytriage.dump.layout import Layout

PAGE_SIZE = 0x1000
HEADER64_SIZE = 0x2000
HEADER32_SIZE = 0x1000

# DUMP_HEADER64 (0x2000 bytes). The PhysicalMemoryBlock buffer (0x88..0x348) holds
# PHYSICAL_MEMORY_DESCRIPTOR64: NumberOfRuns, NumberOfPages, then {BasePage, PageCount} runs.
DUMP_HEADER64 = Layout("DUMP_HEADER64", HEADER64_SIZE, [
    ("Signature", 0x000, "4s"),
    ("ValidDump", 0x004, "4s"),
    ("MajorVersion", 0x008, "I"),
    ("MinorVersion", 0x00C, "I"),
    ("DirectoryTableBase", 0x010, "Q"),
    ("PfnDataBase", 0x018, "Q"),
    ("PsLoadedModuleList", 0x020, "Q"),
    ("PsActiveProcessHead", 0x028, "Q"),
    ("MachineImageType", 0x030, "I"),
    ("NumberProcessors", 0x034, "I"),
    ("BugCheckCode", 0x038, "I"),
    ("BugCheckParameter1", 0x040, "Q"),
    ("BugCheckParameter2", 0x048, "Q"),
    ("BugCheckParameter3", 0x050, "Q"),
    ("BugCheckParameter4", 0x058, "Q"),
    ("KdDebuggerDataBlock", 0x080, "Q"),
    ("NumberOfRuns", 0x088, "I"),
    ("NumberOfPages", 0x090, "Q"),
    ("DumpType", 0xF98, "I"),
    ("RequiredDumpSpace", 0xFA0, "Q"),
    ("SystemTime", 0xFA8, "Q"),
    ("Comment", 0xFB0, "128s"),
    ("SystemUpTime", 0x1030, "Q"),
    ("MiniDumpFields", 0x1038, "I"),
    ("SecondaryDataState", 0x103C, "I"),
    ("ProductType", 0x1040, "I"),
    ("SuiteMask", 0x1044, "I"),
    ("WriterStatus", 0x1048, "I"),
    ("KdSecondaryVersion", 0x104D, "B"),
])
H64_RUNS_OFFSET = 0x098          # first PHYSICAL_MEMORY_RUN64 {BasePage, PageCount}
H64_MAX_RUNS = (0x348 - H64_RUNS_OFFSET) // 16   # 43 runs fit in the header buffer
H64_CONTEXT_OFFSET = 0x348       # CONTEXT (x64: 0x4d0 bytes) or ARM64_NT_CONTEXT
H64_EXCEPTION_OFFSET = 0xF00     # EXCEPTION_RECORD64

# DUMP_HEADER32 (0x1000 bytes, "PAGEDUMP"): only header facts are read.
DUMP_HEADER32 = Layout("DUMP_HEADER32", HEADER32_SIZE, [
    ("Signature", 0x000, "4s"),
    ("ValidDump", 0x004, "4s"),
    ("MajorVersion", 0x008, "I"),
    ("MinorVersion", 0x00C, "I"),
    ("DirectoryTableBase", 0x010, "I"),
    ("PfnDataBase", 0x014, "I"),
    ("PsLoadedModuleList", 0x018, "I"),
    ("PsActiveProcessHead", 0x01C, "I"),
    ("MachineImageType", 0x020, "I"),
    ("NumberProcessors", 0x024, "I"),
    ("BugCheckCode", 0x028, "I"),
    ("BugCheckParameter1", 0x02C, "I"),
    ("BugCheckParameter2", 0x030, "I"),
    ("BugCheckParameter3", 0x034, "I"),
    ("BugCheckParameter4", 0x038, "I"),
    ("KdDebuggerDataBlock", 0x060, "I"),
    ("DumpType", 0xF88, "I"),
])

# Bitmap dump header at 0x2000 (DumpType 5, and 2/6 which share it): "SDMP" or "FDMP", then "DUMP".
BITMAP_HEADER = Layout("BITMAP_DUMP header", 0x38, [
    ("Signature", 0x00, "4s"),
    ("ValidDump", 0x04, "4s"),
    ("FirstPage", 0x20, "Q"),          # file offset of the first stored page
    ("TotalPresentPages", 0x28, "Q"),
    ("Pages", 0x30, "Q"),              # number of bits in the bitmap (= highest PFN + 1)
])
BITMAP_OFFSET = 0x2038

# TRIAGE_DUMP64 at 0x2000 (DumpType 4). Offsets are absolute file offsets.
TRIAGE_DUMP64 = Layout("TRIAGE_DUMP64", 0x80, [
    ("ServicePackBuild", 0x00, "I"),
    ("SizeOfDump", 0x04, "I"),
    ("ValidOffset", 0x08, "I"),
    ("ContextOffset", 0x0C, "I"),
    ("ExceptionOffset", 0x10, "I"),
    ("MmOffset", 0x14, "I"),
    ("UnloadedDriversOffset", 0x18, "I"),
    ("PrcbOffset", 0x1C, "I"),
    ("ProcessOffset", 0x20, "I"),
    ("ThreadOffset", 0x24, "I"),
    ("CallStackOffset", 0x28, "I"),
    ("SizeOfCallStack", 0x2C, "I"),
    ("DriverListOffset", 0x30, "I"),
    ("DriverCount", 0x34, "I"),
    ("StringPoolOffset", 0x38, "I"),
    ("StringPoolSize", 0x3C, "I"),
    ("BrokenDriverOffset", 0x40, "I"),
    ("TriageOptions", 0x44, "I"),
    ("TopOfStack", 0x48, "Q"),
    ("BStoreOffset", 0x50, "I"),
    ("SizeOfBStore", 0x54, "I"),
    ("LimitOfBStore", 0x58, "Q"),
    ("DataPageAddress", 0x60, "Q"),
    ("DataPageOffset", 0x68, "I"),
    ("DataPageSize", 0x6C, "I"),
    ("DebuggerDataOffset", 0x70, "I"),
    ("DebuggerDataSize", 0x74, "I"),
    ("DataBlocksOffset", 0x78, "I"),
    ("DataBlocksCount", 0x7C, "I"),
])
TRIAGE_HEADER_OFFSET = 0x2000
# TRIAGE_DATA_BLOCK: {ULONG64 Address; ULONG Offset; ULONG Size}
TRIAGE_DATA_BLOCK_SIZE = 0x10
# DUMP_DRIVER_ENTRY64: ULONG DriverNameOffset, pad, then a KLDR_DATA_TABLE_ENTRY64 copy (0x88 bytes).
DUMP_DRIVER_ENTRY64 = Layout("DUMP_DRIVER_ENTRY64", 0x90, [
    ("DriverNameOffset", 0x00, "I"),
    ("DllBase", 0x08 + 0x30, "Q"),
    ("EntryPoint", 0x08 + 0x38, "Q"),
    ("SizeOfImage", 0x08 + 0x40, "I"),
    ("CheckSum", 0x08 + 0x78, "I"),
    ("TimeDateStamp", 0x08 + 0x80, "I"),
])

# EXCEPTION_RECORD64 (0x98 bytes).
EXCEPTION_RECORD64 = Layout("EXCEPTION_RECORD64", 0x98, [
    ("ExceptionCode", 0x00, "I"),
    ("ExceptionFlags", 0x04, "I"),
    ("ExceptionRecord", 0x08, "Q"),
    ("ExceptionAddress", 0x10, "Q"),
    ("NumberParameters", 0x18, "I"),
    ("ExceptionInformation", 0x20, "15Q"),
])

# x64 CONTEXT (0x4d0 bytes): the general registers and the control set.
CONTEXT_AMD64_SIZE = 0x4D0
_AMD64_GPRS = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"]
CONTEXT_AMD64 = Layout("CONTEXT (AMD64)", CONTEXT_AMD64_SIZE, [
    ("context_flags", 0x30, "I"),
    ("mxcsr", 0x34, "I"),
    ("cs", 0x38, "H"), ("ds", 0x3A, "H"), ("es", 0x3C, "H"),
    ("fs", 0x3E, "H"), ("gs", 0x40, "H"), ("ss", 0x42, "H"),
    ("rflags", 0x44, "I"),
    ("dr0", 0x48, "Q"), ("dr1", 0x50, "Q"), ("dr2", 0x58, "Q"),
    ("dr3", 0x60, "Q"), ("dr6", 0x68, "Q"), ("dr7", 0x70, "Q"),
] + [(name, 0x78 + 8 * i, "Q") for i, name in enumerate(_AMD64_GPRS)])
AMD64_REGISTER_ORDER = _AMD64_GPRS[:4] + ["rsi", "rdi", "rip", "rsp", "rbp"] + [
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rflags", "cs", "ss", "ds", "es", "fs", "gs",
    "mxcsr", "context_flags"]

# ARM64_NT_CONTEXT (0x390 bytes): X0..X28, Fp (X29), Lr (X30), Sp, Pc.
CONTEXT_ARM64_SIZE = 0x390
CONTEXT_ARM64 = Layout("CONTEXT (ARM64)", CONTEXT_ARM64_SIZE, [
    ("context_flags", 0x00, "I"),
    ("cpsr", 0x04, "I"),
] + [("x%d" % i, 0x08 + 8 * i, "Q") for i in range(29)] + [
    ("fp", 0x08 + 8 * 29, "Q"),
    ("lr", 0x08 + 8 * 30, "Q"),
    ("sp", 0x100, "Q"),
    ("pc", 0x108, "Q"),
])

MACHINE_NAMES = {0x8664: "AMD64", 0xAA64: "ARM64", 0x014C: "I386"}

DUMP_TYPE_NAMES = {
    1: "full",
    2: "kernel summary",
    3: "header only",
    4: "triage",
    5: "bitmap full",
    6: "bitmap kernel",
    7: "automatic",
    8: "kernel memory (RDMP)",
    9: "kernel and user memory (RDMP)",
    10: "complete memory (RDMP)",
}
