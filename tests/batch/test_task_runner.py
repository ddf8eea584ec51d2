"""The per-dump task in its worker process (timeout, crash, memory cap, dbgeng) and the batch runner on a folder.

Workers are real processes: ``python -m pytriage.batch.child``, or tests/batch/misbehaving_child.py (hangs,
crashes or hogs memory on dumps named so) and tests/batch/fake_pybag_child.py (``--engine dbgeng`` through the
fake pybag). Every stored record is compared with what ``pytriage analyze --json`` prints for the same dump.
"""

import io
import json
import os
import sys

import pytest

from pytriage import __version__
from pytriage.batch.progress import Progress, format_duration
from pytriage.batch.runner import run_batch
from pytriage.batch.store import ResultStore
from pytriage.batch.task import ChildWorker, TaskOptions, WorkerPool, check_worker, run_dump
from pytriage.errors import PytriageError
from tests.batch.scenario_dumps import analyze_record, built_scenarios, copy, with_crash_time, write

MISBEHAVING = [sys.executable, "-m", "tests.batch.misbehaving_child"]
FAKE_PYBAG = [sys.executable, "-m", "tests.batch.fake_pybag_child"]
CRASH_TIME = 1613871502.9877656          # every built-in scenario's header SystemTime, epoch seconds


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return built_scenarios(tmp_path_factory)


@pytest.fixture(scope="module")
def dumps(built, tmp_path_factory):
    """The three scenarios as files, plus a truncated basic dump; and their expected records."""
    root = str(tmp_path_factory.mktemp("task-dumps"))
    paths = {name: write(os.path.join(root, name + ".dmp"), data) for name, data in built.dumps.items()}
    paths["truncated"] = write(os.path.join(root, "truncated.dmp"), built.dumps["basic"][:300000])
    records = {name: analyze_record(paths[name], built.symbols) for name in built.dumps}
    return paths, records


def _columns(record):
    culprit = record["culprit"]
    return {"status": "ok", "error": None, "dump_time": record["dump"]["crash_time"],
            "bugcheck_code": record["bugcheck"]["code"], "bugcheck_name": record["bugcheck"]["name"],
            "failure_bucket": record["buckets"]["failure_bucket_id"],
            "network_bucket": record["buckets"]["network_bucket_id"], "culprit": culprit["binary"],
            "culprit_class": culprit["class"], "culprit_confidence": culprit["confidence"],
            "culprit_timestamp": culprit["timestamp"], "culprit_role": culprit["role"]}


def _without_timing(result):
    return {k: v for k, v in result.items() if k not in ("seconds", "triaged_at", "record", "engine")}


TRUNCATED = {"status": "error", "error": "bitmap header claims 462 pages but the file holds only 22 (truncated?): "
                                         "at offset 0x2028",
             "dump_time": CRASH_TIME, "bugcheck_code": "0xD1", "bugcheck_name": "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
             "failure_bucket": None, "network_bucket": None, "culprit": None, "culprit_class": None,
             "culprit_confidence": None, "culprit_timestamp": None, "culprit_role": None}


# -- the task -------------------------------------------------------------------------------------------------------
def test_run_dump_record_is_analyze_json_and_worker_is_reused(built, dumps):
    paths, records = dumps
    options = TaskOptions(symbols=built.symbols)
    for name in ("basic", "nwifi-completion", "wfp-callout-nbl"):
        result = run_dump(paths[name], options)
        assert _without_timing(result) == _columns(records[name])
        assert json.loads(result["record"]) == records[name]
        assert result["engine"] == "offline" and result["seconds"] > 0
    assert [records[n]["culprit"]["binary"] for n in ("basic", "nwifi-completion", "wfp-callout-nbl")] == [
        "contosolwf.sys", "vwifimf.sys", "inspect.sys"]
    truncated = run_dump(paths["truncated"], options)
    assert _without_timing(truncated) == TRUNCATED and truncated["record"] is None
    from pytriage.batch import task
    pool = next(iter(task._pools.values()))
    assert [w.starts for w in pool._workers] == [1]            # one process served all four dumps
    task.close_workers()


