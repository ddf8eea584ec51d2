"""`.thread`: a stack walk from a thread's saved state (``--thread``), on scenario dumps and the real one.

Oracle: the builder's stack plan. A waiting thread is made from the basic scenario's crashing thread:
processor 0 is told it runs another thread, the thread's State becomes Waiting and its KernelStack the
address of a _KSWITCH_FRAME whose Return slot (+0x38) is frame 3's return-address slot, so a walk of the
thread must give exactly the plan's frames 4 and 5 (and the saved rbp from +0x30).
"""

import json
import os
import struct

import pytest

from pytriage import cli
from pytriage.analysis.stack_walk import walk_stack
from pytriage.commands.stack import start_context
from pytriage.dump.kernel_dump import KernelDump
from pytriage.errors import PytriageError, format_address
from pytriage.target.offline import OfflineDumpTarget
from tests.analysis.stack_helpers import patched_copy, plan_rows, rows, store_symbolizer
from tests.conftest import CORPUS, file_offset_of_va

KTHREAD_INITIAL_STACK, KTHREAD_KERNEL_STACK, KTHREAD_STATE = 0x28, 0x58, 0x184     # 19041 (the KDBG's)
PRCB_CURRENT_THREAD = 0x8
WAITING = 5


def processors_of(path):
    target = OfflineDumpTarget(KernelDump(path))
    try:
        return target.processor_contexts()
    finally:
        target.close()


def _patch_bytes(path, va, data):
    with open(path, "r+b") as fh:
        fh.seek(file_offset_of_va(path, va))
        fh.write(data)


def waiting_thread_dump(built, tmp_path, kernel_stack=None, state=WAITING):
    """(dump path, thread address, KernelStack): processor 0's thread, switched out at plan frame 4."""
    cpu0, cpu1 = processors_of(built.dump_path)[:2]
    thread = cpu0.current_thread
    plan = built.stack.frames
    if kernel_stack is None:
        kernel_stack = plan[4].child_sp - 0x40
    path = patched_copy(built, tmp_path, {cpu0.prcb + PRCB_CURRENT_THREAD: cpu1.current_thread,
                                          thread + KTHREAD_KERNEL_STACK: kernel_stack})
    _patch_bytes(path, thread + KTHREAD_STATE, bytes([state]))
    return path, thread, kernel_stack


def _thread_walk(built, path, thread):
    target = OfflineDumpTarget(KernelDump(path))
    symbolizer = store_symbolizer(target, built)
    try:
        context, source = start_context(target, None, None, None, None, thread=thread)
        return walk_stack(target, context, symbolizer, source=source), context, source
    finally:
        symbolizer.close()
        target.close()


def test_running_thread_starts_from_its_processors_context(basic_full):
    cpu = processors_of(basic_full.dump_path)[2]
    walk, context, source = _thread_walk(basic_full, basic_full.dump_path, cpu.current_thread)
    assert context == cpu.registers
    assert source == "thread %s (running on processor 2: KPRCB.Context)" % format_address(cpu.current_thread)
    crash = processors_of(basic_full.dump_path)[0]
    walk, _context, source = _thread_walk(basic_full, basic_full.dump_path, crash.current_thread)
    assert rows(walk) == plan_rows(basic_full.stack) and "processor 0" in source


def test_waiting_thread_walks_from_its_switch_frame(basic_full, tmp_path):
    path, thread, kernel_stack = waiting_thread_dump(basic_full, tmp_path)
    walk, context, source = _thread_walk(basic_full, path, thread)
    plan = basic_full.stack.frames
    saved_rbp = struct.unpack("<Q", basic_full.expected(kernel_stack + 0x30, 8))[0]
    assert context == {"rip": plan[4].rip, "rsp": plan[4].child_sp, "rbp": saved_rbp}
    assert source == "thread %s (Waiting: the switch frame at KTHREAD.KernelStack %s)" % (
        format_address(thread), format_address(kernel_stack))
    assert rows(walk) == plan_rows(basic_full.stack)[4:]
    assert walk.complete


