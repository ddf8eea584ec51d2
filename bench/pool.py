"""Pool benchmark: image-scan throughput against a plain ``bytes.find``, and target bytes per ``!pooltag ADDR``.

Why this exists: the tag scan reads every loaded driver's code, so its cost is bytes and time; inside
a debugger over KDNET (~2 MB/s) a pooltag lookup must read about one page, not the big pool table or
the drivers. This script builds the built-in ``pool-zoo`` scenario plus a copy with 40 extra 256 KB
driver images (a realistic driver count), then measures, in the same run:

- the scan over all loaded drivers (tag ``Filt``: pages read through the target's cache, every hit
  confirmed with capstone) in MB/s, next to the baseline: ``bytes.find`` of the tag over the same code
  bytes already in memory (the floor for any scanner);
- for each kind of address (classic page, overrun, big pool, special pool guard page) the target bytes
  and read calls of ``find_allocation`` on a fresh target, no scan (the live-target default).

Every result is checked (the scan must find vwifimf!FilterAttach+0xe; each lookup its expected tag).
Run ``python bench/pool.py``; results are recorded in docs/performance.md.
"""

import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pytriage.analysis.pool.image_scan import TagScanner  # noqa: E402
from pytriage.analysis.pool.locate import find_allocation  # noqa: E402
from pytriage.scenarios import builtin_path  # noqa: E402
from pytriage.scenarios.builder import build_scenario  # noqa: E402
from pytriage.scenarios.spec import parse_spec  # noqa: E402
from pytriage.symbols.symbolizer import Symbolizer  # noqa: E402
from pytriage.target.offline import OfflineDumpTarget  # noqa: E402

TAG = 0x746C6946                       # "Filt"
LOOKUPS = [("classic page, allocated block", 0xFFFFC08BE1000070, "Filt"),
           ("classic page, overrun damage", 0xFFFFC08BE10010B0, None),
           ("big pool (table read)", 0xFFFFC08BE1101234, "VsNb"),
           ("special pool guard page", 0xFFFFC08BE1201004, "Filt")]


def _spec(extra_drivers: int) -> dict:
    with open(builtin_path("pool-zoo"), encoding="utf-8") as fh:
        doc = json.load(fh)
    for i in range(extra_drivers):
        code = ("4883ec28 " + "90" * 0x3F000 + " 4883c428 c3")      # ~256 KB of code without the tag
        doc["modules"].append({"name": "filler%02d.sys" % i, "base": "0x%x" % (0xFFFFF80480000000 + i * 0x100000),
                               "size": "0x50000",
                               "functions": [{"name": "Big", "rva": "0x1000", "hex": code,
                                              "unwind": "01040100 0442 0000"}]})
    doc["physical_memory"]["runs"][1]["size"] = "128M"
    return copy.deepcopy(doc)


def _open(built):
    target = OfflineDumpTarget.open(built.dump_path)
    return target, Symbolizer(target, isf_dirs=[built.symbols_path])


def bench_scan(built, repeat: int):
    rows = []
    target, symbolizer = _open(built)
    try:
        scanner = TagScanner(target, symbolizer)
        cold = scanner.scan(TAG)
        assert [(u.module, u.rva) for u in cold.uses][:1] == [("vwifimf", 0x100E)], cold.uses
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            result = TagScanner(target, symbolizer).scan(TAG)
            times.append(time.perf_counter() - start)
        best = min(times)
        code = b"".join(_code_bytes(target, m) for m in target.modules())
        needle = TAG.to_bytes(4, "little")
        find_times = []
        for _ in range(repeat):
            start = time.perf_counter()
            count, position = 0, code.find(needle)
            while position >= 0:
                count += 1
                position = code.find(needle, position + 1)
            find_times.append(time.perf_counter() - start)
        mb = result.bytes_scanned / 1e6
        rows.append(["tag scan (capstone-confirmed)", result.modules_scanned, "%.1f" % mb, "%.1f" % (best * 1000),
                     "%.0f" % (mb / best), "%d hits, %d kept" % (result.raw_hits, len(result.uses))])
        fbest = min(find_times)
        rows.append(["bytes.find baseline (code in memory)", result.modules_scanned, "%.1f" % (len(code) / 1e6),
                     "%.1f" % (fbest * 1000), "%.0f" % (len(code) / 1e6 / fbest), "%d hits" % count])
        rows.append(["ratio scan / baseline", "", "", "%.1fx" % (best / fbest), "", ""])
    finally:
        target.close()
    return rows


def _code_bytes(target, module):
    from pytriage.analysis.function_table import UnwindCatalog, read_sources
    image = UnwindCatalog(target).image(module)
    out = []
    for s in image.headers.sections if image.headers else []:
        if s.executable:
            out.append(read_sources(module, image.sources, s.rva, min(s.size, module.size - s.rva)))
    return b"".join(out)


def bench_lookups(built):
    rows = []
    for label, address, tag in LOOKUPS:
        target, symbolizer = _open(built)
        try:
            symbolizer.address_of("nt!PoolBigPageTable")      # symbol loading is not the lookup's cost
            target.module_at(0)
            before_bytes, before_calls = target.stats.bytes_read, target.stats.read_calls
            start = time.perf_counter()
            report = find_allocation(target, symbolizer, address)
            elapsed = time.perf_counter() - start
            found = report.allocation.tag_text if report.allocation else None
            assert found == tag, (label, found)
            rows.append([label, report.kind, target.stats.bytes_read - before_bytes,
                         target.stats.read_calls - before_calls, "%.2f" % (elapsed * 1000)])
        finally:
            target.close()
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        built = build_scenario(parse_spec(_spec(40)), tmp, "bitmap")
        scan_rows = bench_scan(built, 3)
        lookup_rows = bench_lookups(built)
    print(tabulate(scan_rows, headers=["scan", "modules", "MB", "ms", "MB/s", "result"], tablefmt="github"))
    print()
    print(tabulate(lookup_rows, headers=["!pooltag ADDR", "found by", "bytes read", "read calls", "ms"],
                   tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