def test_timeout_kills_the_worker_and_the_next_dump_gets_a_new_one(built, dumps, tmp_path):
    paths, records = dumps
    hang = copy(paths["basic"], str(tmp_path / "hang-basic.dmp"))
    worker = ChildWorker(TaskOptions(symbols=built.symbols, timeout=1.5, child_argv=MISBEHAVING))
    try:
        first = worker.run(hang)
        pid = None
        assert _without_timing(first) == dict(TRUNCATED, error="no result after 1.5 s, worker killed",
                                              status="timeout")
        assert 1.5 <= first["seconds"] < 5
        assert worker.proc is None                               # killed, not left running
        after = worker.run(paths["nwifi-completion"])
        pid = worker.proc.pid
        assert _without_timing(after) == _columns(records["nwifi-completion"])
        assert worker.starts == 2
    finally:
        worker.close()
    assert not os.path.exists("/proc/%d" % pid)


def test_crashed_worker_is_a_row_with_its_signal_and_last_output(built, dumps, tmp_path):
    paths, records = dumps
    crash = copy(paths["basic"], str(tmp_path / "crash.dmp"))
    worker = ChildWorker(TaskOptions(symbols=built.symbols, child_argv=MISBEHAVING))
    try:
        result = worker.run(crash)
        assert _without_timing(result) == dict(TRUNCATED, status="crashed", error=(
            "worker process died: killed by SIGSEGV; last output: simulated fault in a C extension"))
        assert _without_timing(worker.run(paths["basic"])) == _columns(records["basic"])
        assert worker.starts == 2
    finally:
        worker.close()


def test_memory_cap_turns_a_runaway_allocation_into_an_error_row(built, dumps, tmp_path):
    paths, records = dumps
    hog = copy(paths["basic"], str(tmp_path / "hog.dmp"))
    worker = ChildWorker(TaskOptions(symbols=built.symbols, memory_mb=256, child_argv=MISBEHAVING))
    try:
        result = worker.run(hog)
        assert _without_timing(result) == dict(TRUNCATED, error=(
            "out of memory: the triage needed more than --memory-mb 256 MB (beyond the dump's own size)"))
        assert worker.proc is None                                # restarted after running out of memory
        assert _without_timing(worker.run(paths["basic"])) == _columns(records["basic"])   # the cap lets it run
    finally:
        worker.close()
    uncapped = ChildWorker(TaskOptions(symbols=built.symbols, memory_mb=0, child_argv=MISBEHAVING))
    try:
        assert uncapped.run(hog)["status"] == "ok"                # the same 1 GB passes without the cap
    finally:
        uncapped.close()


def test_dbgeng_engine_through_fake_pybag_gives_the_offline_record(built, dumps):
    paths, records = dumps
    options = TaskOptions(symbols=built.symbols, engine="dbgeng", child_argv=FAKE_PYBAG)
    check_worker(options)
    worker = ChildWorker(options)
    try:
        for name in ("basic", "wfp-callout-nbl"):
            result = worker.run(paths[name])
            record = json.loads(result["record"])
            expected = records[name]
            # vertarget prints the crash time to the millisecond; everything else is the offline triage
            assert record["dump"]["crash_time"] == pytest.approx(expected["dump"]["crash_time"], abs=0.001)
            record["dump"]["crash_time"] = expected["dump"]["crash_time"]
            assert record == expected
            assert result["engine"] == "dbgeng"
            assert result["culprit"] == expected["culprit"]["binary"]
    finally:
        worker.close()


def test_dbgeng_without_pybag_fails_in_one_line():
    with pytest.raises(PytriageError) as info:
        check_worker(TaskOptions(engine="dbgeng"))
    assert str(info.value) == ("--engine dbgeng needs Windows with the Debugging Tools for Windows and `pip install "
                               "pytriage[dbgeng]` (pybag): pybag (DbgEng for Python, Windows only) is not usable: "
                               "No module named 'pybag'")


def test_worker_that_cannot_start_fails_in_one_line(tmp_path):
    with pytest.raises(PytriageError, match="^cannot start the worker /nonexistent/python: No such file or "
                                            "directory$"):
        check_worker(TaskOptions(child_argv=["/nonexistent/python"]))
    with pytest.raises(PytriageError, match="^the worker did not start: worker process died: exit code 3; last "
                                            "output: boom$"):
        check_worker(TaskOptions(child_argv=[sys.executable, "-c", "import sys; print('boom', file=sys.stderr); "
                                                                   "sys.exit(3)"]))


