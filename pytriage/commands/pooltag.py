"""`!pooltag` / `pytriage pooltag`: who owns this memory (DESIGN 7). Argument handling and rendering.

Three modes, like the debugger command:

* ``ADDR``: the allocation holding the address (``!pool``-style page listing with ``*`` on it), its
  state, the findings (chain breaks, overruns, freed blocks, guard-page hits) and the tag's owners;
* ``-t TAG``: the owners of a tag (pooltag.txt, our network table, the image scan);
* ``-s``: pool usage by tag from nt!PoolTrackTable, largest first, with owners.

The image scan reads every loaded driver's code. Offline it runs when the other sources do not name a
loaded binary (``--scan`` always, ``--no-scan`` never); on a live target only with ``--scan``, with
progress on stderr. JSON: schema ``pytriage.pooltag/1`` (docs/cli.md).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional

from tabulate import tabulate

from pytriage.analysis.pool.header import tag_text
from pytriage.analysis.pool.image_scan import TagScan, TagScanner
from pytriage.analysis.pool.locate import PoolReport, find_allocation
from pytriage.analysis.pool.owners import listed_owners, scan_owners
from pytriage.analysis.pool.pooltag_file import PoolTagFile, find_pooltag_file
from pytriage.analysis.pool.tracker import pool_usage
from pytriage.commands.render import format_address, hex64, windbg_address

SCHEMA = "pytriage.pooltag/1"


@dataclass
class PoolTagOptions:
    scan: str = "auto"                # "auto", "always", "never"
    pooltag_file: Optional[str] = None
    debugger_dirs: tuple = ()
    verbose: bool = False
    top: int = 20
    big_pool: bool = True


class PoolTagContext:
    """What one command run shares: the target, symbols, the pooltag file and the scanner's caches."""

    def __init__(self, target, symbolizer, options: PoolTagOptions, progress_stream=None) -> None:
        self.target = target
        self.symbolizer = symbolizer
        self.options = options
        path = find_pooltag_file(options.pooltag_file, options.debugger_dirs)
        self.pooltag = PoolTagFile.load(path) if path else None
        self.progress_stream = progress_stream
        self._scanner: Optional[TagScanner] = None
        self.scans: List[TagScan] = []
        self._owners: Dict[int, tuple] = {}

    def _progress(self, index: int, count: int, name: str, scanned: int) -> None:
        if self.progress_stream is not None:
            self.progress_stream.write("\rscanning %d/%d %-24s %6.1f MB" % (index + 1, count, name[:24], scanned / 1e6))
            if index + 1 == count:
                self.progress_stream.write("\n")
            self.progress_stream.flush()

    def scan(self, tag: int) -> TagScan:
        if self._scanner is None:
            show = self.progress_stream is not None and (self.target.is_live or self.progress_stream.isatty())
            self._scanner = TagScanner(self.target, self.symbolizer, progress=self._progress if show else None)
        result = self._scanner.scan(tag)
        self.scans.append(result)
        return result

    def owners(self, tag: int) -> tuple:
        """(owner candidates, the scan or None, why the scan did not run); each tag looked up (and scanned)
        once per run, however many blocks carry it."""
        found = self._owners.get(tag)
        if found is None:
            found = self._owners[tag] = self._lookup_owners(tag)
        return found

    def _lookup_owners(self, tag: int) -> tuple:
        owners = listed_owners(self.target, tag, self.pooltag)
        policy = self.options.scan
        skipped = ""
        scan = None
        if policy == "always" or (policy == "auto" and not self.target.is_live
                                  and not any(o.loaded for o in owners)):
            scan = self.scan(tag)
            owners = scan_owners(scan) + owners
        elif policy == "never":
            skipped = "image scan not run (--no-scan)"
        elif self.target.is_live:
            skipped = "image scan not run on a live target: add --scan (reads every driver's code)"
        else:
            skipped = "image scan not needed: a loaded binary is named above (add --scan to confirm it)"
        return owners, scan, skipped


# -- ADDR -------------------------------------------------------------------------------------------------
def pool_address(ctx: PoolTagContext, address: int) -> dict:
    report = find_allocation(ctx.target, ctx.symbolizer, address, big_pool=ctx.options.big_pool)
    record = {"schema": SCHEMA, "mode": "address", "address": hex64(address), "page": hex64(report.page_va),
              "kind": report.kind, "header_layout": report.header_layout,
              "allocation": report.allocation.to_json() if report.allocation else None,
              "blocks": _blocks_json(report), "findings": [f.to_json() for f in report.findings],
              "notes": list(report.notes), "owners": [], "culprit_owners": [], "scan": None, "scan_skipped": ""}
    if report.nearest is not None:
        record["evidence"] = list(report.nearest.evidence)
    tag = report.allocation.tag if report.allocation is not None else None
    if tag is not None:
        owners, scan, skipped = ctx.owners(tag)
        record["owners"] = [o.to_json() for o in owners]
        record["scan"] = _scan_json(scan)
        record["scan_skipped"] = skipped
    culprits = sorted({f.culprit_tag for f in report.findings if f.culprit_tag is not None and f.culprit_tag != tag})
    for culprit in culprits:
        owners, scan, _ = ctx.owners(culprit)
        record["culprit_owners"].append({"tag": tag_text(culprit), "owners": [o.to_json() for o in owners],
                                         "scan": _scan_json(scan)})
    record["_report"] = report
    return record


