"""Microsoft's debugger engine, the scenario spec and pytriage must tell the same story about a dump.

For every built-in scenario (full and bitmap) the engine must open the dump without errors and agree,
fact by fact, with the spec and with `pytriage info` on vertarget, .bugcheck, r, lm, db (virtual and
physical) and dq; with the scenario's symbol store as its symbol path (real PDBs written by
pytriage.scenarios.pdb_writer) it must list every public with `x`, name every function with `ln`, and
show the builder's structures with `dt`, as pytriage's symbolizer and `pytriage dt` do with the same
store; and `k` must walk exactly the spec's stack. On the real corpus dump it must agree with pytriage
and with the corpus facts, with amdppm.pdb from the corpus symbol store on both sides.
"""

import os
import shutil
import struct

import pytest

from pytriage.commands.info import gather_info
from pytriage.commands.stack import context_at
from pytriage.scenarios import build_builtin, builtin_names
from pytriage.target.offline import OfflineDumpTarget
from tests.conftest import CORPUS, file_offset_of_va
from tests.oracle_dbgeng import crosscheck as X
from tests.oracle_dbgeng import engine as E

SCENARIOS = [name for name, _ in builtin_names()]
CORPUS_SYMSTORE = os.path.join(CORPUS, "symstore")


def _h(value):
    return int(value, 16) if isinstance(value, str) else value


def _crosscheck(built, dump_path=None, symstore=None):
    """One engine session: header and memory commands, `.reload` and the symbol commands, then the stack
    commands; pytriage's symbolizer reads the same symbol store as the engine."""
    dump_path = dump_path or built.dump_path
    symstore = symstore or built.symstore_path
    memory = X.memory_commands(built)
    symbols = X.symbol_commands(built)
    commands = X.header_commands() + memory + symbols + X.stack_commands(built)
    outs = E.run_engine(dump_path, commands, sympath=symstore)
    target = OfflineDumpTarget.open(dump_path)
    try:
        info = gather_info(target, dump_path)
        symbolizer = X.pytriage_symbolizer(target, symstore)
        try:
            cc = X.CrossCheck("%s (%s)" % (built.spec.name, built.dump_type))
            X.check_header(cc, outs[:4], info, built.spec, spec_context=built.context)
            X.check_memory(cc, outs[4:4 + len(memory)], built, target)
            start = 4 + len(memory)
            X.check_symbols(cc, outs[start:start + len(symbols)], built, info, target, symbolizer)
            walk = target.stack(symbolizer=symbolizer) if built.stack is not None else None
            X.check_stack(cc, outs[start + len(symbols):], built, walk)
        finally:
            symbolizer.close()
    finally:
        target.close()
    return cc, outs