def test_stray_output_of_the_triage_does_not_break_the_protocol(built, dumps, tmp_path):
    paths, records = dumps
    chatty = copy(paths["basic"], str(tmp_path / "chatty.dmp"))
    worker = ChildWorker(TaskOptions(symbols=built.symbols, child_argv=MISBEHAVING))
    try:
        result = worker.run(chatty)
        assert json.loads(result["record"]) == dict(records["basic"], dump=dict(records["basic"]["dump"],
                                                                                 path="chatty.dmp"))
        assert worker.starts == 1
    finally:
        worker.close()
    bad = ChildWorker(TaskOptions(child_argv=[sys.executable, "-c", "print('not json')"]))
    result = bad.run(paths["basic"])
    assert (result["status"], result["error"]) == (
        "crashed", "the worker did not start: worker wrote something that is not a protocol line: b'not json\\n'")
    assert bad.proc is None


def test_killed_pool_starts_no_new_worker(built, dumps):
    paths, _ = dumps
    pool = WorkerPool(TaskOptions(symbols=built.symbols))
    pool.kill()
    result = pool.run(paths["basic"])
    assert (result["status"], result["error"]) == ("crashed", "the batch is stopping")


# -- progress -------------------------------------------------------------------------------------------------------
class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_bar_on_a_terminal():
    out, clock = io.StringIO(), _Clock()
    progress = Progress(4, out, tty=True, clock=clock)
    progress.begin()
    clock.now += 2.0
    progress.advance("ok", "a.dmp")
    clock.now += 2.0
    progress.advance("timeout", "b/hang.dmp", "no result after 2 s, worker killed")
    clock.now += 0.05
    progress.advance("ok", "c.dmp")                    # within 0.1 s of the last redraw: not drawn
    clock.now += 0.05
    progress.advance("ok", "d.dmp")                    # the last one always is
    progress.end()
    bar0 = "triage [........................] 0/4 dumps  0.0/s  ETA ?"
    bar1 = "triage [######..................] 1/4 dumps  0.5/s  ETA 0:06"
    bar2 = "triage [############............] 2/4 dumps  0.5/s  ETA 0:04"
    bar4 = "triage [########################] 4/4 dumps  1.0/s  ETA 0:00"
    assert out.getvalue() == (
        "\r" + bar0 + "\r" + bar1 + "\r" + " " * len(bar1) + "\r"
        + "timeout: b/hang.dmp: no result after 2 s, worker killed\n" + "\r" + bar2 + "\r" + bar4 + "\n")


def test_progress_lines_in_a_log():
    out, clock = io.StringIO(), _Clock()
    progress = Progress(100, out, tty=False, clock=clock)
    for n in range(100):
        clock.now += 0.5
        progress.advance("error" if n == 41 else "ok", "d%02d.dmp" % n, "truncated" if n == 41 else None)
    lines = out.getvalue().splitlines()
    assert lines == ["triage: 10/100 dumps, 2.0/s, ETA 0:45", "triage: 20/100 dumps, 2.0/s, ETA 0:40",
                     "triage: 30/100 dumps, 2.0/s, ETA 0:35", "triage: 40/100 dumps, 2.0/s, ETA 0:30",
                     "error: d41.dmp: truncated",
                     "triage: 50/100 dumps, 2.0/s, ETA 0:25", "triage: 60/100 dumps, 2.0/s, ETA 0:20",
                     "triage: 70/100 dumps, 2.0/s, ETA 0:15", "triage: 80/100 dumps, 2.0/s, ETA 0:10",
                     "triage: 90/100 dumps, 2.0/s, ETA 0:05", "triage: 100/100 dumps, 2.0/s, ETA 0:00"]
    assert format_duration(3725) == "1:02:05"


# -- the runner -----------------------------------------------------------------------------------------------------
def _rows(store_path, run_id=None):
    store = ResultStore(store_path)
    try:
        run_id = run_id or store.conn.execute("SELECT MAX(id) FROM runs").fetchone()[0]
        return {r["rel_path"]: r for r in store.run_results(run_id)}, dict(store.run(run_id))
    finally:
        store.close()


