"""The seed scenarios `vpn-lwf-doublefault` (seed 000) and `wfp-callout-nbl` (seed 002) as `pytriage stack`
walks them, and the spec's ``"symbols": false`` (a third-party driver shipped without its PDB).

The expected frames are the seeds' own (the frame lists of the real write-ups, in the brief's order),
written out here rather than taken from the builder; the WFP stack's Child-SP steps are those of the x64
`kv` in seed 002. The instruction checks decode the dump's bytes with capstone, independently of the
builder and of pytriage's call-site code. Microsoft's engine walks both stacks the same way in
tests/oracle_dbgeng.
"""

import json
import os
import struct

import capstone
import pefile
import pytest

from pytriage import cli
from pytriage.errors import SpecError
from pytriage.scenarios import build_builtin, builtin_path
from pytriage.scenarios.builder import build_scenario
from pytriage.scenarios.spec import parse_spec
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.symbolizer import Symbolizer
from pytriage.target.offline import OfflineDumpTarget

VPN_FRAMES = [
    "nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0x69", "nt!KiDoubleFaultAbort+0xb4",
    "vmswitch!VmsMpNicSendNetBufferLists+0xa7", "ndis!ndisMSendNBLToMiniport+0xf4",
    "ndis!ndisInvokeNextSendHandler+0x40", "ndis!NdisFSendNetBufferLists+0x2ed", "dnelwf64+0x3243",
    "ndis!ndisFilterSendNetBufferLists+0x9b", "ndis!NdisSendNetBufferLists+0x1a3",
    "tcpip!FlpSendPacketsHelper+0x2ba", "tcpip!IppFragmentPackets+0x1bf", "tcpip!IppDispatchSendPacketHelper+0x7e",
    "tcpip!IppPacketizeDatagrams+0x2c0", "tcpip!IppSendDatagramsCommon+0x2a7", "tcpip!IpNlpSendDatagrams+0x47",
    "tcpip!UdpSendMessages+0x1c1", "tcpip!UdpTlProviderSendMessagesCalloutRoutine+0x15",
    "nt!KeExpandKernelStackAndCalloutInternal+0x8e", "nt!KeExpandKernelStackAndCalloutEx+0x1d",
    "tcpip!UdpTlProviderSendMessages+0x75", "afd!AfdFastDatagramSend+0x2d0", "afd!AfdFastIoDeviceControl+0x1a9",
    "nt!IopXxxControlFile+0x2c4", "nt!NtDeviceIoControlFile+0x56", "nt!KiSystemServiceCopyEnd+0x25"]

WFP_FRAMES = [
    "nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0x69", "nt!KiPageFault+0x260",
    "NETIO!NetioDereferenceNetBufferList+0xa2", "NETIO!NetioDereferenceNetBufferListChain+0x332",
    "tcpip!IppReceiveHeaderBatch+0x3c3", "tcpip!IppLoopbackTransmit+0x38f", "nt!KeExpandKernelStackAndCalloutEx+0xd8",
    "tcpip!IppLoopbackEnqueue+0x22f", "tcpip!IppDispatchSendPacketHelper+0x38a", "tcpip!IppPacketizeDatagrams+0x2d5",
    "tcpip!IppSendDatagramsCommon+0x87e", "tcpip!IppInspectInjectRawSend+0x15f",
    "fwpkclnt!FwpsInjectNetworkSendAsync0+0x1c1", "inspect!TLInspectCloneReinjectOutbound+0x254",
    "inspect!TLInspectWorker+0x9e", "nt!PspSystemThreadStartup+0x5a", "nt!KiStartSystemThread+0x16"]

# Seed 002's x64 `kv` (Windows 7): Child-SP of each frame minus the one before it, frame 1 onwards.
SEED_002_CHILD_SP_STEPS = [0x8, 0x140, 0x190, 0x30, 0xD0, 0xE0, 0xB0, 0xE0, 0xB0, 0xC0, 0x120, 0x1A0, 0x1A0, 0xB0,
                           0x70, 0x60, 0x40]

KTHREAD_INITIAL_STACK = 0x28           # x64 KTHREAD.InitialStack: the top of the thread's kernel stack
KTRAP_FRAME_RAX, KTRAP_FRAME_RIP, KTRAP_FRAME_RSP = 0x30, 0x168, 0x180      # x64 KTRAP_FRAME fields
KERNEL_STACK_SIZE = 0x6000

_BUILT = {}


