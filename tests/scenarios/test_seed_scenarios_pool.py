"""The pool-corruption seed scenarios as a user triages them: `info`, `stack`, `stack --trap` and `pooltag`.

* ``expool-not-on-stack`` (seed 001): 0xC5 in nt!ExAllocatePoolWithTag+0x5fa reading Flink->Blink of a
  free block whose LIST_ENTRY vnetflt.sys overwrote; every frame is Microsoft's.
* ``pool-overrun-pattern``: 0x19/0x20 when a WFP callout's flow context (contosofw.sys) is freed; it ran
  0x10 bytes of 0x4f past its end into the next header. The callout tail-called the free, so it is not on
  the stack either.
* ``special-pool-guard`` (seed 003's special-pool case): 0xD6, nt!memcpy called by contosonic.sys writes
  the first byte of the guard page after its 1514-byte special-pool receive buffer.

Every culprit tag (VNfl, CfwB, CnRx) is absent from the corpus pooltag.txt and from our network-tag
table, so its owner can only come from the image scan of the driver's code. The expected values are the
specs' own (pytriage/scenarios/builtin/<name>.json), written out here; instructions are decoded with
capstone from the dump's bytes, independently of the builder. Microsoft's engine walks the three stacks
the same way in tests/oracle_dbgeng.
"""

import json
import os
import struct

import capstone
import pytest

from pytriage import cli
from pytriage.scenarios import build_builtin
from pytriage.target.offline import OfflineDumpTarget
from tests.conftest import CORPUS

POOLTAG_TXT = os.path.join(CORPUS, "pooltag.txt")
KINDS = ["full", "bitmap"]

# expool-not-on-stack: nt at fffff803`02200000; the classic nonpaged page and the free list it came from
EXPOOL_IP = 0xFFFFF80302201AFA                  # nt!ExAllocatePoolWithTag+0x5fa
BAD_FLINK = 0x1D1543E20
PAGE1 = 0xFFFFE0010A3B6000
VNFL = PAGE1 + 0x1A0                            # vnetflt's block, 0x60 bytes
FREE = PAGE1 + 0x200                            # the free 0x80-byte block after it, header destroyed
LIST_HEAD = 0xFFFFE00108C4F1F0                  # the free-list head ExAllocatePoolWithTag took it from
EXPOOL_FRAMES = [
    "nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0x69", "nt!KiPageFault+0x2fa", "nt!ExAllocatePoolWithTag+0x5fa",
    "NETIO!NetioAllocateMdl+0x36", "tcpip!TcpTcbSend+0x91", "tcpip!TcpTlConnectionSend+0x138",
    "afd!AfdFastConnectionSend+0x2c8", "afd!AfdFastIoDeviceControl+0x201", "nt!IopXxxControlFile+0x3fd",
    "nt!NtDeviceIoControlFile+0x56", "nt!KiSystemServiceCopyEnd+0x13"]

# pool-overrun-pattern: A (the block being freed) overran into B
PAGE2 = 0xFFFFB30F3C6A2000
BLOCK_A = PAGE2 + 0x1D0                         # contosofw's flow context, 0xd0 bytes
BLOCK_B = PAGE2 + 0x2A0                         # was a 0x170-byte TcpE block; header now 'O's
A_HEADER_ULONG = 0x020D001D                     # PreviousSize 0x1d0, PoolIndex 0, BlockSize 0xd0, PoolType 2
FILL = 0x4F4F4F4F4F4F4F4F
CFWB = 0x42776643                               # 'CfwB' as the header stores it
OVERRUN_FRAMES = [
    "nt!KeBugCheckEx", "nt!ExFreePoolWithTag+0x1a8", "NETIO!KfdAleNotifyFlowDeletion+0x7d",
    "tcpip!WfpAleDeleteFlow+0x53", "tcpip!TcpDeleteTcb+0x61", "tcpip!TcpPeriodicTimeoutHandler+0x1b5",
    "nt!KiProcessExpiredTimerList+0x167", "nt!KiRetireDpcList+0x4e9", "nt!KiIdleLoop+0x5a"]

