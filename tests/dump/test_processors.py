"""Per-processor contexts through KDBG -> KPRCB.Context: the real triage dump against its facts, scenario
dumps against what the builder placed, and a KDBG that is still encoded."""

import shutil

import pytest

from pytriage import cli
from pytriage.dump.kernel_dump import KernelDump
from pytriage.errors import PytriageError
from tests.conftest import file_offset_of_va

PRCB_CONTEXT_FRAME = 0x1F0       # KPRCB.ProcessorState.ContextFrame, where the builder's Context points


def test_triage_dump_bugcheck_processor_context_equals_the_facts(triage_dump_path, triage_facts):
    with KernelDump(triage_dump_path) as dump:
        contexts = dump.processor_contexts()
    assert len(contexts) == 1
    ctx = contexts[0]
    assert (ctx.prcb, ctx.context_va, ctx.error) == (None, 0xFFFF9B00021FF340, "")
    expected = {k: int(v, 16) for k, v in triage_facts["registers_at_bugcheck"]["regs"].items()}
    assert {k: ctx.registers[k] for k in expected} == expected


@pytest.mark.parametrize("fixture", ["basic_full", "basic_bitmap"])
def test_scenario_processor_contexts_are_the_builders(fixture, request):
    built = request.getfixturevalue(fixture)
    with KernelDump(built.dump_path) as dump:
        contexts = dump.processor_contexts()
        header_context = dump.context_record()
    assert [c.number for c in contexts] == list(range(built.spec.processors))
    assert all(c.context_va == c.prcb + PRCB_CONTEXT_FRAME and not c.error for c in contexts)
    assert len({c.prcb for c in contexts}) == built.spec.processors
    assert contexts[0].registers == header_context                # the crash context, as the builder wrote it
    assert contexts[0].registers["rip"] == built.context["rip"]
    # the other processors each run on their own mapped stack
    assert len({c.registers["rsp"] for c in contexts}) == built.spec.processors


def test_encoded_kdbg_is_said_not_guessed(basic_full, tmp_path):
    copy = tmp_path / "encoded.dmp"
    shutil.copyfile(basic_full.dump_path, copy)
    with KernelDump(str(copy)) as dump:
        kdbg = dump.header.kd_debugger_data_block
    offset = file_offset_of_va(str(copy), kdbg + 0x10)
    with open(copy, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x8f\x13\xa5\x77")                              # OwnerTag no longer "KDBG"
    with KernelDump(str(copy)) as dump:
        with pytest.raises(PytriageError, match="is encoded"):
            dump.processor_contexts()


def test_stack_from_a_processor(capsys, basic_full, triage_dump_path, tmp_path):
    assert cli.main(["stack", basic_full.dump_path, "--symbols", "srv*%s" % basic_full.symstore_path]) == 0
    default = capsys.readouterr().out
    assert cli.main(["stack", basic_full.dump_path, "--processor", "0", "--symbols",
                     "srv*%s" % basic_full.symstore_path]) == 0
    assert capsys.readouterr().out == default
    assert cli.main(["stack", triage_dump_path, "--processor", "1", "--symbols", str(tmp_path)]) == 2
    assert capsys.readouterr().err == \
        "pytriage: error: processor 1: this dump has contexts for processor(s) 0\n"
