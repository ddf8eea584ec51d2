"""``pytriage batch`` as a user runs it: the printed summary, exit codes, Ctrl-C in a real process, the TTY bar."""

import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from pytriage import cli
from tests.batch.scenario_dumps import built_scenarios, with_crash_time, write

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return built_scenarios(tmp_path_factory)


def test_batch_prints_summary_and_exits_0_with_error_rows(built, tmp_path, capsys):
    case, out = tmp_path / "case", tmp_path / "out"
    write(str(case / "a.dmp"), built.dumps["basic"])
    write(str(case / "sub" / "b"), built.dumps["nwifi-completion"])
    write(str(case / "sub" / "a-again.dmp"), built.dumps["basic"])
    write(str(case / "cut.dmp"), built.dumps["wfp-callout-nbl"][:5000])
    write(str(case / "notes.txt"), b"hello, not a dump\n")
    argv = ["batch", str(case), "-o", str(out), "--jobs", "2", "--symbols", built.symbols]
    assert cli.main(argv) == 0
    stdout, stderr = capsys.readouterr()
    lines = stdout.splitlines()
    assert lines[0] == "Batch: 4 kernel dumps under %s (1 other file skipped)" % case
    assert re.fullmatch(r"Triaged now: 3 in \d+\.\d s \(\d+\.\d dumps/s\); already in the store: 0; same content "
                        r"as another file: 1", lines[1]), lines[1]
    assert lines[2:6] == ["Results: 3 ok, 1 error", "Skipped:", "  notes.txt: not a kernel dump (signature 'hell')",
                          "Wrote: %s, %s, %s, %s" % (out / "results.sqlite", out / "report.html",
                                                     out / "results.jsonl", out / "summary.md")]
    assert len(lines) == 6
    assert "error: cut.dmp: file too short for DUMP_HEADER64 (needs 0x2000 bytes): at offset 0x0" in stderr.splitlines()
    assert re.search(r"^triage: 3/3 dumps, \d+\.\d/s, ETA 0:00$", stderr, re.M)

    assert cli.main(argv) == 0                                 # again: nothing to triage
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Triaged now: 0 in 0.0 s; already in the store: 3; same content as another file: 1"
    assert lines[2] == "Results: 3 ok, 1 error"


@pytest.mark.parametrize("args, message", [
    (["batch", "{tmp}/missing"], "pytriage: error: {tmp}/missing does not exist"),
    (["batch", "{tmp}/case", "-o", "{tmp}/afile"], "pytriage: error: cannot create the output folder {tmp}/afile: "
                                                    "File exists"),
    (["batch", "{tmp}/case", "--jobs", "0"], "pytriage: error: --jobs must be between 1 and 256"),
    (["batch", "{tmp}/case", "--engine", "dbgeng"],
     "pytriage: error: --engine dbgeng needs Windows with the Debugging Tools for Windows and `pip install "
     "pytriage[dbgeng]` (pybag): pybag (DbgEng for Python, Windows only) is not usable: No module named 'pybag'"),
])
def test_batch_bad_usage_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "case").mkdir()
    (tmp_path / "afile").write_bytes(b"x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", message.replace("{tmp}", str(tmp_path)) + "\n")
    assert not (tmp_path / "out").exists()