def _blocks_json(report: PoolReport) -> list:
    if report.walk is None:
        return []
    return [{"start": hex64(b.start), "size": b.size, "previous_size": b.header.previous_size,
             "state": b.header.state, "pool_type": b.header.type_text, "tag": b.header.tag_text,
             "contains_address": b.contains(report.address), "recovered": b.recovered, "suspect": b.suspect,
             "raw": b.header.raw.hex()} for b in report.walk.blocks]


def _scan_json(scan: Optional[TagScan]) -> Optional[dict]:
    if scan is None:
        return None
    return {"tag": scan.tag_text, "modules_scanned": scan.modules_scanned, "bytes_scanned": scan.bytes_scanned,
            "raw_hits": scan.raw_hits, "rejected": scan.rejected, "skipped": list(scan.skipped),
            "uses": [u.to_json() for u in scan.uses]}


def _owner_lines(owners: List[dict], indent: str = "    ") -> List[str]:
    if not owners:
        return [indent + "Unknown: no pooltag.txt line, no network-table entry, no driver code using it"]
    lines = []
    for owner in owners:
        loaded = {True: "", False: " (not loaded)", None: ""}[owner["loaded"]]
        lines.append("%s%-13s %s%s: %s" % (indent, owner["source"], owner["binary"], loaded, owner["detail"]))
    return lines


def _page_lines(report: PoolReport) -> List[str]:
    walk = report.walk
    lines = []
    if walk is None:
        return lines
    damaged = {start: end for start, end in walk.damaged}
    entries = [(b.start, "b", b) for b in walk.blocks] + [(s, "d", e) for s, e in damaged.items()]
    for start, kind, item in sorted(entries, key=lambda e: e[0]):
        if kind == "d":
            mark = "*" if start <= report.address < item else " "
            lines.append("%s%s size: %4x  (damaged: no valid header)" % (mark, format_address(start), item - start))
            continue
        b = item
        mark = "*" if b.contains(report.address) else " "
        state = "(Free)     " if b.header.free else "(Allocated)"
        extra = " [found again after the damage]" if b.recovered else " [PreviousSize wrong]" if b.suspect else ""
        lines.append("%s%s size: %4x previous size: %4x  %s %s%s%s" % (
            mark, format_address(b.start), b.size, b.header.previous_size, state, mark, b.header.tag_text, extra))
    return lines


def render_address(record: dict, verbose: bool = False) -> List[str]:
    report: PoolReport = record["_report"]
    kind_text = {"classic": "pool page walk", "special": "special pool page", "big": "big pool table",
                 "nearest-header": "nearest header, best effort", "unknown": "not decoded"}[report.kind]
    lines = ["Pool page %s (%s)" % (format_address(report.page_va), kind_text)]
    lines.extend(_page_lines(report))
    alloc = report.allocation
    if alloc is not None:
        if report.walk is None:
            lines.append("*%s size: %4x  (%s) *%s" % (format_address(alloc.start), alloc.size,
                                                   "Free" if alloc.state == "free" else "Allocated", alloc.tag_text))
        lines.append("")
        offset = report.address - alloc.data_va
        spans_header = alloc.header is not None or report.kind == "big"
        end = alloc.start + alloc.size if spans_header else alloc.data_va + alloc.size
        if report.address >= end:
            where = "0x%x bytes past its end" % (report.address - end)
        elif offset >= 0:
            where = "+0x%x into its data" % offset
        else:
            where = "in its pool header" if alloc.header else "0x%x bytes before its data" % -offset
        lines.append("Allocation: %s  tag %s  %s, %s, 0x%x bytes%s" % (
            format_address(alloc.start), alloc.tag_text, alloc.state, alloc.pool_type, alloc.size,
            "  [best effort]" if alloc.best_effort else ""))
        lines.append("  data %s; %s is %s" % (format_address(alloc.data_va), format_address(report.address), where))
        lines.append("  found by: %s" % alloc.how)
        for item in record.get("evidence", []):
            lines.append("  evidence: %s" % item)
        lines.append("  Owning component (tag %s):" % alloc.tag_text)
        lines.extend(_owner_lines(record["owners"]))
        if record["scan"]:
            lines.append("    %s" % _scan_summary(record["scan"]))
        elif record["scan_skipped"]:
            lines.append("    (%s)" % record["scan_skipped"])
    else:
        lines.append("")
        lines.append("No allocation found for %s." % format_address(report.address))
    if report.findings:
        lines.append("")
        lines.append("Findings:")
        for finding in report.findings:
            lines.append("  [%s] %s" % (finding.kind, finding.text))
    for culprit in record["culprit_owners"]:
        lines.append("  Owning component of %s (the block that did it):" % culprit["tag"])
        lines.extend(_owner_lines(culprit["owners"]))
        if culprit["scan"]:
            lines.append("    %s" % _scan_summary(culprit["scan"]))
    if report.notes:
        lines.append("")
        lines.append("Not available:")
        for note in report.notes:
            lines.append("  %s" % note)
    if verbose:
        lines.append("")
        lines.append("Raw headers (%s):" % report.header_layout)
        for block in record["blocks"]:
            lines.append("  %s  %s" % (windbg_address(block["start"]), _spaced(block["raw"])))
        if alloc is not None and alloc.header is not None and not record["blocks"]:
            lines.append("  %s  %s" % (format_address(alloc.header.va), _spaced(alloc.header.raw.hex())))
        if report.special is not None:
            lines.append("  %s  %s  (special pool header: size 0x%x, fill byte 0x%02x)" % (
                format_address(report.special.page_va), _spaced(report.special.header.hex()),
                report.special.requested, report.special.fill))
    return lines