def built(tmp_path_factory, name, kind):
    """Each scenario and dump type is built once for the module."""
    if (name, kind) not in _BUILT:
        _BUILT[name, kind] = build_builtin(name, str(tmp_path_factory.mktemp("%s-%s" % (name, kind))), kind)
    return _BUILT[name, kind]


def k_rows(capsys, b):
    """`pytriage stack -n` on the scenario's dump with its symbol store: (number, Child-SP, RetAddr, call
    site, TrapFrame or None) per line."""
    code = cli.main(["stack", "-n", b.dump_path, "--symbols", b.symstore_path])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == " # Child-SP          RetAddr           Call Site"
    rows = []
    for line in lines[1:]:
        number, child_sp, ret, site = line.split()[:4]
        trap = line.split("(TrapFrame @ ")[1].rstrip(")") if "(TrapFrame @ " in line else None
        rows.append((int(number, 16), int(child_sp.replace("`", ""), 16), int(ret.replace("`", ""), 16), site,
                     None if trap is None else int(trap.replace("`", ""), 16)))
    return rows


def _open(b):
    target = OfflineDumpTarget.open(b.dump_path)
    return target, Symbolizer(target, store=SymbolStore(b.symstore_path), isf_dirs=[])


def _address(symbolizer, target, site):
    """The address a call site names: ``module!Function+0xoff`` through the PDBs, ``module+0xoff`` from the
    module list."""
    name, _, off = site.partition("+0x")
    offset = int(off, 16) if off else 0
    if "!" in name:
        return symbolizer.address_of(name) + offset
    return target.module_by_name(name).base + offset


def _qword(target, va):
    return struct.unpack("<Q", target.read(va, 8))[0]


def _disasm_one(target, va):
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insn = next(md.disasm(target.read(va, 16), va))
    return insn.bytes.hex(), insn.mnemonic, insn.op_str


@pytest.mark.parametrize("kind", ["full", "bitmap"])
@pytest.mark.parametrize("name, frames", [("vpn-lwf-doublefault", VPN_FRAMES), ("wfp-callout-nbl", WFP_FRAMES)])
def test_pytriage_stack_walks_the_seed_frames(capsys, tmp_path_factory, name, frames, kind):
    b = built(tmp_path_factory, name, kind)
    rows = k_rows(capsys, b)
    assert [r[3] for r in rows] == frames
    assert [r[0] for r in rows] == list(range(len(frames)))
    # Only the trap handler's frame (2) carries a trap frame: its KTRAP_FRAME starts at its Child-SP
    # (push rbp; sub rsp,158h allocates the whole frame below the machine frame).
    assert [r[4] for r in rows] == [None, None, rows[2][1]] + [None] * (len(frames) - 3)
    target, symbolizer = _open(b)
    try:
        addresses = [_address(symbolizer, target, site) for site in frames]
        # Each RetAddr is where the next frame runs, the last one 0; each a name the symbolizer gives back.
        assert [r[2] for r in rows] == addresses[1:] + [0]
        assert [symbolizer.format(a) for a in addresses] == frames
        # The builder laid out what pytriage walks (its plan has the same rows).
        assert [(r[1], r[2], r[3], r[4]) for r in rows] == [(f.child_sp, f.return_address, f.name, f.trap_frame)
                                                            for f in b.stack.frames]
    finally:
        symbolizer.close()
        target.close()


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_vpn_double_fault_exhausted_the_kernel_stack(capsys, tmp_path_factory, kind):
    b = built(tmp_path_factory, "vpn-lwf-doublefault", kind)
    rows = k_rows(capsys, b)
    target, symbolizer = _open(b)
    try:
        trap = rows[2][4]
        rip, rsp = _qword(target, trap + KTRAP_FRAME_RIP), _qword(target, trap + KTRAP_FRAME_RSP)
        vmswitch_call = symbolizer.address_of("vmswitch!VmsMpNicSendNetBufferLists") + 0xA7
        assert (rip, rsp) == (vmswitch_call, rows[3][1])
        # 0x7F, parameter 1 = 8 (EXCEPTION_DOUBLE_FAULT); 2..4 reserved on x64: here the trap frame and
        # the rsp and rip the double fault interrupted, as KiDoubleFaultAbort's code passes them.
        assert target.bugcheck() == (0x7F, (0x8, trap, rsp, rip))
        context = target.context_record()
        assert (context["rcx"], context["rdx"], context["r8"], context["r9"]) == (0x7F, 0x8, trap, rsp)
        # The interrupted instruction is seed 000's `call vmswitch!VmsMpCommonSanitizeNblOffloadInfo`: the
        # fault hit as it pushed its return address.
        sanitize = symbolizer.address_of("vmswitch!VmsMpCommonSanitizeNblOffloadInfo")
        assert _disasm_one(target, rip) == ("e8c81e0000", "call", "0x%x" % sanitize)

        # Kernel stack exhausted: the thread's stack top (KTHREAD.InitialStack of processor 0's thread)
        # lies 0x6000 bytes (KERNEL_STACK_SIZE) above the interrupted rsp: the call's push went below it.
        thread = target.processor_contexts()[0].current_thread
        initial_stack = _qword(target, thread + KTHREAD_INITIAL_STACK)
        assert initial_stack - rsp >= 0x5C00
        assert initial_stack - rsp == KERNEL_STACK_SIZE
        assert initial_stack - rows[-1][1] == 0x260       # the outermost frame's Child-SP, near the top
        # The LWF's frame is the biggest: 0x1848 bytes of locals, 8 pushes and the return address.
        sizes = [b_[1] - a[1] for a, b_ in zip(rows, rows[1:])]
        assert sizes[7] == 0x1890 and sizes[7] == max(sizes)
        assert rows[7][3] == "dnelwf64+0x3243"
        # dnelwf64's return address follows its `call ndis!NdisFSendNetBufferLists` (e8 rel32).
        dnelwf64 = target.module_by_name("dnelwf64").base
        assert _disasm_one(target, dnelwf64 + 0x3243 - 5)[1:] == (
            "call", "0x%x" % symbolizer.address_of("ndis!NdisFSendNetBufferLists"))
    finally:
        symbolizer.close()
        target.close()


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_wfp_fault_in_netio_and_the_seed_frame_sizes(capsys, tmp_path_factory, kind):
    b = built(tmp_path_factory, "wfp-callout-nbl", kind)
    rows = k_rows(capsys, b)
    target, symbolizer = _open(b)
    try:
        ip = symbolizer.address_of("NETIO!NetioDereferenceNetBufferList") + 0xA2
        assert target.bugcheck() == (0xD1, (0x0, 0x2, 0x0, ip))
        trap = rows[2][4]
        assert (_qword(target, trap + KTRAP_FRAME_RIP), _qword(target, trap + KTRAP_FRAME_RSP)) == (ip, rows[3][1])
        assert _qword(target, trap + KTRAP_FRAME_RAX) == 0
        assert _disasm_one(target, ip) == ("488b08", "mov", "rcx, qword ptr [rax]")
        assert [b_[1] - a[1] for a, b_ in zip(rows, rows[1:])] == SEED_002_CHILD_SP_STEPS
    finally:
        symbolizer.close()
        target.close()


