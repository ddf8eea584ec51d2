"""summary.md: the batch result as a page to paste into a ticket or read on a code forge.

It is the short form of report.html: run facts, the groups ranked by how many dumps they hold (network
bucket, then the !analyze bucket), the drivers blamed most, and the dumps that could not be triaged.
Every string that comes from a dump (bucket, driver, path, error text) is escaped for a GitHub-flavoured
Markdown table cell: a driver named ``a|b`` must not add a column, a backtick must not open a code span,
``<script>`` must not become HTML, a newline must not end the row.
"""

import re
from typing import List, Optional, Sequence

from pytriage.batch.groups import TRIAGED_NOTE, BatchReport, CulpritCount, FailureGroup, Group, pe_date, utc_iso

# Characters with a meaning inside a GFM table cell: escape, code span, emphasis, link brackets, raw HTML
# and autolinks, entities, the cell separator, strikethrough. A backslash before ASCII punctuation is
# always the literal character. An underscore between two letters or digits cannot open or close
# emphasis, so bucket names (NBL_COMPLETION_STACK_CORRUPT_x.sys) stay readable in the raw file.
_SPECIAL = re.compile(r"([\\`*\[\]<>&|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_NEWLINES = re.compile(r"[\r\n\t\v\f\u0085\u2028\u2029]+")


def md_text(text: Optional[str]) -> str:
    """Dump-derived text as a literal Markdown table cell (escaped, on one line)."""
    if not text:
        return ""
    return _SPECIAL.sub(r"\\\1", _NEWLINES.sub(" ", str(text)))


def _join(items: Sequence[str]) -> str:
    return ", ".join(item for item in items if item)


def _timestamps(culprit: CulpritCount) -> str:
    parts = []
    for timestamp, dumps in culprit.timestamps:
        if timestamp:
            date = pe_date(timestamp)
            parts.append("%s%s × %d" % (md_text(timestamp), " (%s)" % date if date else "", dumps))
        else:
            parts.append("no timestamp × %d" % dumps)
    return "; ".join(parts)


def _culprits_cell(culprits: List[CulpritCount], limit: int = 3) -> str:
    shown = ["%s (%d)" % (md_text(c.binary), c.dumps) for c in culprits[:limit]]
    if len(culprits) > limit:
        shown.append("%d more" % (len(culprits) - limit))
    return _join(shown) or "none found"


def _bugchecks_cell(group: Group) -> str:
    return _join("%s %s (%d)" % (md_text(b.code or "?"), md_text(b.name or ""), b.dumps) for b in group.bugchecks)


def _table(header: Sequence[str], rows: List[Sequence[str]]) -> List[str]:
    lines = ["| %s |" % " | ".join(header), "|%s|" % "|".join("---" for _ in header)]
    lines += ["| %s |" % " | ".join(row) for row in rows]
    return lines


def group_table(groups: List[Group], title: str) -> List[str]:
    if not groups:
        return ["No dump was triaged."]
    rows = []
    for g in groups:
        rows.append([str(g.rank), md_text(g.bucket), str(g.dumps), utc_iso(g.first_seen) or "unknown",
                     utc_iso(g.last_seen) or "unknown", _bugchecks_cell(g), _culprits_cell(g.culprits),
                     _join("%s %d" % (level, n) for level, n in g.confidence), md_text(g.example)])
    return _table(["#", title, "Dumps", "First seen (UTC)", "Last seen (UTC)", "Bugcheck", "Top culprits",
                   "Confidence", "Example dump"], rows)


def culprit_table(culprits: List[CulpritCount]) -> List[str]:
    if not culprits:
        return ["No driver was blamed."]
    rows = [[str(i), md_text(c.binary), _timestamps(c), str(c.dumps), str(c.groups)]
            for i, c in enumerate(culprits, 1)]
    return _table(["#", "Driver", "Timestamps (link date) × dumps", "Dumps", "Groups"], rows)


def failure_table(failures: List[FailureGroup]) -> List[str]:
    if not failures:
        return ["Every dump was triaged."]
    rows = [[str(f.rank), md_text(f.status), md_text(f.error), str(f.dumps), md_text(f.example)] for f in failures]
    return _table(["#", "Status", "Error", "Dumps", "Example dump"], rows)


def render_markdown(report: BatchReport) -> str:
    run = report.run
    state = "interrupted" if run.interrupted else ("finished %s" % utc_iso(run.finished) if run.finished
                                                   else "not finished")
    facts = [
        ["Root", md_text(run.root)],
        ["Run", "%d, started %s, %s" % (run.id, utc_iso(run.started) or "unknown", state)],
        ["Tool", "pytriage %s, engine %s" % (md_text(run.tool_version), md_text(run.engine))],
        ["Dumps found", str(run.dumps_found)],
        ["Triaged in this run", "%d (%s)" % (run.dumps_triaged, TRIAGED_NOTE)],
        ["Results", "%d ok, %d failed, %d not triaged" % (run.ok, run.failed, run.not_triaged)],
    ]
    lines = ["# pytriage batch report", ""] + _table(["Run", ""], facts) + [""]
    lines += ["## Groups by network bucket", "",
              "Dumps grouped by pytriage's network-aware bucket (the !analyze bucket when a dump has none), "
              "ranked by distinct dumps.", ""]
    lines += group_table(report.network_groups, "Network bucket") + [""]
    lines += ["## Groups by !analyze failure bucket", ""]
    lines += group_table(report.failure_groups, "Failure bucket") + [""]
    lines += ["## Top culprit drivers", ""] + culprit_table(report.culprits) + [""]
    lines += ["## Failures", "", "Dumps that could not be triaged, by status and error.", ""]
    lines += failure_table(report.failures) + [""]
    if report.not_triaged:
        lines += ["%d dump(s) of this run have no result%s: first %s." % (
            len(report.not_triaged), " (the run was interrupted)" if run.interrupted else "",
            md_text(report.not_triaged[0])), ""]
    return "\n".join(lines)