def _spaced(raw_hex: str) -> str:
    return " ".join(raw_hex[i:i + 2] for i in range(0, len(raw_hex), 2))


def _scan_summary(scan: dict) -> str:
    text = "image scan: %d module(s), %.1f KB of code, %d hit(s) of the tag bytes, %d kept, %d rejected (not an " \
           "instruction's immediate)" % (scan["modules_scanned"], scan["bytes_scanned"] / 1024.0, scan["raw_hits"],
                                         len(scan["uses"]), scan["rejected"])
    if scan["skipped"]:
        names = [item.split(":", 1)[0] for item in scan["skipped"]]
        text += "; %d module(s) not (fully) scanned, their code is neither in the dump nor on the symbol path: %s" % (
            len(names), ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))
    return text


# -- -t TAG ---------------------------------------------------------------------------------------------
def tag_record(ctx: PoolTagContext, tag: int) -> dict:
    owners, scan, skipped = ctx.owners(tag)
    return {"schema": SCHEMA, "mode": "tag", "tag": tag_text(tag), "tag_value": "0x%08x" % tag,
            "owners": [o.to_json() for o in owners], "scan": _scan_json(scan), "scan_skipped": skipped,
            "pooltag_file": ctx.pooltag.path if ctx.pooltag else None}


def render_tag(record: dict) -> List[str]:
    lines = ["Tag %s (%s)" % (record["tag"], record["tag_value"]), "Owners:"]
    lines.extend(_owner_lines(record["owners"], "  "))
    if record["scan"]:
        lines.append("  %s" % _scan_summary(record["scan"]))
    elif record["scan_skipped"]:
        lines.append("  (%s)" % record["scan_skipped"])
    if record["pooltag_file"] is None:
        lines.append("  (no pooltag.txt: pass --pooltag FILE or set PYTRIAGE_POOLTAG; see docs/cli.md)")
    return lines


# -- -s ---------------------------------------------------------------------------------------------------
def usage_record(ctx: PoolTagContext) -> dict:
    usages, note = pool_usage(ctx.target, ctx.symbolizer)
    top = usages[:ctx.options.top]
    rows = []
    for usage in top:
        owners = listed_owners(ctx.target, usage.tag, ctx.pooltag)
        row = usage.to_json()
        row["owner"] = owners[0].binary if owners else ""
        rows.append(row)
    return {"schema": SCHEMA, "mode": "summary", "tags_in_use": len(usages), "top": rows,
            "note": note + "; per-processor tables are not added in: counts are a lower bound"}


def render_usage(record: dict) -> List[str]:
    rows = [[r["tag"], r["nonpaged_allocs"] - r["nonpaged_frees"], "0x%x" % r["nonpaged_bytes"],
             r["paged_allocs"] - r["paged_frees"], "0x%x" % r["paged_bytes"], r["owner"]] for r in record["top"]]
    lines = ["Pool usage by tag, largest first (%d of %d tags in use)" % (len(rows), record["tags_in_use"]), ""]
    lines.extend(tabulate(rows, headers=["Tag", "NP in use", "NP bytes", "P in use", "P bytes", "Owner"],
                          tablefmt="simple", disable_numparse=True).splitlines())
    lines.append("")
    lines.append("(%s)" % record["note"])
    return lines


def strip_private(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}

