"""`pytriage batch DIR --dask ADDRESS` on a real ``dask.distributed.LocalCluster`` (2 worker processes).

The same per-dump task runs in Dask's worker processes (daemonic ones: the task starts its pytriage worker with
``subprocess``, which they allow), and the client writes the rows to the same SQLite store; the rows must be
the local run's, dump for dump. A worker that dies while triaging a dump becomes that dump's row, the batch
goes on; a scheduler that cannot be reached is one line.
"""

import os
import shutil
import sqlite3
import subprocess
import sys

import dask
import pytest
from dask.distributed import LocalCluster

from pytriage import cli
from pytriage.batch import dask_runner
from pytriage.batch.dask_runner import run_on_dask
from pytriage.batch.task import TaskOptions
from tests.batch.dumpfarm import make_farm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = 0x5EED0D45
COMPARED = ("status", "error", "dump_time", "bugcheck_code", "bugcheck_name", "failure_bucket", "network_bucket",
            "culprit", "culprit_class", "culprit_confidence", "culprit_timestamp", "culprit_role", "engine", "record")

# A pytriage worker process that, asked for a dump whose path says so, kills the Dask worker that started it
# (its parent): a worker lost in the middle of a task, as an OOM kill or a lost machine does it.
KILLER = """
import os, signal, sys
from pytriage.batch import child
triage = child.triage_path
def triage_path(path, *args):
    if "kill-the-worker" in path:
        os.kill(os.getppid(), signal.SIGKILL)
    return triage(path, *args)
child.triage_path = triage_path
sys.exit(child.main())
"""


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """8 scenario dumps of 8 families, plus the damaged files and the duplicate."""
    return make_farm(str(tmp_path_factory.mktemp("dask-farm") / "dumps"), SEED, count=8)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local


def batch(farm, out, *extra):
    proc = subprocess.run([sys.executable, "-m", "pytriage", "batch", farm.root, "-o", out, "--jobs", "2",
                           "--symbols", farm.symbols] + list(extra), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def stored(out):
    conn = sqlite3.connect(os.path.join(out, "results.sqlite"))
    conn.row_factory = sqlite3.Row
    try:
        results = {row["sha256"]: {c: row[c] for c in COMPARED} for row in conn.execute("SELECT * FROM results")}
        runs = [dict(row) for row in conn.execute("SELECT engine, dumps_found, dumps_triaged FROM runs")]
    finally:
        conn.close()
    return results, runs


def test_a_dask_run_stores_what_a_local_run_stores(farm, cluster, tmp_path):
    local_out, dask_out = str(tmp_path / "local"), str(tmp_path / "dask")
    batch(farm, local_out)
    printed = batch(farm, dask_out, "--dask", cluster.scheduler_address)
    local, local_runs = stored(local_out)
    remote, remote_runs = stored(dask_out)
    assert sorted(remote) == sorted(local) == sorted(farm.by_sha256())
    assert remote == local
    assert local_runs == [{"engine": "offline", "dumps_found": 14, "dumps_triaged": 13}]
    assert remote_runs == [{"engine": "dask", "dumps_found": 14, "dumps_triaged": 13}]
    assert "Results: 9 ok, 5 error" in printed
    for sha256, entry in farm.by_sha256().items():
        row = remote[sha256]
        assert (row["status"], row["network_bucket"], row["culprit"], row["error"]) == \
            (entry.status, entry.network_bucket, entry.culprit, entry.error), entry.rel_path


def test_a_worker_lost_while_triaging_is_that_dumps_row(farm, tmp_path):
    """The dump whose triage kills its Dask worker is a "crashed" row (the scheduler gives up on it at once:
    allowed-failures 0); the other dumps are triaged by the surviving and the restarted worker. (Seven tasks on
    two one-thread workers with worker-saturation 1.0: the scheduler queues them and a worker runs one at a
    time, so the killed worker takes no other dump down with it.)"""
    good = [e for e in farm.by_sha256().values() if e.status == "ok"][:6]
    killer = str(tmp_path / "kill-the-worker.dmp")
    shutil.copyfile(farm.path(good[0]), killer)
    paths = [farm.path(e) for e in good] + [killer]
    options = TaskOptions(symbols=farm.symbols, timeout=60, child_argv=[sys.executable, "-c", KILLER])
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
            results = dict(run_on_dask(local.scheduler_address, paths, options))
    assert sorted(results) == sorted(paths)
    lost = results[killer]
    assert lost["status"] == "crashed" and lost["record"] is None
    assert lost["error"].startswith("Dask worker lost while triaging this dump (KilledWorker: "), lost["error"]
    for entry in good:
        row = results[farm.path(entry)]
        assert (row["status"], row["network_bucket"], row["culprit"]) == ("ok", entry.network_bucket, entry.culprit)


def test_an_unreachable_scheduler_is_one_line(farm, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dask_runner, "CONNECT_TIMEOUT", 1.0)
    address = "tcp://127.0.0.1:9"
    assert cli.main(["batch", farm.root, "-o", str(tmp_path / "out"), "--dask", address]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("pytriage: error: cannot connect to the Dask scheduler %s: Timed out trying to connect to "
                       "%s after 1 s" % (address, address))
