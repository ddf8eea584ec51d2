"""report.html: the batch result as one self-contained page (no network, no external files).

The page is meant to be mailed around and opened from a ticket, so it carries its CSS and its few lines
of JavaScript inline, and it is rendered on the Python side: every table and every drill-down is plain
HTML that reads (and Ctrl-F finds) even with scripting off. The script only sorts tables when a header
is clicked (numbers and dates by value, through a ``data-sort`` attribute) and opens the drill-down a
link points to.

Dump contents are attacker-controlled: a driver name, a pool tag, a UTF-16 string found in memory end
up in buckets and reasoning lines. Every such string goes through ``html.escape(..., quote=True)``, in
text and in attributes alike, and the script never builds HTML from strings (it only moves rows and
toggles ``open``). As a second wall, a Content-Security-Policy allows no network access and only the
page's own script and style, pinned by their SHA-256 hashes, so even a missed escape could not run.
"""

import base64
import hashlib
import html
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pytriage.batch.groups import (
    NETWORK,
    TRIAGED_NOTE,
    BatchReport,
    CulpritCount,
    DumpRow,
    FailureGroup,
    Group,
    pe_date,
    utc_iso,
)

CSS = """
:root { color-scheme: light dark; --fg: #1d232b; --bg: #ffffff; --muted: #5b6673; --line: #d5dbe2;
        --head: #eef2f6; --accent: #0b5cad; --bad: #a4161a; --warn: #8a5a00; --ok: #2b7a0b; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e4e8ee; --bg: #15191e; --muted: #9aa5b1; --line: #38414b; --head: #222931;
          --accent: #6cb2ff; --bad: #ff7b7b; --warn: #e3b341; --ok: #7ee787; }
}
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 1rem 1.5rem 4rem; }
h1 { font-size: 1.5rem; margin: 0 0 .75rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
nav a { margin-right: 1rem; }
a { color: var(--accent); }
code, .mono { font-family: ui-monospace, "Cascadia Mono", Consolas, monospace; font-size: 13px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
th { background: var(--head); position: sticky; top: 0; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.when { white-space: nowrap; }
table.sortable th button { all: unset; cursor: pointer; display: block; width: 100%; }
table.sortable th[aria-sort="ascending"] button::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"] button::after { content: " \\25BC"; }
table.facts { width: auto; }
table.facts th { position: static; }
details.group { border: 1px solid var(--line); border-radius: 4px; margin: .5rem 0; padding: .25rem .75rem; }
details.group > summary { cursor: pointer; font-weight: 600; }
tr.why td { border-top: none; }
tr.why ol { margin: .25rem 0; padding-left: 1.5rem; }
.muted { color: var(--muted); }
.high { color: var(--bad); font-weight: 600; }
.medium { color: var(--warn); }
.status { color: var(--bad); font-weight: 600; }
:target { outline: 2px solid var(--accent); }
"""

SCRIPT = """
(function () {
  "use strict";
  function key(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    if (numeric) {
      var value = parseFloat(raw);
      return isNaN(value) ? -Infinity : value;
    }
    return raw.trim().toLowerCase();
  }
  function sortBy(th) {
    var table = th.closest("table");
    var body = table.tBodies[0];
    var index = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "number";
    var order = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var sign = order === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, numeric), y = key(b, index, numeric);
      if (x < y) { return -sign; }
      if (x > y) { return sign; }
      return Number(a.getAttribute("data-rank")) - Number(b.getAttribute("data-rank"));
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.setAttribute("aria-sort", cell === th ? order : "none");
    });
  }
  function reveal(id) {
    var target = document.getElementById(id);
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") { node.open = true; }
    }
    if (target) { target.scrollIntoView(); }
  }
  document.addEventListener("click", function (event) {
    var th = event.target.closest("table.sortable thead th");
    if (th) { sortBy(th); return; }
    var link = event.target.closest("a[href^='#']");
    if (link) { reveal(link.getAttribute("href").slice(1)); }
  });
  window.addEventListener("hashchange", function () { reveal(location.hash.slice(1)); });
  if (location.hash) { reveal(location.hash.slice(1)); }
}());
"""


def esc(text: object) -> str:
    """Any dump-derived value as HTML text or attribute content."""
    return html.escape("" if text is None else str(text), quote=True)


