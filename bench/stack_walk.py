"""Stack-walk benchmark: frames per second and target bytes read per full stack.

Why this exists: inside a debugger every target read is a round trip (KDNET: ~2 MB/s, milliseconds per
call), so what a `k`-quality stack costs is the number of bytes and calls it reads, not CPU time; and a
triage of a folder of dumps walks hundreds of stacks, so frames per second matter offline. This script
walks:

- the built-in scenarios ``basic`` (6 frames through a trap frame) and ``unwind-zoo`` (13 frames, every
  unwind code, two trap frames), bitmap dumps built in a temporary folder;
- the REAL triage dump (``../shared/corpus/dumps/triage_x64.dmp``) from 0x7E's CONTEXT, and from
  KeBugCheckEx (processor 0's KPRCB.Context: scans and the _KTRAP_FRAME search, nt having no unwind
  data), amdppm.sys and Wdf01000.sys from the corpus symbol store (image files read through a local
  cache), ntoskrnl's ISF.

For each: a *cold* walk (fresh target: empty page cache, unwind data and headers read and parsed
again) reporting target bytes and read calls for the full stack, and *warm* walks (same target, page
cache and unwind catalog kept, as ``Target.stack`` keeps them for the next stack of the same dump) for
frames per second; with and without a symbolizer (naming every frame from PDBs).
Every walk's frames are checked against the expected ones (the builder's plan, the corpus facts), so a
fast wrong walk cannot pass.

Run ``python bench/stack_walk.py --help``; results are recorded in docs/performance.md.
"""

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))                          # benchmark this checkout's pytriage

from pytriage.analysis.function_table import UnwindCatalog  # noqa: E402
from pytriage.analysis.stack_walk import walk_stack  # noqa: E402
from pytriage.commands.stack import context_at  # noqa: E402
from pytriage.scenarios import build_builtin  # noqa: E402
from pytriage.symbols.store import SymbolStore  # noqa: E402
from pytriage.symbols.symbolizer import Symbolizer  # noqa: E402
from pytriage.target.offline import OfflineDumpTarget  # noqa: E402

CORPUS = REPO_ROOT.parent / "shared" / "corpus"
TRIAGE = CORPUS / "dumps" / "triage_x64.dmp"
FACTS = CORPUS / "reference" / "triage_x64.facts.json"
EXCEPTION_CONTEXT = 0xFFFF850429891720


def log(message):
    print(message, file=sys.stderr, flush=True)


class Case:
    def __init__(self, name, dump, expected, context_of, symbolizer_of, frames):
        self.name = name
        self.dump = dump
        self.expected = expected              # ([(child_sp, rip)] without names, the same with names)
        self.context_of = context_of          # target -> start registers
        self.symbolizer_of = symbolizer_of    # target -> Symbolizer (its store serves image files)
        self.frames = frames                  # how many frames the walk has: (without names, with names)


def scenario_case(name, workdir):
    built = build_builtin(name, str(workdir / name), "bitmap")
    plan = built.stack.frames
    frames = [(f.child_sp, f.rip) for f in plan]
    return Case(name, built.dump_path, (frames, frames), lambda t: t.context_record(),
                lambda t: Symbolizer(t, store=SymbolStore(built.symstore_path), isf_dirs=[]), (len(plan), len(plan)))


def corpus_cases(workdir):
    with open(FACTS, encoding="utf-8") as fh:
        facts = [(int(f["sp"], 16), int(f["address"], 16)) for f in json.load(fh)["stack"]["frames"]]
    cache = workdir / "corpus-cache"
    sympath = "srv*%s*%s" % (cache, CORPUS / "symstore")

    def symbolizer_of(target):
        return Symbolizer(target, store=SymbolStore(sympath), isf_dirs=[str(CORPUS / "symbols")])

    # nt's frames need its symbols to scan past IofCallDriver (docs/performance.md)
    exception = Case("triage_x64.dmp (0x7E CONTEXT)", str(TRIAGE), (facts[8:25], facts[8:25]),
                     lambda t: context_at(t, EXCEPTION_CONTEXT), symbolizer_of, (17, 18))
    # From KeBugCheckEx the _KTRAP_FRAME search reaches amdppm; with nt's symbols the trap handler
    # (facts 7) is a frame of its own and the scans find facts 2, a stale value, and facts 34.
    stale = (0xFFFF850429890F98, 0xFFFFF8047BD17E25)
    bugcheck = Case("triage_x64.dmp (KeBugCheckEx)", str(TRIAGE),
                    ([facts[0]] + facts[8:25], [facts[0], facts[2], stale, facts[7]] + facts[8:25] + [facts[34]]),
                    lambda t: t.processor_contexts()[0].registers, symbolizer_of, (18, 22))
    return [exception, bugcheck]


