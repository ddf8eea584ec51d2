"""Batch benchmark: `pytriage batch` dumps per minute on 2 jobs, cold and warm symbol cache.

Why this exists: issue 10 asks how fast a support team's folder turns into a ranked list of root causes, with
the symbol cache empty (the first batch of a new case: every PDB and image comes from the symbol server) and
filled (the next batch). This script generates a folder of scenario dumps with the test suite's farm generator
(``tests/batch/dumpfarm.py``: variants of every built-in scenario, drivers renamed, several crash times per
variant), serves the merged symbol store from a local HTTP server (``srv*CACHE*http://127.0.0.1:PORT``), and
runs ``python -m pytriage batch DUMPS -o OUT --jobs 2 --symbols srv*CACHE*URL`` as a user would:

- cold: a fresh cache folder and a fresh output folder;
- warm: the same cache, filled by the cold run, and a fresh output folder (a fresh results database), so every
  dump is triaged again and only the downloads are saved.

Each mode runs ``--rounds`` times (a fresh cache per cold round); the table gives the median. Wall time is the
whole command (interpreter start, discovery, hashing, triage, reports); the triage step is what the command
itself reports for triaging. Every run's results are checked against the farm's manifest (bucket and culprit
of every dump) and the script stops if one differs, so a fast wrong answer cannot pass. Results are recorded in
docs/performance.md.

Run ``python bench/batch.py`` (``--dumps``, ``--jobs``, ``--rounds``, ``--seed``, ``--workdir DIR`` to keep
the farm).
"""

import argparse
import functools
import http.server
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pytriage import __version__  # noqa: E402
from tests.batch.dumpfarm import make_farm  # noqa: E402

_TRIAGED = re.compile(r"^Triaged now: (\d+) in ([0-9.]+) s", re.M)


class SymbolServer:
    """The merged symbol store over HTTP on 127.0.0.1, counting requests, distinct URLs, hits and bytes sent."""

    def __init__(self, root: str) -> None:
        self.requests = self.hits = self.sent = 0
        self.urls = set()
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def send_head(self):
                body = super().send_head()
                with owner.lock:
                    owner.requests += 1
                    owner.urls.add(self.path)
                    if body is not None:
                        owner.hits += 1
                        owner.sent += os.fstat(body.fileno()).st_size
                return body

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def take(self):
        """(requests, distinct URLs, files sent, bytes sent) since the last call."""
        with self.lock:
            counts = (self.requests, len(self.urls), self.hits, self.sent)
            self.requests = self.hits = self.sent = 0
            self.urls = set()
        return counts

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def run_batch(dumps: str, out: str, sympath: str, jobs: int):
    """One `pytriage batch` command; (wall seconds, triage-step seconds, dumps triaged)."""
    command = [sys.executable, "-m", "pytriage", "batch", dumps, "-o", out, "--jobs", str(jobs), "--symbols", sympath]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=str(REPO_ROOT), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("pytriage batch failed (exit %d):\n%s" % (proc.returncode, proc.stderr[-3000:]))
    found = _TRIAGED.search(proc.stdout)
    if found is None:
        raise SystemExit("no 'Triaged now' line in:\n%s" % proc.stdout)
    return wall, float(found.group(2)), int(found.group(1))


def check(out: str, manifest) -> None:
    """Every dump's stored bucket and culprit are the manifest's; stop the benchmark otherwise."""
    conn = sqlite3.connect(os.path.join(out, "results.sqlite"))
    try:
        rows = {sha: (status, bucket, culprit) for sha, status, bucket, culprit in conn.execute(
            "SELECT sha256, status, network_bucket, culprit FROM results")}
    finally:
        conn.close()
    want = {sha: (e.status, e.network_bucket, e.culprit) for sha, e in manifest.by_sha256().items()}
    if rows != want:
        wrong = sorted(sha for sha in set(rows) | set(want) if rows.get(sha) != want.get(sha))
        raise SystemExit("%s: %d dumps differ from the manifest, e.g. %s: %s, expected %s" % (
            out, len(wrong), wrong[0], rows.get(wrong[0]), want.get(wrong[0])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dumps", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20241125)
    parser.add_argument("--workdir", help="keep the farm and outputs here (default: a temporary folder)")
    args = parser.parse_args()

    work = args.workdir or tempfile.mkdtemp(prefix="pytriage-bench-batch-")
    os.makedirs(work, exist_ok=True)
    try:
        farm = make_farm(os.path.join(work, "dumps"), args.seed, count=args.dumps, broken=False)
        size = sum(os.path.getsize(farm.path(e)) for e in farm.dumps())
        server = SymbolServer(farm.symbols)
        rows, samples = [], {"cold": [], "warm": []}
        try:
            for round_no in range(args.rounds):
                cache = os.path.join(work, "cache-%d" % round_no)
                shutil.rmtree(cache, ignore_errors=True)
                sympath = "srv*%s*%s" % (cache, server.url)
                for mode in ("cold", "warm"):
                    out = os.path.join(work, "out-%s-%d" % (mode, round_no))
                    shutil.rmtree(out, ignore_errors=True)
                    wall, step, triaged = run_batch(farm.root, out, sympath, args.jobs)
                    if triaged != args.dumps:
                        raise SystemExit("%s round %d triaged %d dumps, not %d" % (mode, round_no, triaged,
                                                                                  args.dumps))
                    check(out, farm)
                    samples[mode].append((wall, step) + server.take())
        finally:
            server.close()
        for mode in ("cold", "warm"):
            walls = [s[0] for s in samples[mode]]
            steps = [s[1] for s in samples[mode]]
            wall, step = statistics.median(walls), statistics.median(steps)
            requests, urls, files, sent = samples[mode][0][2:]
            rows.append((mode, args.dumps, " ".join("%.2f" % w for w in walls), "%.2f s" % wall,
                         "%.0f" % (args.dumps / wall * 60), "%.2f s" % step, "%.0f" % (args.dumps / step * 60),
                         "%d for %d URLs (%d files, %.1f MB)" % (requests, urls, files, sent / 1e6)))
        print("$ python bench/batch.py --dumps %d --jobs %d --rounds %d --seed %d" % (
            args.dumps, args.jobs, args.rounds, args.seed))
        print("pytriage %s, CPython %s, %s, %d CPUs" % (__version__, platform.python_version(), platform.platform(),
                                                        os.cpu_count() or 0))
        print("farm: %d dumps (%.0f MB) of %d scenario variants, built in %.1f s; symbol store %s served at %s\n" % (
            args.dumps, size / 1e6, len(farm.families), farm.build_seconds, farm.symbols, server.url))
        print(tabulate(rows, headers=("symbol cache", "dumps", "wall per round (s)", "wall (median)",
                                      "dumps/min (wall)", "triage step (median)", "dumps/min (triage step)",
                                      "HTTP requests (1st round)"), tablefmt="github"))
        print("\nverified: every round stored, for every dump, the bucket and culprit the farm's manifest expects")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