def _count(db, sql):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def test_ctrl_c_leaves_a_consistent_store_and_a_rerun_finishes(built, tmp_path, capsys):
    """SIGINT to a real ``pytriage batch`` while dumps are in flight (each takes 1 s in its worker)."""
    case, out, pids = tmp_path / "case", tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    for n in range(8):
        write(str(case / ("d%d.dmp" % n)), with_crash_time(built.dumps["basic"], 1700000000 + n))
    env = dict(os.environ, PYTRIAGE_TEST_SLOW="1", PYTRIAGE_TEST_PIDS=str(pids))
    proc = subprocess.Popen([sys.executable, "-m", "tests.batch.slow_cli", "batch", str(case), "-o", str(out),
                             "--jobs", "2", "--symbols", built.symbols], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = str(out / "results.sqlite")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if os.path.exists(db) and _count(db, "SELECT COUNT(*) FROM results") >= 2:
                break
        except sqlite3.OperationalError:                      # created, tables not yet: keep polling
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    stored = _count(db, "SELECT COUNT(*) FROM results")
    assert 2 <= stored < 8
    assert stderr.decode().splitlines()[-1] == "interrupted: %d of 8 dumps triaged; run again to finish" % stored
    assert stdout == b""
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    run = conn.execute("SELECT interrupted, dumps_found, dumps_triaged, finished IS NOT NULL FROM runs").fetchall()
    assert run == [(1, 8, stored, 1)]
    assert conn.execute("SELECT COUNT(*) FROM results WHERE status != 'ok'").fetchone()[0] == 0   # none half-done
    conn.close()
    assert {"results.sqlite", "results.jsonl", "summary.md", "report.html"} <= set(os.listdir(str(out)))
    workers = os.listdir(str(pids))
    assert len(workers) >= 2                                      # the check worker and the two job workers
    assert [pid for pid in workers if os.path.exists("/proc/%s" % pid)] == []       # all of them gone

    capsys.readouterr()
    assert cli.main(["batch", str(case), "-o", str(out), "--jobs", "2", "--symbols", built.symbols]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("Triaged now: %d in " % (8 - stored))
    assert lines[2] == "Results: 8 ok"
    assert _count(db, "SELECT COUNT(*) FROM results") == 8
    assert _count(db, "SELECT dumps_triaged FROM runs WHERE id = 2") == 8 - stored


def test_progress_bar_on_a_terminal_is_redrawn_in_place(built, tmp_path):
    case = tmp_path / "case"
    write(str(case / "a.dmp"), built.dumps["basic"])
    write(str(case / "b.dmp"), built.dumps["nwifi-completion"])
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pytriage", "batch", str(case), "-o", str(tmp_path / "out"),
                             "--jobs", "2", "--symbols", built.symbols], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:                                  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    proc.wait(timeout=60)
    text = seen.decode()
    assert proc.returncode == 0
    assert "\rtriage [........................] 0/2 dumps  0.0/s  ETA ?" in text
    assert re.search(r"\rtriage \[########################\] 2/2 dumps  \d+\.\d/s  ETA 0:00\r\n", text), text
    assert "\ntriage:" not in text                       # no log lines on a terminal


def test_dask_without_distributed_fails_before_any_work(built, tmp_path, capsys, monkeypatch):
    write(str(tmp_path / "case" / "a.dmp"), built.dumps["basic"])
    monkeypatch.setitem(sys.modules, "distributed", None)          # as on a machine without pytriage[dask]
    assert cli.main(["batch", str(tmp_path / "case"), "-o", str(tmp_path / "out"), "--dask", "tcp://h:8786"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "pytriage: error: --dask needs dask.distributed on this machine and on the workers: "
                              "pip install 'pytriage[dask]'\n")
    assert not (tmp_path / "out").exists()                       # nothing hashed, no store created


def test_retry_failed_on_the_command_line(built, tmp_path, capsys):
    write(str(tmp_path / "case" / "a.dmp"), built.dumps["basic"])
    write(str(tmp_path / "case" / "cut.dmp"), built.dumps["wfp-callout-nbl"][:5000])
    argv = ["batch", str(tmp_path / "case"), "-o", str(tmp_path / "out"), "--jobs", "1", "--symbols", built.symbols]
    assert cli.main(argv) == 0 and cli.main(argv + ["--retry-failed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    retried = [line for line in lines if line.startswith("Triaged now:")][1]
    assert re.fullmatch(r"Triaged now: 1 in \d+\.\d s \(\d+\.\d dumps/s\); already in the store: 1; same content "
                        r"as another file: 0", retried), retried