def wrap(text: object) -> str:
    """``esc`` plus line-break opportunities (``<wbr>``) after ``_ / \\ ! .``: bucket names, bugcheck names and
    paths are long single words that would otherwise widen their column to the whole line. ``<wbr>`` is
    added after escaping, so it cannot combine with dump text into markup, and it has no text content."""
    return re.sub(r"([_/\\!.])", r"\1<wbr>", esc(text))


def _csp_hash(source: str) -> str:
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def content_security_policy() -> str:
    return ("default-src 'none'; style-src %s; script-src %s; img-src 'none'; base-uri 'none'; form-action 'none'"
            % (_csp_hash(CSS), _csp_hash(SCRIPT)))


Column = Tuple[str, bool]   # (header text, numeric)


def _td(content: object, sort: Optional[object] = None, cls: str = "") -> str:
    """A cell around ``content``, which is HTML already (callers escape what they put in it); ``sort`` is the
    raw value the script sorts by, escaped here."""
    attrs = ' class="%s"' % cls if cls else ""
    if sort is not None:
        attrs += ' data-sort="%s"' % esc(sort)
    return "<td%s>%s</td>" % (attrs, content)


def _sortable(table_id: str, columns: Sequence[Column], rows: Iterable[Tuple[int, List[str]]],
              sorted_by: str) -> List[str]:
    head = []
    for name, numeric in columns:
        attrs = ' class="num" data-type="number"' if numeric else ""
        head.append('<th%s aria-sort="%s"><button type="button">%s</button></th>'
                    % (attrs, "descending" if name == sorted_by else "none", esc(name)))
    lines = ['<table class="sortable" id="%s">' % table_id, "<thead><tr>%s</tr></thead>" % "".join(head), "<tbody>"]
    lines += ['<tr data-rank="%d">%s</tr>' % (rank, "".join(cells)) for rank, cells in rows]
    return lines + ["</tbody>", "</table>"]


def _when(epoch: Optional[float]) -> str:
    return _td(esc(utc_iso(epoch)) or '<span class="muted">unknown</span>', "" if epoch is None else "%.3f" % epoch,
               "num")


def _bugchecks(group: Group) -> str:
    return "<br>".join("%s %s <span class=\"muted\">(%d)</span>" % (esc(b.code or "?"), wrap(b.name or ""), b.dumps)
                       for b in group.bugchecks)


def _culprit_list(culprits: List[CulpritCount], limit: int = 3) -> str:
    items = ["<code>%s</code> <span class=\"muted\">(%d)</span>" % (esc(c.binary), c.dumps) for c in culprits[:limit]]
    if len(culprits) > limit:
        items.append('<span class="muted">%d more</span>' % (len(culprits) - limit))
    return "<br>".join(items) or '<span class="muted">none found</span>'


def _timestamps(culprit: CulpritCount) -> str:
    parts = []
    for timestamp, dumps in culprit.timestamps:
        date = pe_date(timestamp)
        label = "<code>%s</code>%s" % (esc(timestamp), " (%s)" % esc(date) if date else "") if timestamp \
            else '<span class="muted">no timestamp</span>'
        parts.append("%s × %d" % (label, dumps))
    return "<br>".join(parts)


def _confidence(group: Group) -> str:
    return ", ".join('<span class="%s">%s</span> %d' % (esc(level), esc(level), n) for level, n in group.confidence)


def _confidence_sort(group: Group) -> str:
    """The share of high, then of medium confidence: sorted descending, the firmest blame comes first."""
    mix = dict(group.confidence)
    total = max(group.dumps, 1)
    return "%.6f" % (mix.get("high", 0) / total + mix.get("medium", 0) / total / 1000)


def group_table(groups: List[Group], title: str, table_id: str) -> List[str]:
    if not groups:
        return ['<p class="muted">No dump was triaged.</p>']
    columns = [("#", True), (title, False), ("Dumps", True), ("First seen (UTC)", True), ("Last seen (UTC)", True),
               ("Bugcheck", False), ("Top culprits", False), ("Confidence", True), ("Example dump", False)]
    rows = []
    for g in groups:
        anchor = '<a href="#%s-%d">%s</a>' % (g.kind, g.rank, wrap(g.bucket))
        rows.append((g.rank, [_td(g.rank, None, "num"), _td(anchor, g.bucket), _td(g.dumps, None, "num"),
                              _when(g.first_seen), _when(g.last_seen), _td(_bugchecks(g)),
                              _td(_culprit_list(g.culprits), g.culprits[0].binary if g.culprits else ""),
                              _td(_confidence(g), _confidence_sort(g)), _td("<code>%s</code>" % wrap(g.example),
                                                                            g.example)]))
    return _sortable(table_id, columns, rows, "Dumps")