# special-pool-guard: a 0x5ea-byte special-pool allocation ends 6 bytes before the guard page
SPECIAL = 0xFFFFD98A6E3BE000
ALLOC = SPECIAL + 0xA10
GUARD = SPECIAL + 0x1000
MEMCPY_IP = 0xFFFFF80752A01AD0                  # nt!memcpy+0x10: movups xmmword ptr [rcx], xmm0
RING = 0xFFFFD98A6F200000                       # the jumbo frame's source, a big pool block tagged CnDm
FRAME_LEN = 0x2336                              # 9014 bytes
GUARD_FRAMES = [
    "nt!KeBugCheckEx", "nt!MiSystemFault+0x188", "nt!MmAccessFault+0x400", "nt!KiPageFault+0x358",
    "nt!memcpy+0x10", "contosonic!CnRxCopyFrame+0x56", "contosonic!CnRxProcessRing+0x9b",
    "contosonic!CnInterruptDpc+0x33", "ndis!ndisMiniportDpc+0xaa", "ndis!ndisInterruptDpc+0x81",
    "nt!KiExecuteAllDpcs+0x30e", "nt!KiRetireDpcList+0x1ef", "nt!KiIdleLoop+0x9e"]

_BUILT = {}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """``scenario(name, kind)``: each scenario and dump type built once for the module."""
    def get(name, kind):
        if (name, kind) not in _BUILT:
            _BUILT[name, kind] = build_builtin(name, str(tmp_path_factory.mktemp("%s-%s" % (name, kind))), kind)
        return _BUILT[name, kind]
    return get


