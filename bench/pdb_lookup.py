"""PDB reader benchmark: open + first type lookup, 10,000 nearest-symbol lookups, peak memory.

Why this exists: the PDB reader (pytriage/symbols/pdb) promises to be lazy: opening a PDB reads only the
stream directory and two small headers, a type lookup decodes the records of one hash bucket, and an
address lookup binary-searches the publics address map decoding ~log2(n) records. Unit tests run on
small files and cannot see a regression to "decode everything"; this script times the operations the
symbolizer performs on real PDBs and reports memory, so such a regression shows up as numbers.

PDBs measured (by default): debugpy's ``inject_dll_amd64.pdb`` (MSVC, 5.5 MB, 16k type records; fetched
from PyPI into the test cache like tests/symbols/test_pdb_msvc.py does), and the corpus's Microsoft
``amdppm.pdb`` (stripped, with types) and ``user32.pdb`` (Windows 7, OMAP: its address lookups take the
sort-once path instead of the binary search). Each PDB is measured in a fresh child process so that
``ru_maxrss`` (peak resident set) belongs to that PDB alone; ``tracemalloc`` gives the peak of Python
allocations made by the reader. Every nearest-symbol answer is checked against a brute-force search over
all publics, so a fast wrong answer cannot pass.

Run ``python bench/pdb_lookup.py --help``; results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import random
import resource
import shlex
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))                          # benchmark this checkout's pytriage

CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "symstore"
AMDPPM = CORPUS / "amdppm.pdb" / "1C19FDDB27BB3399D9B45973EFEAFCF31" / "amdppm.pdb"
USER32 = CORPUS / "user32.pdb" / "15F778B3671D4EFDBDCDE79905308B792" / "user32.pdb"
# A type each PDB defines, for the "first type lookup" (any name works with --type).
DEFAULT_TYPES = {
    "inject_dll_amd64.pdb": "std::basic_string<char,std::char_traits<char>,std::allocator<char> >",
    "amdppm.pdb": "_DEVICE_OBJECT",
    "user32.pdb": "",                       # a public PDB without types: no type lookup
}
DEFAULT_SEED = 20240601


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_pdbs() -> list[str]:
    from tests.symbols.pdbtools import debugpy_pdb  # same download and cache as the tests
    return [debugpy_pdb(), str(AMDPPM), str(USER32)]


# -- child: one PDB, measured in its own process ---------------------------------------------------------------

def measure(path: str, type_name: str, lookups: int, opens: int, seed: int) -> dict[str, Any]:
    from pytriage.symbols.pdb import open_pdb

    with open(path, "rb") as fh:                            # page cache warm: measure parsing, not the disk
        while fh.read(1 << 20):
            pass
    baseline_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # Open + first type lookup: median of fresh opens (the first one also reported on its own).
    open_times, open_only = [], []
    layout = None
    for _ in range(opens):
        start = time.perf_counter()
        pdb = open_pdb(path)
        opened = time.perf_counter()
        layout = pdb.type_layout(type_name) if type_name else None
        open_times.append(time.perf_counter() - start)
        open_only.append(opened - start)
        pdb.close()

    # 10,000 nearest_symbol lookups at random RVAs inside the image, on a fresh PdbFile.
    pdb = open_pdb(path)
    first_layout = pdb.type_layout(type_name) if type_name else None
    sections = pdb.sections
    low = sections[0].virtual_address
    high = max(s.virtual_address + max(s.virtual_size, s.size_of_raw_data) for s in sections)
    rng = random.Random(seed)
    rvas = [rng.randrange(low, high) for _ in range(lookups)]
    start = time.perf_counter()
    answers = [pdb.nearest_symbol(rva) for rva in rvas]
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = [pdb.nearest_symbol(rva) for rva in rvas]
    warm = time.perf_counter() - start

    # Name lookups through the publics hash: every public once.
    names = [name for name, _seg, _off, _flags in pdb.publics()]
    start = time.perf_counter()
    for name in names:
        pdb.symbol_rva(name)
    by_name = time.perf_counter() - start
    peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # The same work again under tracemalloc (which slows allocation, so it is not timed): the peak of
    # Python memory the reader holds for open + first type + the lookups.
    tracemalloc.start()
    traced = open_pdb(path)
    if type_name:
        traced.type_layout(type_name)
    for rva in rvas:
        traced.nearest_symbol(rva)
    traced_current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    traced.close()

    # Honesty check: brute force over every public.
    listed = list(pdb.symbols())
    publics = {}
    for name, segment, offset, _flags in pdb.publics():
        rva = pdb.rva_of(segment, offset)
        if rva is not None:
            publics.setdefault(rva, set()).add(name)
    addresses = sorted(publics)
    wrong = 0
    for rva, answer in zip(rvas, answers):
        pos = bisect.bisect_right(addresses, rva) - 1
        expected_rva = addresses[pos] if pos >= 0 else None
        if (answer is None) != (expected_rva is None) or (
                answer is not None and (answer[1] != expected_rva or answer[0] not in publics[expected_rva])):
            wrong += 1
    wrong += sum(1 for a, b in zip(answers, again) if a != b)
    types = pdb._type_table()
    result = {
        "path": path, "file_size": os.path.getsize(path), "guid": pdb.guid, "age": pdb.age,
        "type_records": types.count if types is not None else 0, "publics": len(names),
        "omap": bool(pdb._dbi is not None and pdb._dbi.has_omap), "type": type_name,
        "type_found": not type_name or bool(layout is not None and layout == first_layout),
        "type_fields": len(getattr(layout, "fields", ())) if layout is not None else 0,
        "opens": opens, "open_first_s": open_times[0], "open_median_s": statistics.median(open_times),
        "open_only_median_s": statistics.median(open_only),
        "lookups": lookups, "nearest_cold_s": cold, "nearest_warm_s": warm, "by_name_s": by_name,
        "by_name_count": len(names), "wrong": wrong, "symbols_listed": len(listed),
        "tracemalloc_peak": traced_peak, "tracemalloc_current": traced_current,
        "baseline_rss_kb": baseline_rss_kb, "peak_rss_kb": peak_rss_kb,
    }
    pdb.close()
    return result


# -- parent ---------------------------------------------------------------------------------------------------

def fmt_time(seconds: float) -> str:
    if seconds < 0.001:
        return "%.0f us" % (seconds * 1e6)
    if seconds < 1:
        return "%.2f ms" % (seconds * 1e3)
    return "%.2f s" % seconds


def report(results: list[dict[str, Any]], command: str) -> str:
    rows = []
    for r in results:
        rows.append([
            "%s (%.1f MB, %d types, %d publics%s)" % (os.path.basename(r["path"]), r["file_size"] / 1e6,
                                                      r["type_records"], r["publics"], ", OMAP" if r["omap"] else ""),
            "%s / %s" % (fmt_time(r["open_only_median_s"]), fmt_time(r["open_median_s"]) if r["type"] else "-"),
            fmt_time(r["open_first_s"]),
            "%s (%.1f us each)" % (fmt_time(r["nearest_cold_s"]), 1e6 * r["nearest_cold_s"] / r["lookups"]),
            "%s" % fmt_time(r["nearest_warm_s"]),
            "%.1f us" % (1e6 * r["by_name_s"] / max(1, r["by_name_count"])),
            "%.2f MB" % (r["tracemalloc_peak"] / 1e6),
            "%.1f MB (+%.1f)" % (r["peak_rss_kb"] / 1024, (r["peak_rss_kb"] - r["baseline_rss_kb"]) / 1024),
        ])
    headers = ["PDB", "open / open + 1st type (median)", "1st open + type (cold)", "10k nearest_symbol (fresh)",
               "same 10k again", "symbol_rva (per name)", "tracemalloc peak", "ru_maxrss (+ over imports)"]
    lines = [command, "", tabulate(rows, headers, tablefmt="github"), ""]
    for r in results:
        what = ("first type %r %s (%d fields)" % (r["type"], "found" if r["type_found"] else "NOT FOUND",
                                                  r["type_fields"]) if r["type"] else "no type lookup (no types)")
        lines.append("%s: %s; %d nearest answers checked against brute force, %d wrong"
                     % (os.path.basename(r["path"]), what, r["lookups"], r["wrong"]))
    lines.append("Python %s on %s %s" % (platform.python_version(), platform.system(), platform.machine()))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("pdbs", nargs="*", help="PDB files (default: debugpy's inject_dll_amd64.pdb, amdppm, user32)")
    parser.add_argument("--type", default=None, help="type to look up first (default: one known per PDB)")
    parser.add_argument("--lookups", type=int, default=10000, help="nearest_symbol lookups at random RVAs")
    parser.add_argument("--opens", type=int, default=21, help="fresh opens for the open + first-type median")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        json.dump(measure(args.child, args.type or "", args.lookups, args.opens, args.seed), sys.stdout)
        return 0
    pdbs = args.pdbs or default_pdbs()
    results = []
    for path in pdbs:
        type_name = args.type if args.type is not None else next(
            (name for suffix, name in DEFAULT_TYPES.items() if path.endswith(suffix)), "")
        log("measuring %s" % path)
        child = [sys.executable, __file__, "--child", path, "--type", type_name, "--lookups", str(args.lookups),
                 "--opens", str(args.opens), "--seed", str(args.seed)]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out))
    command = "$ python3 " + " ".join(shlex.quote(a) for a in ["bench/pdb_lookup.py"] + (argv or sys.argv[1:]))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(report(results, command))
    return 1 if any(r["wrong"] or not r["type_found"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
