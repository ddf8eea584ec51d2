"""Microsoft's debugger engine, the scenario spec and pytriage must tell the same story about a dump.

For every built-in scenario (full and bitmap) the engine must open the dump without errors and agree,
fact by fact, with the spec and with `pytriage info` on vertarget, .bugcheck, r, lm, db (virtual and
physical) and dq; on the real corpus dump it must agree with pytriage and with the corpus facts.
"""

import shutil
import struct

import pytest

from pytriage.commands.info import gather_info
from pytriage.scenarios import build_builtin, builtin_names
from pytriage.target.offline import OfflineDumpTarget
from tests.conftest import file_offset_of_va
from tests.oracle_dbgeng import crosscheck as X
from tests.oracle_dbgeng import engine as E

SCENARIOS = [name for name, _ in builtin_names()]


def _h(value):
    return int(value, 16) if isinstance(value, str) else value


def _crosscheck(built, dump_path=None):
    dump_path = dump_path or built.dump_path
    commands = X.header_commands() + X.memory_commands(built)
    outs = E.run_engine(dump_path, commands)
    target = OfflineDumpTarget.open(dump_path)
    try:
        info = gather_info(target, dump_path)
        cc = X.CrossCheck("%s (%s)" % (built.spec.name, built.dump_type))
        X.check_header(cc, outs[:4], info, built.spec)
        X.check_memory(cc, outs[4:], built, target)
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
    assert len(cc.checks) >= 45
    assert not cc.mismatches, cc.report()


def test_engine_and_pytriage_agree_on_the_real_dump(dbgeng_available, record_crosscheck, triage_dump_path,
                                                    triage_facts):
    param4 = _h(triage_facts["bugcheck"]["parameters"][3])     # 0x7E: parameter 4 is a CONTEXT
    commands = X.header_commands() + [".cxr %x" % param4, "r"]
    outs = E.run_engine(triage_dump_path, commands)
    target = OfflineDumpTarget.open(triage_dump_path)
    try:
        info = gather_info(target, triage_dump_path)
    finally:
        target.close()
    cc = X.CrossCheck("corpus triage_x64.dmp")
    at_bugcheck = {k: _h(v) for k, v in triage_facts["registers_at_bugcheck"]["regs"].items()}
    at_bugcheck.setdefault("rflags", at_bugcheck.get("efl"))
    X.check_header(cc, outs[:4], info, registers=at_bugcheck, registers_source="corpus facts")
    X.check_registers(cc, outs[5], dict(info.context or {}), label=".cxr parameter 4")
    record_crosscheck(cc)
    assert len(cc.checks) >= 200
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
    names = [c.fact for c in cc.mismatches]
    assert names == ["lm %s" % victim.spec.name.rsplit(".", 1)[0]], cc.report()
    bad = cc.mismatches[0].values
    end = victim.spec.base + victim.spec.size
    # pytriage reports the loader entry's SizeOfImage; dbgeng takes the size from the image's own PE
    # header in memory, which still says the truth: the tier shows the disagreement.
    assert bad["spec"][0] == bad["dbgeng"][0] == end
    assert bad["pytriage"][0] == end + 0x1000


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
    X.check_header(cc, outs, info, built.spec)
    assert [c.fact for c in cc.mismatches] == ["lm ndis"], cc.report()