def _calls_by_function(target, symbolizer, module_name):
    """e8 rel32 targets of every function of the module, by name: a linear sweep with capstone over each
    RUNTIME_FUNCTION of the image (.pdata read by pefile from the symbol store's image file)."""
    module = target.module_by_name(module_name)
    image = symbolizer.module_symbols(module).image_file
    pe = pefile.PE(image)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    calls = {}
    for entry in pe.DIRECTORY_ENTRY_EXCEPTION:
        start, end = module.base + entry.struct.BeginAddress, module.base + entry.struct.EndAddress
        found = set()
        for insn in md.disasm(target.read(start, end - start), start):
            if insn.bytes[0] == 0xE8:
                found.add(symbolizer.format(int(insn.op_str, 16)))
        calls[symbolizer.format(start).split("!")[1]] = found
    return calls, pe


def test_wfp_callout_references_in_classify_and_clones_in_its_worker(tmp_path_factory):
    """Seed 002's misuse in the callout's own code: classifyFn takes a reference, the worker clones."""
    b = built(tmp_path_factory, "wfp-callout-nbl", "bitmap")
    target, symbolizer = _open(b)
    try:
        calls, _ = _calls_by_function(target, symbolizer, "inspect")
        assert calls["TLInspectTransportClassify"] == {"fwpkclnt!FwpsReferenceNetBufferList0"}
        assert calls["TLInspectCloneReinjectOutbound"] == {"fwpkclnt!FwpsAllocateCloneNetBufferList0",
                                                           "fwpkclnt!FwpsInjectNetworkSendAsync0"}
        assert calls["TLInspectWorker"] == {"inspect!TLInspectCloneReinjectOutbound"}
        assert calls["TLInspectInjectComplete"] == {"fwpkclnt!FwpsFreeCloneNetBufferList0",
                                                    "fwpkclnt!FwpsDereferenceNetBufferList0"}
        _, fwpk = _calls_by_function(target, symbolizer, "fwpkclnt")
        assert sorted(e.name.decode() for e in fwpk.DIRECTORY_ENTRY_EXPORT.symbols) == [
            "FwpsAllocateCloneNetBufferList0", "FwpsDereferenceNetBufferList0", "FwpsFreeCloneNetBufferList0",
            "FwpsInjectNetworkSendAsync0", "FwpsReferenceNetBufferList0"]
        assert symbolizer.module_symbols(target.module_by_name("inspect")).kind == "pdb"
    finally:
        symbolizer.close()
        target.close()