def test_batch_folder_resumes_dedupes_and_survives_a_hang(built, dumps, tmp_path):
    paths, records = dumps
    case = tmp_path / "case"
    out = str(tmp_path / "out")
    copy(paths["basic"], str(case / "basic.dmp"))
    copy(paths["nwifi-completion"], str(case / "nested" / "wifi"))
    copy(paths["wfp-callout-nbl"], str(case / "nested" / "deeper" / "wfp.bin"))
    copy(paths["basic"], str(case / "nested" / "basic-copy.dmp"))                 # same bytes: triaged once
    copy(paths["truncated"], str(case / "truncated.dmp"))
    write(str(case / "hang.dmp"), with_crash_time(built.dumps["basic"], 1700000000))
    write(str(case / "readme.txt"), b"hello, this is not a dump\n")
    options = TaskOptions(symbols=built.symbols, timeout=2, child_argv=MISBEHAVING)
    summary = run_batch(str(case), out, 2, options, progress_stream=None)
    assert (summary.found, summary.distinct, summary.duplicates, summary.already, summary.to_triage,
            summary.triaged, summary.with_result, summary.interrupted) == (6, 5, 1, 0, 5, 5, 6, False)
    assert summary.skipped == [(str(case / "readme.txt"), "not a kernel dump (signature 'hell')")]
    assert summary.by_status == {"ok": 4, "error": 1, "timeout": 1}
    rows, run = _rows(summary.store_path, summary.run_id)
    assert sorted(rows) == ["basic.dmp", "hang.dmp", "nested/basic-copy.dmp", "nested/deeper/wfp.bin",
                            "nested/wifi", "truncated.dmp"]
    # the record names the file triaged; a copy elsewhere shares its row (its first path in sorted order)
    for rel, name, triaged in (("basic.dmp", "basic", "basic.dmp"), ("nested/basic-copy.dmp", "basic", "basic.dmp"),
                               ("nested/wifi", "nwifi-completion", "wifi"),
                               ("nested/deeper/wfp.bin", "wfp-callout-nbl", "wfp.bin")):
        expected = dict(records[name], dump=dict(records[name]["dump"], path=triaged))
        assert json.loads(rows[rel]["record"]) == expected, rel
        assert rows[rel]["tool_version"] == __version__
    assert rows["hang.dmp"]["status"] == "timeout"
    assert rows["hang.dmp"]["error"] == "no result after 2 s, worker killed"
    assert rows["hang.dmp"]["dump_time"] == 1700000000.0
    assert (rows["truncated.dmp"]["status"], rows["truncated.dmp"]["error"]) == ("error", TRUNCATED["error"])
    assert (run["dumps_found"], run["dumps_triaged"], run["interrupted"], run["root"]) == (6, 5, 0, str(case))

    # a re-run triages nothing
    again = run_batch(str(case), out, 2, options, progress_stream=None)
    assert (again.run_id, again.found, again.already, again.to_triage, again.triaged) == (2, 6, 5, 0, 0)
    assert again.by_status == {"ok": 4, "error": 1, "timeout": 1}

    # three new dumps (and one more copy of a known one) triage exactly three
    for n, name in enumerate(("basic", "nwifi-completion", "wfp-callout-nbl")):
        write(str(case / "new" / ("n%d.dmp" % n)), with_crash_time(built.dumps[name], 1710000000 + n))
    copy(paths["nwifi-completion"], str(case / "new" / "wifi-again.dmp"))
    more = run_batch(str(case), out, 2, options, progress_stream=None)
    assert (more.found, more.already, more.to_triage, more.triaged, more.with_result) == (10, 5, 3, 3, 10)
    rows, run = _rows(more.store_path, more.run_id)
    assert run["dumps_triaged"] == 3
    assert [rows["new/n%d.dmp" % n]["dump_time"] for n in range(3)] == [1710000000.0, 1710000001.0, 1710000002.0]
    assert [rows["new/n%d.dmp" % n]["network_bucket"] for n in range(3)] == [
        "LWF_AV_contosolwf.sys", "NBL_COMPLETION_STACK_CORRUPT_vwifimf.sys", "WFP_NBL_REFERENCE_MISUSE_inspect.sys"]