def _dump_rows(members: List[DumpRow], kind: str, ids: Dict[str, str]) -> List[str]:
    other = "Failure bucket" if kind == NETWORK else "Network bucket"
    lines = ['<table class="dumps">', "<thead><tr><th>Dump</th><th>Crash time (UTC)</th><th>Bugcheck</th>"
             "<th>Culprit</th><th>Confidence</th><th>%s</th><th class=\"num\">Seconds</th></tr></thead>" % other,
             "<tbody>"]
    for row in members:
        bucket = row.failure_bucket if kind == NETWORK else row.network_bucket
        culprit = "<code>%s</code>" % esc(row.culprit) if row.culprit else '<span class="muted">none</span>'
        if row.culprit and row.culprit_timestamp:
            culprit += ' <span class="muted">%s</span>' % esc(row.culprit_timestamp)
        path = "<code>%s</code>" % wrap(row.path)
        dump_id = ids.get(row.path, "")
        if kind == NETWORK:
            attrs = ' id="%s"' % dump_id
        else:
            attrs, path = "", '<a href="#%s">%s</a>' % (dump_id, path)
        seconds = "" if row.seconds is None else "%.2f" % row.seconds
        lines.append("<tr%s><td>%s</td><td class=\"when\">%s</td><td>%s %s</td><td>%s</td><td class=\"%s\">%s</td>"
                     "<td><code>%s</code></td><td class=\"num\">%s</td></tr>"
                     % (attrs, path, esc(utc_iso(row.dump_time)), esc(row.bugcheck_code or ""),
                        esc(row.bugcheck_name or ""), culprit, esc(row.confidence), esc(row.confidence),
                        wrap(bucket or ""), seconds))
        if kind == NETWORK and row.reasoning:
            items = "".join("<li>%s</li>" % esc(line) for line in row.reasoning)
            lines.append('<tr class="why"><td colspan="7"><details><summary>Reasoning (%d lines)</summary>'
                         "<ol>%s</ol></details></td></tr>" % (len(row.reasoning), items))
    return lines + ["</tbody>", "</table>"]


def group_details(group: Group, ids: Dict[str, str]) -> List[str]:
    facts = [
        ("Dumps", "%d (distinct contents; %d file(s))" % (group.dumps, len(group.members))),
        ("First seen", esc(utc_iso(group.first_seen)) or "unknown"),
        ("Last seen", esc(utc_iso(group.last_seen)) or "unknown"),
        ("Bugchecks", _bugchecks(group)),
        ("Confidence", _confidence(group)),
        ("Example dump", "<code>%s</code>" % wrap(group.example)),
    ]
    lines = ['<details class="group" id="%s-%d">' % (group.kind, group.rank),
             "<summary>#%d <code>%s</code> — %d dump%s</summary>" % (group.rank, wrap(group.bucket), group.dumps,
                                                                    "" if group.dumps == 1 else "s"),
             '<table class="facts">']
    lines += ["<tr><th>%s</th><td>%s</td></tr>" % (name, value) for name, value in facts]
    lines.append("</table>")
    if group.culprits:
        lines += ['<table class="culprits"><thead><tr><th>Culprit</th><th>Timestamps × dumps</th>'
                  '<th class="num">Dumps</th></tr></thead><tbody>']
        lines += ["<tr><td><code>%s</code></td><td>%s</td><td class=\"num\">%d</td></tr>"
                  % (esc(c.binary), _timestamps(c), c.dumps) for c in group.culprits]
        lines.append("</tbody></table>")
    return lines + _dump_rows(group.members, group.kind, ids) + ["</details>"]


def culprit_table(culprits: List[CulpritCount]) -> List[str]:
    if not culprits:
        return ['<p class="muted">No driver was blamed.</p>']
    columns = [("#", True), ("Driver", False), ("Timestamps (link date) × dumps", False), ("Dumps", True),
               ("Groups", True)]
    rows = [(i, [_td(i, None, "num"), _td("<code>%s</code>" % esc(c.binary), c.binary), _td(_timestamps(c)),
                 _td(c.dumps, None, "num"), _td(c.groups, None, "num")]) for i, c in enumerate(culprits, 1)]
    return _sortable("culprits", columns, rows, "Dumps")