@pytest.mark.parametrize("kind", ["full", "bitmap"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_engine_spec_and_pytriage_agree(dbgeng_available, record_crosscheck, tmp_path, name, kind):
    built = build_builtin(name, str(tmp_path), kind)
    cc, outs = _crosscheck(built)
    record_crosscheck(cc)
    failed = [(o.command, hex(o.hr), o.text[-300:]) for o in outs if o.hr != 0]
    assert not failed, failed
    for out in outs:
        assert "could not be read" not in out.text and "Unable to" not in out.text, (out.command, out.text)
    assert len(cc.checks) >= 80          # pool-zoo, one processor and four modules, has the fewest (90)
    assert not cc.mismatches, cc.report()


def test_engine_and_pytriage_agree_on_the_real_dump(dbgeng_available, record_crosscheck, triage_dump_path,
                                                    triage_facts):
    """With the corpus symbol store (amdppm.pdb, the Wdf01000 image) as both sides' symbol path."""
    param4 = _h(triage_facts["bugcheck"]["parameters"][3])     # 0x7E: parameter 4 is a CONTEXT
    commands = X.header_commands() + [".cxr %x" % param4, "r"] + X.corpus_symbol_commands(triage_facts)
    outs = E.run_engine(triage_dump_path, commands, sympath=CORPUS_SYMSTORE)
    target = OfflineDumpTarget.open(triage_dump_path)
    try:
        info = gather_info(target, triage_dump_path)
        cc = X.CrossCheck("corpus triage_x64.dmp")
        at_bugcheck = {k: _h(v) for k, v in triage_facts["registers_at_bugcheck"]["regs"].items()}
        at_bugcheck.setdefault("rflags", at_bugcheck.get("efl"))
        X.check_header(cc, outs[:4], info, registers=at_bugcheck, registers_source="corpus facts")
        X.check_registers(cc, outs[5], dict(info.context or {}), label=".cxr parameter 4")
        symbolizer = X.pytriage_symbolizer(target, CORPUS_SYMSTORE)
        try:
            walk = target.stack(context_at(target, param4), symbolizer=symbolizer)     # pytriage stack --cxr
            X.check_corpus_symbols(cc, outs[6:], triage_facts, target, symbolizer, walk)
        finally:
            symbolizer.close()
    finally:
        target.close()
    record_crosscheck(cc)
    assert [o.command for o in outs if o.hr != 0] == []
    assert len(cc.checks) >= 219
    assert not cc.mismatches, cc.report()


@pytest.mark.parametrize("waiting", [True, False])
def test_engine_and_pytriage_agree_on_thread_starts(dbgeng_available, record_crosscheck, tmp_path, waiting):
    """`.thread` then `r` and `kn`: a waiting thread (the basic scenario's, switched out at plan frame 4:
    tests/analysis/test_thread_start.py) starts from its _KSWITCH_FRAME, a running one from its
    processor's context; pytriage's `--thread` start and walk must be the engine's, register for register
    and frame for frame. `$thread` must be the KPRCB.CurrentThread pytriage reads."""
    from tests.analysis.test_thread_start import processors_of, waiting_thread_dump

    built = build_builtin("basic", str(tmp_path), "full")
    if waiting:
        path, thread, _ks = waiting_thread_dump(built, tmp_path)
    else:
        path = built.dump_path
        thread = processors_of(path)[1].current_thread
    outs = E.run_engine(path, ["? @$thread", ".thread %x" % thread, "r", "kn"], sympath=built.symstore_path)
    target = OfflineDumpTarget.open(path)
    cc = X.CrossCheck("basic (full), .thread %s" % ("waiting" if waiting else "running"))
    try:
        current = target.processor_contexts()[0].current_thread
        cc.add("$thread", dbgeng=_h(outs[0].text.split("=")[-1].strip().replace("`", "")), pytriage=current)
        start = target.thread_start(thread)
        regs = E.parse_registers(outs[2], needed=frozenset(("rip", "rsp", "rbp")))
        cc.add(".thread %x: rip rsp rbp" % thread, dbgeng=(regs["rip"], regs["rsp"], regs["rbp"]),
               pytriage=(start.registers["rip"], start.registers["rsp"], start.registers["rbp"]))
        symbolizer = X.pytriage_symbolizer(target, built.symstore_path)
        try:
            walk = target.stack(start.registers, symbolizer=symbolizer)
        finally:
            symbolizer.close()
        theirs = E.parse_k(outs[3])
        cc.add("kn after .thread: frames", dbgeng=[(f.child_sp, f.return_address, f.call_site) for f in theirs],
               pytriage=[(f.child_sp, f.return_address, f.call_site) for f in walk.frames])
    finally:
        target.close()
    record_crosscheck(cc)
    assert "Implicit thread is now" in outs[1].text, outs[1].text
    assert len(E.parse_k(outs[3])) == (2 if waiting else 1)
    assert not cc.mismatches, cc.report()


def test_crosscheck_reports_a_corrupted_size_of_image(dbgeng_available, tmp_path):
    """Proof the tier can fail: one module's SizeOfImage is changed in the dump after building."""
    built = build_builtin("basic", str(tmp_path), "bitmap")
    victim = built.modules[-1]
    corrupted = str(tmp_path / "corrupted.dmp")
    shutil.copyfile(built.dump_path, corrupted)
    offset = file_offset_of_va(corrupted, victim.ldr_entry + 0x40)    # _KLDR_DATA_TABLE_ENTRY.SizeOfImage
    with open(corrupted, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack("<I", victim.spec.size + 0x1000))
    cc, _ = _crosscheck(built, corrupted)
    stem = victim.spec.name.rsplit(".", 1)[0]
    names = [c.fact for c in cc.mismatches]
    assert names == ["lm %s" % stem, "dt _KLDR_DATA_TABLE_ENTRY %s" % stem], cc.report()
    bad = cc.mismatches[0].values
    end = victim.spec.base + victim.spec.size
    # pytriage reports the loader entry's SizeOfImage; dbgeng's lm takes the size from the image's own PE
    # header in memory, which still says the truth: the tier shows the disagreement. dbgeng's dt reads
    # the doctored loader entry as pytriage does, and both disagree with the spec.
    assert bad["spec"][0] == bad["dbgeng"][0] == end
    assert bad["pytriage"][0] == end + 0x1000
    dt = cc.mismatches[1].values
    assert dt["dbgeng"][1] == dt["pytriage"][1] == victim.spec.size + 0x1000 != dt["spec"][1]


def test_crosscheck_reports_a_corrupted_return_address(dbgeng_available, tmp_path):
    """The `k` facts can fail: frame 4's return address on the stack is replaced, in the dump, by another
    plausible one (just after the call in ndis!NdisFSendNetBufferLists), so the walk goes elsewhere."""
    built = build_builtin("basic", str(tmp_path), "full")
    frames = built.stack.frames
    slot = next(va for va, value in built.stack.writes.items() if value == frames[4].rip)
    ndis = next(m for m in built.modules if m.spec.name == "ndis.sys")
    elsewhere = ndis.spec.base + ndis.spec.functions[0].rva + 7          # after its `call [rax+18h]`
    corrupted = str(tmp_path / "corrupted.dmp")
    shutil.copyfile(built.dump_path, corrupted)
    with open(corrupted, "r+b") as fh:
        fh.seek(file_offset_of_va(corrupted, slot))
        fh.write(struct.pack("<Q", elsewhere))
    cc, _ = _crosscheck(built, corrupted)
    bad = [c.fact for c in cc.mismatches]
    # Frames 0-2 still agree; frame 3 returns elsewhere, and every fact about the frames above it is off.
    assert "k: 03 " + frames[3].name in bad and "k: 04 " + frames[4].name in bad, cc.report()
    assert not any(f.startswith("k: 0%d" % n) for f in bad for n in range(3)), cc.report()
    assert all(f.startswith(("k", ".frame /r")) for f in bad), cc.report()
    k3 = next(c for c in cc.mismatches if c.fact.startswith("k: 03")).values
    assert k3["dbgeng"][1] == elsewhere and k3["builder"][1] == frames[4].rip
    k4 = next(c for c in cc.mismatches if c.fact.startswith("k: 04")).values
    assert k4["dbgeng"][2] == "ndis!NdisFSendNetBufferLists+0x7"
    # pytriage stack walks the doctored stack as the engine does (the epilog after the fake return address
    # included) until the walk leaves the modules: the engine goes on reading slots as frames, pytriage
    # shows that frame and stops (no unwind data outside a module).
    ours = {c.fact.split(": ", 1)[1][:2]: c.values for c in cc.checks if c.fact.startswith("k = pytriage stack: 0")}
    for n in ("00", "01", "02", "03", "04"):
        assert ours[n]["pytriage"] == ours[n]["dbgeng"], n
    assert ours["05"]["pytriage"] == ours["05"]["dbgeng"][:1] + (None,) + ours["05"]["dbgeng"][2:]
    assert ours["05"]["pytriage"][2] == "0x1"


def _patch_once(path, old, new):
    with open(path, "rb") as fh:
        data = fh.read()
    assert data.count(old) == 1, (path, old)
    with open(path, "wb") as fh:
        fh.write(data.replace(old, new))


def test_crosscheck_reports_a_doctored_pdb(dbgeng_available, tmp_path):
    """The symbol facts can fail too: a public's offset and a member's offset are changed in the PDBs."""
    built = build_builtin("basic", str(tmp_path / "built"), "bitmap")
    store = str(tmp_path / "doctored.symstore")
    shutil.copytree(built.symstore_path, store)
    driver = built.modules[-1]                    # contosolwf: FilterReceiveNetBufferLists at .text+0x20
    pdb = os.path.join(store, driver.image.pdb_name, driver.image.pdb_store_key, driver.image.pdb_name)
    name = b"FilterReceiveNetBufferLists\0"
    _patch_once(pdb, struct.pack("<IIH", 2, 0x20, 1) + name, struct.pack("<IIH", 2, 0x24, 1) + name)
    kernel = built.modules[0].image               # nt: _LIST_ENTRY.Blink at 8 -> 0x10
    pdb = os.path.join(store, kernel.pdb_name, kernel.pdb_store_key, kernel.pdb_name)
    _patch_once(pdb, b"\x08\x00Blink\x00", b"\x10\x00Blink\x00")
    cc, _ = _crosscheck(built, symstore=store)
    probe = len(driver.spec.functions[1].code) // 2
    frame = "contosolwf!FilterReceiveNetBufferLists+0x9"          # frame 3 of the stack: the faulting rip
    trap = built.stack.frames[2].trap_frame
    assert [c.fact for c in cc.mismatches] == [
        "x contosolwf", "ln contosolwf!FilterReceiveNetBufferLists+0x%x" % probe, "dt -v _LIST_ENTRY",
        "k = pytriage stack: 03 " + frame, "k: 03 " + frame, "k after .trap %x" % trap], cc.report()
    # The engine and pytriage read the same doctored PDBs and agree with each other: the spec catches both.
    x = cc.mismatches[0].values
    assert ("contosolwf!FilterReceiveNetBufferLists", driver.spec.base + 0x1024, "function") in x["dbgeng"]
    assert x["pytriage"] == x["dbgeng"] != x["builder"]
    ln = cc.mismatches[1].values
    assert ln["dbgeng"] == ln["pytriage"] == (driver.spec.base + 0x1024, "contosolwf!FilterReceiveNetBufferLists",
                                              probe - 4)
    layout = cc.mismatches[2].values
    assert layout["dbgeng"][4][1][:2] == layout["pytriage"][4][1][:2] == (0x10, "Blink")
    assert layout["isf"][4][1][:2] == (8, "Blink")
    k = cc.mismatches[4].values
    assert k["dbgeng"][2] == "contosolwf!FilterReceiveNetBufferLists+0x5" and k["dbgeng"][:2] == k["builder"][:2]
    ours = cc.mismatches[3].values                      # pytriage stack names the frame from the same PDB
    assert ours["pytriage"] == ours["dbgeng"] == k["dbgeng"]


def test_crosscheck_reports_a_wrong_answer_from_pytriage(dbgeng_available, tmp_path):
    """And the other way round: the engine catches a wrong module size in our own report."""
    built = build_builtin("basic", str(tmp_path), "full")
    outs = E.run_engine(built.dump_path, X.header_commands())
    target = OfflineDumpTarget.open(built.dump_path)
    try:
        info = gather_info(target, built.dump_path)
    finally:
        target.close()
    info.modules[2].size += 0x1000
    cc = X.CrossCheck("doctored")
    X.check_header(cc, outs, info, built.spec, spec_context=built.context)
    assert [c.fact for c in cc.mismatches] == ["lm ndis"], cc.report()