def test_stack_cli_thread_option(capsys, basic_full, tmp_path):
    path, thread, _ks = waiting_thread_dump(basic_full, tmp_path)
    code = cli.main(["stack", path, "-n", "--thread", "%x" % thread, "--symbols", basic_full.symstore_path,
                     "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(out)
    assert record["start"]["source"].startswith("thread %s (Waiting" % format_address(thread))
    assert [f["call_site"] for f in record["frames"]] == [f.name for f in basic_full.stack.frames[4:]]
    code = cli.main(["stack", path, "--thread", "%x" % thread, "--rsp", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and err == "pytriage: error: --thread starts from the thread's saved state: no --rsp/--rbp " \
                                "with it\n"


@pytest.mark.parametrize("case, message", [
    ("garbage-state", "does not look like a KTHREAD: State is 200"),
    ("running-elsewhere", "is Running, but no processor context of this dump has it as KPRCB.CurrentThread"),
    ("user-kernel-stack", "KernelStack 00000000`00001000 is not an aligned kernel address"),
    ("above-initial-stack", "is not below its InitialStack"),
    ("unmapped", "its KTHREAD is not in the dump"),
    ("unmapped-stack", "its saved kernel stack is not in the dump"),
])
def test_bad_threads_are_one_line_errors(capsys, basic_full, tmp_path, case, message):
    if case == "unmapped":
        path, thread = basic_full.dump_path, 0xFFFFC08BF0000000
    elif case == "garbage-state":
        path, thread, _ks = waiting_thread_dump(basic_full, tmp_path, state=200)
    elif case == "running-elsewhere":
        path, thread, _ks = waiting_thread_dump(basic_full, tmp_path, state=2)
    elif case == "user-kernel-stack":
        path, thread, _ks = waiting_thread_dump(basic_full, tmp_path, kernel_stack=0x1000)
    elif case == "above-initial-stack":
        path, thread, _ks = waiting_thread_dump(basic_full, tmp_path, kernel_stack=0xFFFFC08BE0000000 + 0x200000)
    else:
        # a canonical, aligned KernelStack just below the InitialStack, in a page nothing maps
        cpu0 = processors_of(basic_full.dump_path)[0]
        initial = struct.unpack("<Q", basic_full.expected(cpu0.current_thread + KTHREAD_INITIAL_STACK, 8))[0]
        probe = initial - 0x100
        while basic_full.expected(probe, 0x40) is not None and probe > initial - 0x100000:
            probe -= 0x1000
        assert basic_full.expected(probe, 0x40) is None
        path, thread, _ks = waiting_thread_dump(basic_full, tmp_path, kernel_stack=probe)
    code = cli.main(["stack", path, "--thread", "%x" % thread])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("pytriage: error: ") and message in err and err.count("\n") == 1, err
    target = OfflineDumpTarget(KernelDump(path))
    try:
        with pytest.raises(PytriageError, match="KTHREAD|KernelStack|kernel stack"):
            target.thread_start(thread)
    finally:
        target.close()


def test_triage_dump_thread_is_the_bugcheck_processors(capsys, triage_dump_path, tmp_path):
    """The real dump: its one saved KPRCB names the crashing thread (Microsoft's engine's ``$thread`` is
    the same, see the dbgeng tier); ``--thread`` on it walks exactly as ``--processor 0``."""
    sympath = "srv*%s*%s;%s" % (tmp_path, os.path.join(CORPUS, "symstore"), os.path.join(CORPUS, "symbols"))
    target = OfflineDumpTarget.open(triage_dump_path)
    try:
        thread = target.processor_contexts()[0].current_thread
        start = target.thread_start(thread)
    finally:
        target.close()
    assert thread == 0xFFFFC08BDE9E1640
    assert start.source == "thread ffffc08b`de9e1640 (running on processor 0: KPRCB.Context)"
    assert cli.main(["stack", triage_dump_path, "--thread", "ffffc08bde9e1640", "--symbols", sympath]) == 0
    by_thread = capsys.readouterr().out
    assert cli.main(["stack", triage_dump_path, "--processor", "0", "--symbols", sympath]) == 0
    by_processor = capsys.readouterr().out
    assert by_thread == by_processor and "nt!KiSegmentNotPresentFault+0x335" in by_thread