def test_retry_failed_triages_only_the_failures_again(built, dumps, tmp_path):
    """A stored timeout stays a timeout on a plain re-run; --retry-failed triages exactly the failed contents
    again (here with a worker that no longer hangs) and replaces their rows."""
    paths, records = dumps
    case, out = tmp_path / "case", str(tmp_path / "out")
    copy(paths["basic"], str(case / "basic.dmp"))
    copy(paths["truncated"], str(case / "truncated.dmp"))
    write(str(case / "hang.dmp"), with_crash_time(built.dumps["nwifi-completion"], 1700000000))
    hanging = TaskOptions(symbols=built.symbols, timeout=2, child_argv=MISBEHAVING)
    first = run_batch(str(case), out, 2, hanging, progress_stream=None)
    assert first.by_status == {"ok": 1, "error": 1, "timeout": 1}
    healthy = TaskOptions(symbols=built.symbols)
    plain = run_batch(str(case), out, 2, healthy, progress_stream=None)
    assert (plain.to_triage, plain.triaged, plain.by_status) == (0, 0, {"ok": 1, "error": 1, "timeout": 1})
    retried = run_batch(str(case), out, 2, healthy, progress_stream=None, retry_failed=True)
    assert (retried.already, retried.to_triage, retried.triaged) == (1, 2, 2)
    assert retried.by_status == {"ok": 2, "error": 1}                 # the truncated dump fails the same way
    rows, _ = _rows(retried.store_path, retried.run_id)
    assert rows["hang.dmp"]["status"] == "ok"
    assert rows["hang.dmp"]["network_bucket"] == "NBL_COMPLETION_STACK_CORRUPT_vwifimf.sys"
    assert rows["hang.dmp"]["dump_time"] == 1700000000.0
    assert (rows["truncated.dmp"]["status"], rows["truncated.dmp"]["error"]) == ("error", TRUNCATED["error"])
    again = run_batch(str(case), out, 2, healthy, progress_stream=None, retry_failed=True)
    assert (again.to_triage, again.triaged) == (1, 1)                 # only the dump that still fails


def test_batch_output_folder_inside_the_dump_folder_is_not_walked(built, dumps, tmp_path):
    paths, _ = dumps
    case = tmp_path / "case"
    copy(paths["basic"], str(case / "basic.dmp"))
    first = run_batch(str(case), str(case / "out"), 1, TaskOptions(symbols=built.symbols), progress_stream=None)
    second = run_batch(str(case), str(case / "out"), 1, TaskOptions(symbols=built.symbols), progress_stream=None)
    assert (first.found, first.skipped, first.triaged) == (1, [], 1)
    assert (second.found, second.skipped, second.triaged) == (1, [], 0)


@pytest.mark.parametrize("root, jobs, options, message", [
    ("missing", 1, TaskOptions(), "^.*missing does not exist$"),
    ("file", 1, TaskOptions(), "^.*file is not a folder"),
    ("case", 0, TaskOptions(), "^--jobs must be between 1 and 256$"),
    ("case", 1, TaskOptions(timeout=0), "^--timeout must be more than 0 seconds$"),
    ("case", 1, TaskOptions(memory_mb=64), "^--memory-mb must be 0 \\(no cap\\) or at least 128$"),
    ("case", 1, TaskOptions(engine="windbg"), "^--engine must be one of: offline, dbgeng$"),
    ("case", 1, TaskOptions(symbols="srv*"), "^symbol path element 'srv\\*'"),
])
def test_batch_bad_input_is_one_line(tmp_path, root, jobs, options, message):
    (tmp_path / "case").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(PytriageError, match=message):
        run_batch(str(tmp_path / root), str(tmp_path / "out"), jobs, options, progress_stream=None)
    assert not (tmp_path / "out").exists()


def test_batch_output_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "case").mkdir()
    (tmp_path / "out").write_bytes(b"a file where the output folder should go")
    with pytest.raises(PytriageError, match="^cannot create the output folder .*out: File exists$"):
        run_batch(str(tmp_path / "case"), str(tmp_path / "out"), 1, TaskOptions(), progress_stream=None)