def run(capsys, *args):
    code = cli.main(list(args) + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def pooltag(capsys, built, *args):
    return run(capsys, "pooltag", built.dump_path, *args, "--symbols", built.symstore_path, "--pooltag", POOLTAG_TXT)


def stack(capsys, built, *args):
    return run(capsys, "stack", built.dump_path, "--symbols", built.symstore_path, *args)


def bugcheck(capsys, built):
    info = run(capsys, "info", built.dump_path)
    return int(info["bugcheck"]["code"], 16), [int(p, 16) for p in info["bugcheck"]["parameters"]]


def reg(frame, name):
    return int(frame["registers"][name], 16)


def instruction(built, address):
    """The instruction at ``address``, decoded by capstone from the dump's bytes."""
    target = OfflineDumpTarget.open(built.dump_path)
    try:
        code = target.read(address, 15)
    finally:
        target.close()
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insn = next(md.disasm(code, address, 1))
    return "%s %s" % (insn.mnemonic, insn.op_str)


def read_qwords(built, address, count):
    target = OfflineDumpTarget.open(built.dump_path)
    try:
        return list(struct.unpack("<%dQ" % count, target.read(address, 8 * count)))
    finally:
        target.close()


def findings(record):
    return [(f["kind"], int(f["address"], 16), f["culprit_tag"]) for f in record["findings"]]


def allocation(record):
    a = record["allocation"]
    return (int(a["start"], 16), a["size"], a["tag"], a["state"], a["pool_type"]) if a else None


def owner_rows(owners):
    return [(o["source"], o["binary"], o["detail"]) for o in owners]


ALLOC_ROLE = "3rd argument (r8): the Tag of ExAllocatePoolWithTag / ExAllocatePool2 / NdisAllocateMemoryWithTag"
FREE_ROLE = "2nd argument (rdx): the Tag of ExFreePoolWithTag"
VNETFLT_OWNERS = [
    ("image scan", "vnetflt.sys", "vnetflt!VnfAllocateConnContext+0x12: mov r8d, 0x6c664e56 [41b8564e666c], %s; "
                                  "then calls nt!ExAllocatePoolWithTag" % ALLOC_ROLE),
    ("image scan", "vnetflt.sys", "vnetflt!VnfFreeConnContext+0x4: mov edx, 0x6c664e56 [ba564e666c], %s; "
                                  "then calls nt!ExFreePoolWithTag" % FREE_ROLE)]
CONTOSOFW_OWNERS = [
    ("image scan", "contosofw.sys", "contosofw!CfwAllocateFlowContext+0xf: mov r8d, 0x42776643 [41b843667742], "
                                    "%s; then calls nt!ExAllocatePoolWithTag" % ALLOC_ROLE),
    # the free is a tail call (jmp), so no call follows the tag
    ("image scan", "contosofw.sys", "contosofw!CfwFlowDelete: mov edx, 0x42776643 [ba43667742], %s" % FREE_ROLE)]
CONTOSONIC_OWNERS = [
    ("image scan", "contosonic.sys", "contosonic!CnAllocateRxBuffer+0x12: mov r8d, 0x78526e43 [41b8436e5278], "
                                     "%s; then calls nt!ExAllocatePoolWithTag" % ALLOC_ROLE),
    ("image scan", "contosonic.sys", "contosonic!CnFreeRxBuffer+0x4: mov edx, 0x78526e43 [ba436e5278], %s; "
                                     "then calls nt!ExFreePoolWithTag" % FREE_ROLE)]


# --- expool-not-on-stack (seed 001) -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_expool_bugcheck_is_the_seeds_read_of_flink_blink(capsys, scenario, kind):
    built = scenario("expool-not-on-stack", kind)
    assert bugcheck(capsys, built) == (0xC5, [BAD_FLINK + 8, 2, 0, EXPOOL_IP])
    assert instruction(built, EXPOOL_IP) == "mov r9, qword ptr [rax + 8]"      # the seed's 4c8b4808


@pytest.mark.parametrize("kind", KINDS)
def test_expool_stack_is_all_microsoft(capsys, scenario, kind):
    built = scenario("expool-not-on-stack", kind)
    walk = stack(capsys, built)
    frames = walk["frames"]
    assert [f["call_site"] for f in frames] == EXPOOL_FRAMES
    assert [f["number"] for f in frames if f["trap_frame"]] == [2]
    assert (walk["complete"], walk["stop"]["reason"]) == (True, "end")
    assert not any(f["module"] in ("vnetflt", "vsepflt") for f in frames)
    # ExAllocatePoolWithTag's nonvolatile registers, restored by unwinding: the list head and the tag it
    # was asked for ('Nbuf', NETIO's MDL tag)
    assert (reg(frames[3], "rbx"), reg(frames[3], "r12")) == (LIST_HEAD, 0x6675624E)


@pytest.mark.parametrize("kind", KINDS)
def test_expool_trap_frame_leads_to_the_overrun_and_vnetflt(capsys, scenario, kind):
    built = scenario("expool-not-on-stack", kind)
    trap = stack(capsys, built)["frames"][2]["trap_frame"]
    interrupted = stack(capsys, built, "--trap", trap)["frames"][0]
    assert interrupted["call_site"] == "nt!ExAllocatePoolWithTag+0x5fa"
    entry = reg(interrupted, "r8")                       # mov r8,[rbx]: the first free entry of the list
    assert (reg(interrupted, "rax"), entry, reg(interrupted, "rcx"), reg(interrupted, "rdx")) == (
        BAD_FLINK, FREE + 0x10, 0x200, 0x70)
    assert read_qwords(built, LIST_HEAD, 2) == [entry, entry]
    assert read_qwords(built, entry, 2) == [BAD_FLINK, BAD_FLINK]      # mov rax,[r8]: the overwritten Flink

    record = pooltag(capsys, built, "%x" % entry)
    assert record["kind"] == "classic" and record["allocation"] is None
    assert findings(record) == [("overrun", FREE, "VNfl"), ("damaged-bytes", FREE, "VNfl")]
    assert record["findings"][0]["text"] == (
        "header ffffe001`0a3b6200: PoolType 0xd1 is not a pool type; block ffffe001`0a3b61a0 (tag VNfl, 0x60 "
        "bytes) overran its end: its last 0x30 bytes and the next 0x20 bytes are the fill pattern 203e54d101000000")
    assert [(c["tag"], owner_rows(c["owners"])) for c in record["culprit_owners"]] == [("VNfl", VNETFLT_OWNERS)]
    blocks = [(int(b["start"], 16), b["size"], b["tag"], b["state"], b["recovered"]) for b in record["blocks"]]
    assert blocks == [(PAGE1, 0x1A0, "Irp ", "allocated", False), (VNFL, 0x60, "VNfl", "allocated", False),
                      (PAGE1 + 0x280, 0x120, "TcpE", "allocated", True),
                      (PAGE1 + 0x3A0, 0x90, "AfdE", "allocated", True), (PAGE1 + 0x430, 0xBD0, "Free", "free", True)]


@pytest.mark.parametrize("kind", KINDS)
def test_expool_the_overrunning_block_is_vnetflts(capsys, scenario, kind):
    built = scenario("expool-not-on-stack", kind)
    record = pooltag(capsys, built, "%x" % (VNFL + 0x10))
    assert allocation(record) == (VNFL, 0x60, "VNfl", "allocated", "NonPaged")
    assert findings(record) == [("overrun", FREE, "VNfl")]
    assert owner_rows(record["owners"]) == VNETFLT_OWNERS
    assert record["culprit_owners"] == []               # the culprit is the allocation itself
    scan = record["scan"]
    assert (scan["modules_scanned"], scan["raw_hits"], scan["rejected"]) == (8, 2, 0)


# --- pool-overrun-pattern -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_overrun_bugcheck_names_the_freed_block_and_its_neighbour(capsys, scenario, kind):
    built = scenario("pool-overrun-pattern", kind)
    assert bugcheck(capsys, built) == (0x19, [0x20, BLOCK_A, BLOCK_B, A_HEADER_ULONG])
    # parameter 4 is the first ULONG of A's header: PreviousSize, PoolIndex, BlockSize, PoolType bytes
    header, = read_qwords(built, BLOCK_A, 1)
    assert header & 0xFFFFFFFF == A_HEADER_ULONG and header >> 32 == CFWB
    assert read_qwords(built, BLOCK_B, 2) == [FILL, FILL]


@pytest.mark.parametrize("kind", KINDS)
def test_overrun_stack_has_no_third_party_frame(capsys, scenario, kind):
    built = scenario("pool-overrun-pattern", kind)
    frames = stack(capsys, built)["frames"]
    assert [f["call_site"] for f in frames] == OVERRUN_FRAMES
    assert [f["trap_frame"] for f in frames] == [None] * len(OVERRUN_FRAMES)
    assert not any(f["module"] == "contosofw" for f in frames)
    assert reg(frames[0], "rax") == FILL                 # ExFreePoolWithTag read B's header into rax
    assert (reg(frames[1], "rbx"), reg(frames[1], "rdi"), reg(frames[1], "rsi")) == (BLOCK_A, BLOCK_B, CFWB)
    assert reg(frames[2], "r14") == BLOCK_A + 0x10       # the flow context NETIO handed to flowDeleteFn


@pytest.mark.parametrize("kind", KINDS)
def test_overrun_pooltag_on_the_freed_block(capsys, scenario, kind):
    built = scenario("pool-overrun-pattern", kind)
    record = pooltag(capsys, built, "%x" % BLOCK_A)          # parameter 2 as the bugcheck gives it
    assert allocation(record) == (BLOCK_A, 0xD0, "CfwB", "allocated", "NonPaged")
    assert findings(record) == [("overrun", BLOCK_B, "CfwB"), ("header", BLOCK_A, None)]
    assert record["findings"][0]["text"] == (
        "header ffffb30f`3c6a22a0: PoolType 0x4f is not a pool type; block ffffb30f`3c6a21d0 (tag CfwB, 0xd0 "
        "bytes) overran its end: its last 0x90 bytes and the next 0x10 bytes are the fill pattern 4f (\"O\")")
    assert owner_rows(record["owners"]) == CONTOSOFW_OWNERS
    data = pooltag(capsys, built, "%x" % (BLOCK_A + 0x10))
    assert allocation(data) == allocation(record) and findings(data) == [("overrun", BLOCK_B, "CfwB")]


@pytest.mark.parametrize("kind", KINDS)
def test_overrun_pooltag_on_the_damaged_neighbour(capsys, scenario, kind):
    built = scenario("pool-overrun-pattern", kind)
    record = pooltag(capsys, built, "%x" % BLOCK_B)          # parameter 3
    assert record["allocation"] is None
    assert findings(record) == [("overrun", BLOCK_B, "CfwB"), ("damaged-bytes", BLOCK_B, "CfwB")]
    assert "damaged bytes ffffb30f`3c6a22a0-ffffb30f`3c6a240f" in record["findings"][1]["text"]
    assert [(c["tag"], owner_rows(c["owners"])) for c in record["culprit_owners"]] == [("CfwB", CONTOSOFW_OWNERS)]
    assert [(int(b["start"], 16), b["tag"], b["recovered"]) for b in record["blocks"]] == [
        (PAGE2, "Nnbl", False), (BLOCK_A, "CfwB", False), (PAGE2 + 0x410, "NDnc", True),
        (PAGE2 + 0x450, "Irp ", True), (PAGE2 + 0x580, "Free", True)]


# --- special-pool-guard -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_guard_bugcheck_is_a_write_by_memcpy(capsys, scenario, kind):
    built = scenario("special-pool-guard", kind)
    assert bugcheck(capsys, built) == (0xD6, [GUARD, 1, MEMCPY_IP, 0])
    assert instruction(built, MEMCPY_IP) == "movups xmmword ptr [rcx], xmm0"
    target = OfflineDumpTarget.open(built.dump_path)
    try:
        assert (target.is_valid(GUARD - 1), target.is_valid(GUARD)) == (True, False)
    finally:
        target.close()


@pytest.mark.parametrize("kind", KINDS)
def test_guard_stack_and_trap_frame_registers(capsys, scenario, kind):
    built = scenario("special-pool-guard", kind)
    frames = stack(capsys, built)["frames"]
    assert [f["call_site"] for f in frames] == GUARD_FRAMES
    assert [f["number"] for f in frames if f["trap_frame"]] == [3]
    # CnRxCopyFrame's registers: the RX descriptor, the source and the jumbo length it passed to memcpy
    assert (reg(frames[5], "rsi"), reg(frames[5], "rdi")) == (RING, FRAME_LEN)
    interrupted = stack(capsys, built, "--trap", frames[3]["trap_frame"])["frames"][0]
    assert interrupted["call_site"] == "nt!memcpy+0x10"
    assert (reg(interrupted, "rcx"), reg(interrupted, "rax"), reg(interrupted, "r8")) == (
        GUARD, ALLOC, FRAME_LEN - (GUARD - ALLOC))
    source = (reg(interrupted, "rcx") + reg(interrupted, "rdx")) & (2 ** 64 - 1)      # movups xmm0,[rcx+rdx]
    assert source == RING + (GUARD - ALLOC)
    ring = pooltag(capsys, built, "%x" % source)
    assert (ring["kind"], allocation(ring)) == ("big", (RING, 0x10000, "CnDm", "allocated", "POOL_TYPE 0x200"))
    assert [(o["binary"], o["detail"].split(":")[0]) for o in ring["owners"]] == [
        ("contosonic.sys", "contosonic!CnAllocateRxRing+0x12")]


@pytest.mark.parametrize("kind", KINDS)
def test_guard_pooltag_names_the_allocation_and_contosonic(capsys, scenario, kind):
    built = scenario("special-pool-guard", kind)
    record = pooltag(capsys, built, "%x" % GUARD)            # parameter 1
    assert record["kind"] == "special"
    assert allocation(record) == (SPECIAL, 0x5EA, "CnRx", "allocated", "special pool (nonpaged)")
    assert int(record["allocation"]["data"], 16) == ALLOC
    assert findings(record) == [("guard-page", GUARD, "CnRx")]
    assert record["findings"][0]["text"] == (
        "ffffd98a`6e3bf000 is on the guard page after the special-pool allocation ffffd98a`6e3bea10 (tag CnRx, "
        "0x5ea bytes requested): an access 0x6 bytes past its end, an overrun by the allocation's owner")
    assert owner_rows(record["owners"]) == CONTOSONIC_OWNERS
    inside = pooltag(capsys, built, "%x" % ALLOC)
    # the copy also overwrote the 6 fill bytes between the allocation's end and the guard page
    assert findings(inside) == [("fill-damage", ALLOC + 0x5EA, "CnRx")]


# --- the culprit tags are known only from the drivers' code --------------------------------------------------

@pytest.mark.parametrize("name,tag,driver,uses", [
    ("expool-not-on-stack", "VNfl", "vnetflt", [(0x1012, "41b8564e666c"), (0x1044, "ba564e666c")]),
    ("pool-overrun-pattern", "CfwB", "contosofw", [(0x100F, "41b843667742"), (0x1040, "ba43667742")]),
    ("special-pool-guard", "CnRx", "contosonic", [(0x1012, "41b8436e5278"), (0x1084, "ba436e5278")]),
])
def test_culprit_tags_have_no_listed_owner_and_one_driver_in_the_scan(capsys, scenario, name, tag, driver, uses):
    built = scenario(name, "bitmap")
    listed = pooltag(capsys, built, "-t", tag, "--no-scan")
    assert listed["owners"] == []                          # neither pooltag.txt nor the network table
    scanned = pooltag(capsys, built, "-t", tag, "--scan")["scan"]
    assert [(u["module"], int(u["rva"], 16), u["bytes"], u["confirmed"]) for u in scanned["uses"]] == [
        (driver, rva, raw, True) for rva, raw in uses]
    assert (scanned["raw_hits"], scanned["rejected"], scanned["modules_scanned"]) == (
        2, 0, len(built.spec.modules) + 1)