def check(case, walk, named):
    got = [(f.child_sp, f.instruction_pointer) for f in walk.frames]
    expected = case.expected[named]
    if got[:len(expected)] != expected or len(got) != case.frames[named]:
        raise SystemExit("%s: the walk is wrong (%d frames): %s" % (case.name, len(got), got[:4]))


def measure(case, named, warm_rounds, cold_rounds):
    cold_times, cold_bytes, cold_calls = [], [], []
    for _ in range(cold_rounds):
        target = OfflineDumpTarget.open(case.dump)
        symbolizer = case.symbolizer_of(target) if named else None
        store = symbolizer.store if symbolizer is not None else case.symbolizer_of(target).store
        context = case.context_of(target)
        before = target.stats.bytes_read, target.stats.read_calls
        start = time.perf_counter()
        walk = walk_stack(target, context, symbolizer, store=store)
        cold_times.append(time.perf_counter() - start)
        check(case, walk, named)
        cold_bytes.append(target.stats.bytes_read - before[0])
        cold_calls.append(target.stats.read_calls - before[1])
        if symbolizer is not None:
            symbolizer.close()
        target.close()
    target = OfflineDumpTarget.open(case.dump)
    symbolizer = case.symbolizer_of(target) if named else None
    store = symbolizer.store if symbolizer is not None else case.symbolizer_of(target).store
    context = case.context_of(target)
    catalog = UnwindCatalog(target, store)          # as Target.stack keeps it for the next walk
    walk_stack(target, context, symbolizer, catalog=catalog)               # fill the page cache
    frames = 0
    start = time.perf_counter()
    for _ in range(warm_rounds):
        walk = walk_stack(target, context, symbolizer, catalog=catalog)
        frames += len(walk.frames)
    elapsed = time.perf_counter() - start
    check(case, walk, named)
    if symbolizer is not None:
        symbolizer.close()
    target.close()
    return {"case": case.name, "symbols": named, "frames": case.frames[named],
            "cold_ms": statistics.median(cold_times) * 1000, "cold_bytes": statistics.median(cold_bytes),
            "cold_calls": statistics.median(cold_calls), "warm_frames_per_s": frames / elapsed,
            "warm_ms_per_walk": elapsed / warm_rounds * 1000}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", type=int, default=200, help="warm walks per case (default 200)")
    parser.add_argument("--cold", type=int, default=15, help="cold walks per case, median reported (default 15)")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pytriage-bench-stack-") as tmp:
        workdir = Path(tmp)
        log("building the scenario dumps ...")
        cases = [scenario_case("basic", workdir), scenario_case("unwind-zoo", workdir)]
        if TRIAGE.exists():
            cases.extend(corpus_cases(workdir))
        else:
            log("corpus dump not found at %s: skipping it" % TRIAGE)
        rows = []
        for case in cases:
            for named in (False, True):
                log("walking %s (%s symbols) ..." % (case.name, "with" if named else "without"))
                rows.append(measure(case, named, args.warm, args.cold))
    if args.json:
        print(json.dumps({"python": platform.python_version(), "machine": platform.machine(), "results": rows},
                         indent=2))
        return 0
    table = [[r["case"], "yes" if r["symbols"] else "no", r["frames"], "%.2f ms" % r["cold_ms"],
              "%d B in %d calls" % (r["cold_bytes"], r["cold_calls"]),
              "%.0f (%.2f ms a walk)" % (r["warm_frames_per_s"], r["warm_ms_per_walk"])] for r in rows]
    print(tabulate(table, headers=["stack", "names", "frames", "cold walk (median)", "target read, cold",
                                   "warm frames/s"], tablefmt="github"))
    print("\nPython %s on %s; every walk checked against the expected frames" % (platform.python_version(),
                                                                                 platform.machine()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