# --- "symbols": false ---------------------------------------------------------------------------------

def test_a_module_without_symbols_has_no_pdb_and_no_isf_table(capsys, tmp_path_factory):
    b = built(tmp_path_factory, "vpn-lwf-doublefault", "bitmap")
    lwf = next(m for m in b.modules if m.spec.name == "dnelwf64.sys")
    assert lwf.spec.symbols is False
    assert sorted(os.listdir(b.symstore_path)) == sorted(
        ["ntoskrnl.exe", "ntkrnlmp.pdb", "hal.dll", "hal.pdb", "ndis.sys", "ndis.pdb", "NETIO.SYS", "NETIO.pdb",
         "tcpip.sys", "tcpip.pdb", "afd.sys", "afd.pdb", "vmswitch.sys", "vmswitch.pdb", "dnelwf64.sys"])
    assert sorted(os.listdir(os.path.join(b.symbols_path, "windows"))) == sorted(
        ["ntkrnlmp.pdb", "hal.pdb", "ndis.pdb", "NETIO.pdb", "tcpip.pdb", "afd.pdb", "vmswitch.pdb"])
    # The image is in the store (its unwind data and exports), under the key the dump's module list gives.
    image = os.path.join(b.symstore_path, "dnelwf64.sys", "4F1C2B7A8000", "dnelwf64.sys")
    with open(image, "rb") as fh:
        assert fh.read() == lwf.image.data
    target, symbolizer = _open(b)
    try:
        info = symbolizer.module_symbols(target.module_by_name("dnelwf64"))
        assert (info.kind, info.identity.pdb_name, info.image_file) == ("none", "dnelwf64.pdb", image)
        assert symbolizer.format(lwf.spec.base + 0x3243) == "dnelwf64+0x3243"
    finally:
        symbolizer.close()
        target.close()
    frame7 = k_rows(capsys, b)[7]
    assert frame7[3] == "dnelwf64+0x3243" and frame7[2] == b.stack.frames[8].rip


def test_a_module_without_symbols_is_named_by_its_exports(capsys, tmp_path):
    """With an exported function, the export names the addresses after it (up to the next export): the
    spec names the frame so, and pytriage, reading exports from the image, prints the same."""
    with open(builtin_path("vpn-lwf-doublefault"), encoding="utf-8") as fh:
        doc = json.load(fh)
    lwf = next(m for m in doc["modules"] if m["name"] == "dnelwf64.sys")
    entry = next(f for f in lwf["functions"] if f["name"] == "DriverEntry")
    entry.update(name="DnelwfExport", export=True)
    spec = parse_spec(doc)
    assert spec.stack[7].name == "dnelwf64!DnelwfExport+0x2243"
    b = build_scenario(spec, str(tmp_path), "bitmap")
    assert not os.path.exists(os.path.join(b.symstore_path, "dnelwf64.pdb"))
    assert k_rows(capsys, b)[7][3] == "dnelwf64!DnelwfExport+0x2243"
    target, symbolizer = _open(b)
    try:
        assert symbolizer.module_symbols(target.module_by_name("dnelwf64")).kind == "export"
        base = target.module_by_name("dnelwf64").base
        assert symbolizer.address_of("dnelwf64!DnelwfExport") == base + 0x1000
    finally:
        symbolizer.close()
        target.close()


@pytest.mark.parametrize("where, value, message", [
    ("modules", "no", "modules[6].symbols: expected true or false"),
    ("kernel", False, "kernel.symbols: the kernel's symbols carry the types the builder lays out"),
])
def test_symbols_key_errors(where, value, message):
    with open(builtin_path("vpn-lwf-doublefault"), encoding="utf-8") as fh:
        doc = json.load(fh)
    target = doc["modules"][6] if where == "modules" else doc["kernel"]
    target["symbols"] = value
    with pytest.raises(SpecError) as err:
        parse_spec(doc)
    assert str(err.value).startswith(message)
