"""Triage benchmark: `pytriage analyze` wall time and target bytes read, per dump.

Why this exists: `!pytriage` must answer in under a second and, inside a debugger over KDNET (~2 MB/s),
read under 256 KB of target memory (DESIGN 11, issue 8). This script builds every built-in scenario (bitmap
dumps, with their symbol stores) plus the real corpus triage dump, then triages each twice, each time on a fresh
target and a fresh symbolizer (open the dump, parse the PDBs, triage; the second run finds the files in
the OS cache), checks that both runs name the same culprit, and prints one table: culprit, wall times,
target bytes and read calls (what a live session would fetch).

Run ``python bench/triage.py``; results are recorded in docs/performance.md.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pytriage.analysis.triage.engine import TriageOptions, triage  # noqa: E402
from pytriage.analysis.triage.modules import load_classifier  # noqa: E402
from pytriage.scenarios import build_builtin, builtin_names  # noqa: E402
from pytriage.symbols.store import SymbolStore  # noqa: E402
from pytriage.symbols.symbolizer import Symbolizer  # noqa: E402
from pytriage.symbols.sympath import resolve_symbol_path  # noqa: E402
from pytriage.target.offline import OfflineDumpTarget  # noqa: E402

CORPUS = REPO_ROOT.parent / "shared" / "corpus"
GOAL_SECONDS = 1.0
GOAL_BYTES = 256 * 1024


def _run(dump: str, symbols: str, isf_dirs, classifier):
    """One triage on a fresh target and symbolizer: opening the dump, parsing PDBs and the triage itself."""
    start = time.perf_counter()
    target = OfflineDumpTarget.open(dump)
    try:
        symbolizer = Symbolizer(target, store=SymbolStore(resolve_symbol_path(symbols)), isf_dirs=isf_dirs)
        record = triage(target, symbolizer, classifier, TriageOptions())
        elapsed = time.perf_counter() - start
        return record, elapsed, target.stats.bytes_read, target.stats.read_calls
    finally:
        target.close()


def main() -> int:
    classifier = load_classifier()
    cases = []
    with tempfile.TemporaryDirectory(prefix="pytriage-bench-") as tmp:
        for name, _ in builtin_names():
            built = build_builtin(name, os.path.join(tmp, name), "bitmap")
            cases.append((name, built.dump_path, "srv*" + built.symstore_path, []))
        corpus = CORPUS / "dumps" / "triage_x64.dmp"
        if corpus.exists():
            cases.append(("corpus triage_x64.dmp", str(corpus), "srv*%s" % (CORPUS / "symstore"),
                          [str(CORPUS / "symbols")]))
        rows = []
        worst_time = worst_bytes = 0
        for name, dump, symbols, isf in cases:
            record, cold, nbytes, calls = _run(dump, symbols, isf, classifier)
            warm_record, warm, _, _ = _run(dump, symbols, isf, classifier)
            culprit = (record["culprit"] or {}).get("binary")
            assert (warm_record["culprit"] or {}).get("binary") == culprit, name
            worst_time, worst_bytes = max(worst_time, cold), max(worst_bytes, nbytes)
            rows.append((name, culprit or "-", (record["culprit"] or {}).get("confidence", "-"),
                         "%.0f ms" % (cold * 1000), "%.0f ms" % (warm * 1000), "%.1f KB" % (nbytes / 1024), calls))
        print(tabulate(rows, headers=("dump", "culprit", "confidence", "wall (1st)", "wall (2nd)", "target read",
                                      "read calls"), tablefmt="github"))
        print("\nworst: %.0f ms (goal < %.0f ms), %.1f KB read (goal < %d KB)" % (
            worst_time * 1000, GOAL_SECONDS * 1000, worst_bytes / 1024, GOAL_BYTES // 1024))
        return 0 if worst_time < GOAL_SECONDS and worst_bytes < GOAL_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