def failure_section(failures: List[FailureGroup], not_triaged: List[str], interrupted: bool) -> List[str]:
    if not failures and not not_triaged:
        return ['<p class="muted">Every dump was triaged.</p>']
    lines: List[str] = []
    if failures:
        columns = [("#", True), ("Status", False), ("Error", False), ("Dumps", True), ("Example dump", False)]
        rows = [(f.rank, [_td(f.rank, None, "num"), _td('<span class="status">%s</span>' % esc(f.status), f.status),
                          _td('<a href="#failed-%d">%s</a>' % (f.rank, esc(f.error)), f.error),
                          _td(f.dumps, None, "num"), _td("<code>%s</code>" % wrap(f.example), f.example)])
                for f in failures]
        lines += _sortable("failures", columns, rows, "Dumps")
    for f in failures:
        lines += ['<details class="group" id="failed-%d">' % f.rank,
                  "<summary>#%d %s: %s — %d dump%s</summary>" % (f.rank, esc(f.status), esc(f.error), f.dumps,
                                                                 "" if f.dumps == 1 else "s"),
                  '<table class="dumps"><thead><tr><th>Dump</th><th>sha256</th><th class="num">Seconds</th></tr>'
                  "</thead><tbody>"]
        lines += ["<tr><td><code>%s</code></td><td><code>%s</code></td><td class=\"num\">%s</td></tr>"
                  % (wrap(m.path), esc(m.sha256), "" if m.seconds is None else "%.2f" % m.seconds) for m in f.members]
        lines += ["</tbody></table>", "</details>"]
    if not_triaged:
        lines += ['<details class="group" id="not-triaged">',
                  "<summary>%d dump%s not triaged%s</summary><ul>"
                  % (len(not_triaged), "" if len(not_triaged) == 1 else "s",
                     " (the run was interrupted)" if interrupted else "")]
        lines += ["<li><code>%s</code></li>" % wrap(path) for path in not_triaged]
        lines += ["</ul>", "</details>"]
    return lines


def render_html(report: BatchReport) -> str:
    run = report.run
    state = "interrupted" if run.interrupted else ("finished %s" % utc_iso(run.finished) if run.finished
                                                   else "not finished")
    facts = [
        ("Root", "<code>%s</code>" % esc(run.root)),
        ("Run", "%d, started %s, %s" % (run.id, esc(utc_iso(run.started)) or "unknown", esc(state))),
        ("Tool", "pytriage %s, engine %s" % (esc(run.tool_version), esc(run.engine))),
        ("Dumps found", str(run.dumps_found)),
        ("Triaged in this run", "%d (%s)" % (run.dumps_triaged, TRIAGED_NOTE)),
        ("Results", "%d ok, %d failed, %d not triaged" % (run.ok, run.failed, run.not_triaged)),
    ]
    # a dump's row in its network group is the target the !analyze bucket drill-downs link to
    ids = {row.path: "dump-%d" % number
           for number, row in enumerate((m for g in report.network_groups for m in g.members), 1)}
    lines = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<meta http-equiv="Content-Security-Policy" content="%s">' % esc(content_security_policy()),
             "<title>pytriage batch report: %s</title>" % esc(run.root), "<style>%s</style>" % CSS, "</head>",
             "<body>", "<h1>pytriage batch report</h1>",
             '<nav><a href="#groups">Groups</a><a href="#failure-buckets">!analyze buckets</a>'
             '<a href="#top-culprits">Top culprits</a><a href="#failures">Failures</a></nav>',
             '<table class="facts" id="run">']
    lines += ["<tr><th>%s</th><td>%s</td></tr>" % (name, value) for name, value in facts]
    lines += ["</table>", '<h2 id="groups">Groups by network bucket</h2>',
              '<p class="muted">Dumps grouped by pytriage\'s network-aware bucket (the !analyze bucket when a dump '
              "has none), ranked by distinct dumps. Click a header to sort, a bucket to see its dumps.</p>"]
    lines += group_table(report.network_groups, "Network bucket", "network-groups")
    for group in report.network_groups:
        lines += group_details(group, ids)
    lines += ['<h2 id="failure-buckets">Groups by !analyze failure bucket</h2>']
    lines += group_table(report.failure_groups, "Failure bucket", "failure-groups")
    for group in report.failure_groups:
        lines += group_details(group, ids)
    lines += ['<h2 id="top-culprits">Top culprit drivers</h2>'] + culprit_table(report.culprits)
    lines += ['<h2 id="failures">Failures</h2>'] + failure_section(report.failures, report.not_triaged, run.interrupted)
    lines += ["<script>%s</script>" % SCRIPT, "</body>", "</html>", ""]
    return "\n".join(lines)

