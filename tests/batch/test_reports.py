"""Batch grouping and reports (results.jsonl, summary.md, report.html) from a store with known contents.

The store is filled through ``ResultStore`` with rows whose answer is known by construction: five network
groups (one holding a byte-identical copy, one with no network bucket, one with no crash time, one whose
strings are hostile HTML/Markdown), a ranking tie broken by name, a culprit blamed in two groups with two
timestamps, failed dumps of three kinds, a dump with only an older tool version's result, a dump never
triaged, and an older run whose dumps must not show. Every test asserts exact values; the Markdown is
rendered by cmark-gfm (GitHub's renderer) and the HTML parsed, so escaping is checked on the rendered
result, not by looking for backslashes. The browser half is test_report_html_browser.py.
"""

import contextlib
import copy
import hashlib
import io
import json
import os
import re
from html.parser import HTMLParser
from typing import Dict, List, Optional

import cmarkgfm
import jsonschema
import pytest
import referencing
from cmarkgfm.cmark import Options

from pytriage import __version__, cli
from pytriage.batch.groups import BatchReport, build_report, utc_iso
from pytriage.batch.report import write_reports
from pytriage.batch.report_html import content_security_policy, render_html
from pytriage.batch.report_jsonl import iter_lines
from pytriage.batch.report_markdown import md_text, render_markdown
from pytriage.batch.store import ResultStore
from pytriage.errors import PytriageError
from pytriage.scenarios import build_builtin

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = os.path.join(REPO, "docs", "schemas")
TOOL = __version__

HOSTILE = "<script>alert(1);document.title='PWNED'</script>\"'<img src=x onerror=\"window.PWNED=1\">|`x`"
HOSTILE_BUCKET = "EVIL_" + HOSTILE
HOSTILE_CULPRIT = "evil" + HOSTILE + ".sys"
HOSTILE_PATH = "evil/" + HOSTILE + "\n.dmp"
HOSTILE_REASON = "Conclusion: " + HOSTILE

NBL = "NBL_COMPLETION_STACK_CORRUPT_vwifimf.sys"
FW = "POOL_OVERRUN_contosofw.sys"
VNET = "POOL_OVERRUN_vnetflt.sys"
FB_1E = "0x1E_80000003_nwifi!Dot11SendCompletion"
FB_D1 = "0xD1_nwifi!Dot11SendCompletion"
FB_19 = "0x19_20_nt!ExFreePoolWithTag"
FB_7E = "0x7E_nt!KiPageFault"
KMODE = ("0x1E", "KMODE_EXCEPTION_NOT_HANDLED")
IRQL = ("0xD1", "DRIVER_IRQL_NOT_LESS_OR_EQUAL")
POOL = ("0x19", "BAD_POOL_HEADER")
THREAD = ("0x7E", "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED")
SERVICE = ("0x3B", "SYSTEM_SERVICE_EXCEPTION")
TRUNCATED = "dump is truncated: the bitmap claims 512 pages, the file holds 3: at offset 0x3000"
TIMEOUT = "no result after 30 s, worker killed"
CRASHED = "worker exited with signal 11 (SIGSEGV)"

# (rel_path, content, result) -- result None: the file has no result for this tool version.
# ok result: (dump_time, bugcheck, failure bucket, network bucket, culprit, timestamp, confidence, seconds)
OK_DUMPS = [
    ("a/dump-01.dmp", "a1", (1710000000, KMODE, FB_1E, NBL, "vwifimf.sys", "0x5ef172b2", "medium", 1.5)),
    ("a/dump-02.dmp", "a2", (1711000000, KMODE, FB_1E, NBL, "vwifimf.sys", "0x5ef172b2", "medium", 2.25)),
    ("a/dump-03.dmp", "a3", (1712000000, IRQL, FB_D1, NBL, "vwifimf.sys", "0x60000000", "high", 0.75)),
    ("a/dump-04.dmp", "a4", (1710500000, KMODE, FB_1E, NBL, "vwifimf.sys", "0x5ef172b2", "medium", 1.0)),
    ("nested/deep/dup-of-01.dmp", "a1", None),          # same bytes as a/dump-01.dmp: one dump, two files
    ("b/x.dmp", "b1", (1705000000, POOL, FB_19, FW, "contosofw.sys", "0x5a000000", "high", 3.0)),
    ("b/y", "b2", (1706000000, POOL, FB_19, FW, "contosofw.sys", "0x5a000000", "high", 2.0)),
    ("c/one.dmp", "c1", (1707000000, POOL, FB_19, VNET, "vnetflt.sys", "0x5b000000", "low", 1.25)),
    ("c/two.dmp", "c2", (1708000000, POOL, FB_19, VNET, "vwifimf.sys", "0x5ef172b2", "medium", 1.75)),
    ("d.dmp", "d1", (None, THREAD, FB_7E, None, None, None, None, 0.5)),
    (HOSTILE_PATH, "e1", (1600000000, SERVICE, HOSTILE_BUCKET, None, HOSTILE_CULPRIT, "0x11111111", "high", 0.25)),
]
FAILED_DUMPS = [
    ("bad/trunc-1.dmp", "f1", "error", TRUNCATED, 0.01),
    ("bad/trunc-2.dmp", "f2", "error", TRUNCATED, 0.02),
    ("hang.dmp", "f3", "timeout", TIMEOUT, 30.0),
    ("boom.dmp", "f4", "crashed", CRASHED, 4.0),
]
ROOT = "/srv/dumps"
STARTED, FINISHED = 1717000000.0, 1717000123.5


def sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def make_record(template: dict, dump_time, bugcheck, failure_bucket, network_bucket, culprit, timestamp,
                confidence, reasoning: List[str]) -> dict:
    record = copy.deepcopy(template)
    record["dump"]["crash_time"] = dump_time
    record["bugcheck"]["code"], record["bugcheck"]["name"] = bugcheck
    record["buckets"]["failure_bucket_id"] = failure_bucket
    record["buckets"]["network_bucket_id"] = network_bucket or "UNKNOWN_unknown"
    if culprit is None:
        record["culprit"] = None
    else:
        record["culprit"].update(binary=culprit, timestamp=timestamp, confidence=confidence)
    record["reasoning"] = reasoning
    return record


def fill_store(path: str, template: dict) -> Dict[str, object]:
    """The store described at the top of this file; returns the run id and the records by content key."""
    store = ResultStore(path)
    old_run = store.start_run("/srv/old", TOOL, "offline", 1)
    store.record_file("/srv/old/gone.dmp", "gone.dmp", 10, 1, sha("g1"), old_run)
    gone = make_record(template, 1500000000, KMODE, "0x1E_gone", "GONE_gone.sys", "gone.sys", "0x22222222",
                       "high", ["Bugcheck.", "Conclusion: gone.sys."])
    store.put_result(sha("g1"), TOOL, _ok_result(1500000000, KMODE, "0x1E_gone", "GONE_gone.sys", "gone.sys",
                                                 "0x22222222", "high", 1.0, gone), old_run)
    run = store.start_run(ROOT, TOOL, "offline", 17)
    records = {}
    for rel_path, content, ok in OK_DUMPS:
        store.record_file(os.path.join(ROOT, rel_path), rel_path, 4096, 7, sha(content), run)
        if ok is None:
            continue
        dump_time, bugcheck, fb, nb, culprit, timestamp, confidence, seconds = ok
        reasoning = ["Bugcheck %s %s." % bugcheck, HOSTILE_REASON if culprit == HOSTILE_CULPRIT
                     else "Conclusion: %s, bucket %s." % (culprit, nb or fb)]
        record = make_record(template, dump_time, bugcheck, fb, nb, culprit, timestamp, confidence, reasoning)
        records[content] = record
        store.put_result(sha(content), TOOL, _ok_result(dump_time, bugcheck, fb, nb, culprit, timestamp, confidence,
                                                        seconds, record), run)
    for rel_path, content, status, error, seconds in FAILED_DUMPS:
        store.record_file(os.path.join(ROOT, rel_path), rel_path, 4096, 7, sha(content), run)
        store.put_result(sha(content), TOOL, {"status": status, "error": error, "seconds": seconds,
                                              "triaged_at": STARTED, "engine": "offline"}, run)
    # one dump triaged only by an older pytriage, one not triaged at all (the run was stopped)
    store.record_file(os.path.join(ROOT, "late/old-version.dmp"), "late/old-version.dmp", 4096, 7, sha("n1"), run)
    store.put_result(sha("n1"), "0.0.1", {"status": "ok", "seconds": 1.0, "engine": "offline"})
    store.record_file(os.path.join(ROOT, "late/unfinished.dmp"), "late/unfinished.dmp", 4096, 7, sha("n2"), run)
    store.conn.execute("UPDATE runs SET started = ?, finished = ?, interrupted = 1 WHERE id = ?",
                       (STARTED, FINISHED, run))
    return {"store": store, "run": run, "records": records}


def _ok_result(dump_time, bugcheck, fb, nb, culprit, timestamp, confidence, seconds, record) -> dict:
    return {"status": "ok", "seconds": seconds, "triaged_at": STARTED, "engine": "offline", "dump_time": dump_time,
            "bugcheck_code": bugcheck[0], "bugcheck_name": bugcheck[1], "failure_bucket": fb, "network_bucket": nb,
            "culprit": culprit, "culprit_class": None if culprit is None else "third-party",
            "culprit_confidence": confidence, "culprit_timestamp": timestamp,
            "culprit_role": None, "record": json.dumps(record)}


@pytest.fixture(scope="module")
def record_template(tmp_path_factory):
    """A real pytriage.analyze/1 record (nwifi-completion), the template of every stored record."""
    built = build_builtin("nwifi-completion", str(tmp_path_factory.mktemp("nwifi")), "bitmap")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["analyze", built.dump_path, "--json", "--symbols", built.symstore_path]) == 0
    return json.loads(buffer.getvalue())


@pytest.fixture(scope="module")
def filled(tmp_path_factory, record_template):
    data = fill_store(str(tmp_path_factory.mktemp("store") / "results.sqlite"), record_template)
    yield data
    data["store"].close()


@pytest.fixture(scope="module")
def report(filled) -> BatchReport:
    return build_report(filled["store"], filled["run"])


def group_summary(groups):
    return [(g.rank, g.bucket, g.dumps, utc_iso(g.first_seen), utc_iso(g.last_seen), g.example,
             [(b.code, b.name, b.dumps) for b in g.bugchecks],
             [(c.binary, c.dumps, c.timestamps) for c in g.culprits], g.confidence,
             [m.path for m in g.members]) for g in groups]


NETWORK_GROUPS = [
    (1, NBL, 4, "2024-03-09T16:00:00Z", "2024-04-01T19:33:20Z", "a/dump-01.dmp",
     [("0x1E", "KMODE_EXCEPTION_NOT_HANDLED", 3), ("0xD1", "DRIVER_IRQL_NOT_LESS_OR_EQUAL", 1)],
     [("vwifimf.sys", 4, [("0x5ef172b2", 3), ("0x60000000", 1)])], [("high", 1), ("medium", 3)],
     ["a/dump-01.dmp", "a/dump-02.dmp", "a/dump-03.dmp", "a/dump-04.dmp", "nested/deep/dup-of-01.dmp"]),
    (2, FW, 2, "2024-01-11T19:06:40Z", "2024-01-23T08:53:20Z", "b/x.dmp", [("0x19", "BAD_POOL_HEADER", 2)],
     [("contosofw.sys", 2, [("0x5a000000", 2)])], [("high", 2)], ["b/x.dmp", "b/y"]),
    (3, VNET, 2, "2024-02-03T22:40:00Z", "2024-02-15T12:26:40Z", "c/one.dmp", [("0x19", "BAD_POOL_HEADER", 2)],
     [("vnetflt.sys", 1, [("0x5b000000", 1)]), ("vwifimf.sys", 1, [("0x5ef172b2", 1)])],
     [("medium", 1), ("low", 1)], ["c/one.dmp", "c/two.dmp"]),
    (4, FB_7E, 1, "", "", "d.dmp", [("0x7E", "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", 1)], [], [("none", 1)],
     ["d.dmp"]),
    (5, HOSTILE_BUCKET, 1, "2020-09-13T12:26:40Z", "2020-09-13T12:26:40Z", HOSTILE_PATH,
     [("0x3B", "SYSTEM_SERVICE_EXCEPTION", 1)], [(HOSTILE_CULPRIT, 1, [("0x11111111", 1)])], [("high", 1)],
     [HOSTILE_PATH]),
]
FAILURE_GROUPS = [
    (1, FB_19, 4, "2024-01-11T19:06:40Z", "2024-02-15T12:26:40Z", "b/x.dmp", [("0x19", "BAD_POOL_HEADER", 4)],
     [("contosofw.sys", 2, [("0x5a000000", 2)]), ("vnetflt.sys", 1, [("0x5b000000", 1)]),
      ("vwifimf.sys", 1, [("0x5ef172b2", 1)])], [("high", 2), ("medium", 1), ("low", 1)],
     ["b/x.dmp", "b/y", "c/one.dmp", "c/two.dmp"]),
    (2, FB_1E, 3, "2024-03-09T16:00:00Z", "2024-03-21T05:46:40Z", "a/dump-01.dmp",
     [("0x1E", "KMODE_EXCEPTION_NOT_HANDLED", 3)], [("vwifimf.sys", 3, [("0x5ef172b2", 3)])], [("medium", 3)],
     ["a/dump-01.dmp", "a/dump-02.dmp", "a/dump-04.dmp", "nested/deep/dup-of-01.dmp"]),
    (3, FB_7E, 1, "", "", "d.dmp", [("0x7E", "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", 1)], [], [("none", 1)],
     ["d.dmp"]),
    (4, FB_D1, 1, "2024-04-01T19:33:20Z", "2024-04-01T19:33:20Z", "a/dump-03.dmp",
     [("0xD1", "DRIVER_IRQL_NOT_LESS_OR_EQUAL", 1)], [("vwifimf.sys", 1, [("0x60000000", 1)])], [("high", 1)],
     ["a/dump-03.dmp"]),
    (5, HOSTILE_BUCKET, 1, "2020-09-13T12:26:40Z", "2020-09-13T12:26:40Z", HOSTILE_PATH,
     [("0x3B", "SYSTEM_SERVICE_EXCEPTION", 1)], [(HOSTILE_CULPRIT, 1, [("0x11111111", 1)])], [("high", 1)],
     [HOSTILE_PATH]),
]
CULPRITS = [("vwifimf.sys", 5, 2, [("0x5ef172b2", 4), ("0x60000000", 1)]),
            ("contosofw.sys", 2, 1, [("0x5a000000", 2)]),
            (HOSTILE_CULPRIT, 1, 1, [("0x11111111", 1)]),
            ("vnetflt.sys", 1, 1, [("0x5b000000", 1)])]
FAILURES = [(1, "error", TRUNCATED, 2, "bad/trunc-1.dmp", ["bad/trunc-1.dmp", "bad/trunc-2.dmp"]),
            (2, "crashed", CRASHED, 1, "boom.dmp", ["boom.dmp"]),
            (3, "timeout", TIMEOUT, 1, "hang.dmp", ["hang.dmp"])]


# -- grouping ----------------------------------------------------------------------------------------------------

def test_network_groups_count_distinct_dumps_and_rank_by_count_then_name(report):
    assert group_summary(report.network_groups) == NETWORK_GROUPS


def test_failure_bucket_groups(report):
    assert group_summary(report.failure_groups) == FAILURE_GROUPS


def test_top_culprits_failures_and_run_facts(report):
    assert [(c.binary, c.dumps, c.groups, c.timestamps) for c in report.culprits] == CULPRITS
    assert [(f.rank, f.status, f.error, f.dumps, f.example, [m.path for m in f.members])
            for f in report.failures] == FAILURES
    assert report.not_triaged == ["late/old-version.dmp", "late/unfinished.dmp"]
    run = report.run
    assert (run.root, run.tool_version, run.engine, run.started, run.finished, run.interrupted) == (
        ROOT, TOOL, "offline", STARTED, FINISHED, True)
    # 14 results put in this run (the copy shares its original's row); 11 files ok, 4 failed, 2 without result
    assert (run.dumps_found, run.dumps_triaged, run.ok, run.failed, run.not_triaged) == (17, 14, 11, 4, 2)


def test_members_carry_the_records_reasoning(report):
    hostile = report.network_groups[4].members[0]
    assert (hostile.culprit, hostile.confidence, hostile.seconds) == (HOSTILE_CULPRIT, "high", 0.25)
    assert hostile.reasoning == ["Bugcheck 0x3B SYSTEM_SERVICE_EXCEPTION.", HOSTILE_REASON]
    assert report.network_groups[3].members[0].reasoning == [
        "Bugcheck 0x7E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED.", "Conclusion: None, bucket 0x7E_nt!KiPageFault."]


def test_unknown_run_is_a_one_line_error(filled):
    with pytest.raises(PytriageError, match=r"^no batch run 99 in the result store$"):
        build_report(filled["store"], 99)


def test_a_run_without_results_reports_so(tmp_path):
    store = ResultStore(str(tmp_path / "r.sqlite"))
    run = store.start_run("/empty", TOOL, "offline", 0)
    paths = write_reports(store, run, str(tmp_path / "out"))
    with open(paths["jsonl"], encoding="utf-8") as fh:
        assert fh.read() == ""
    with open(paths["markdown"], encoding="utf-8") as fh:
        markdown = fh.read()
    assert markdown.count("No dump was triaged.") == 2
    assert "No driver was blamed." in markdown and "Every dump was triaged." in markdown
    with open(paths["html"], encoding="utf-8") as fh:
        assert fh.read().count('<p class="muted">No dump was triaged.</p>') == 2
    store.close()


# -- JSON lines ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch_validator():
    resources = []
    for name in ("pytriage.analyze-1.schema.json", "pytriage.batch-1.schema.json"):
        with open(os.path.join(SCHEMAS, name), encoding="utf-8") as fh:
            doc = json.load(fh)
        jsonschema.Draft202012Validator.check_schema(doc)
        resources.append((doc["$id"], referencing.Resource.from_contents(doc)))
    registry = referencing.Registry().with_resources(resources)
    return jsonschema.Draft202012Validator(resources[1][1].contents, registry=registry)


def test_jsonl_one_valid_line_per_dump_file(filled, tmp_path, batch_validator):
    paths = write_reports(filled["store"], filled["run"], str(tmp_path))
    assert paths == {"jsonl": str(tmp_path / "results.jsonl"), "markdown": str(tmp_path / "summary.md"),
                     "html": str(tmp_path / "report.html")}
    assert sorted(os.listdir(tmp_path)) == ["report.html", "results.jsonl", "summary.md"]   # no temp file left
    with open(paths["jsonl"], encoding="utf-8") as fh:
        text = fh.read()
    assert text.isascii() and text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        batch_validator.validate(line)
    by_path = {line["batch"]["path"]: line for line in lines}
    expected_paths = sorted([p for p, _, _ in OK_DUMPS] + [p for p, *_ in FAILED_DUMPS])
    assert [line["batch"]["path"] for line in lines] == expected_paths
    assert len(lines) == 15
    contents = {p: c for p, c, _ in OK_DUMPS}
    seconds = {p: ok[7] for p, _, ok in OK_DUMPS if ok}
    seconds["nested/deep/dup-of-01.dmp"] = seconds["a/dump-01.dmp"]
    for rel_path, content in contents.items():
        line = by_path[rel_path]
        assert line["batch"] == {"path": rel_path, "sha256": sha(content), "status": "ok",
                                 "seconds": seconds[rel_path], "engine": "offline", "tool_version": TOOL}
        expected = copy.deepcopy(filled["records"][content])
        expected["dump"]["path"] = rel_path
        assert {k: v for k, v in line.items() if k != "batch"} == expected
        assert list(line)[:3] == ["schema", "version", "batch"]
    for rel_path, content, status, error, secs in FAILED_DUMPS:
        assert by_path[rel_path] == {"schema": "pytriage.batch-error/1", "error": error, "batch": {
            "path": rel_path, "sha256": sha(content), "status": status, "seconds": secs, "engine": "offline",
            "tool_version": TOOL}}


def test_jsonl_schema_rejects_what_it_must(filled, batch_validator):
    lines = list(iter_lines(filled["store"], filled["run"]))
    ok = next(line for line in lines if line["batch"]["status"] == "ok")
    failed = next(line for line in lines if line["batch"]["status"] == "timeout")
    bad = [dict(ok, batch=dict(ok["batch"], status="error")),              # a record can only be "ok"
           dict(ok, batch=dict(ok["batch"], sha256="xyz")),
           {k: v for k, v in ok.items() if k != "batch"},
           dict(failed, batch=dict(failed["batch"], status="ok")),         # an error line is never "ok"
           dict(failed, error=""),
           dict(failed, extra=1)]
    for line in bad:
        assert not batch_validator.is_valid(line), line


def test_jsonl_unreadable_stored_record_becomes_an_error_line(tmp_path, batch_validator):
    store = ResultStore(str(tmp_path / "r.sqlite"))
    run = store.start_run("/r", TOOL, "offline", 1)
    store.record_file("/r/x.dmp", "x.dmp", 1, 1, sha("x"), run)
    store.put_result(sha("x"), TOOL, {"status": "ok", "seconds": 1.0, "engine": "offline", "record": "{trunc"}, run)
    (line,) = list(iter_lines(store, run))
    batch_validator.validate(line)
    assert line["batch"]["status"] == "error"
    assert line["error"].startswith("stored record is not JSON: Expecting property name enclosed in double quotes")
    store.close()


# -- Markdown -----------------------------------------------------------------------------------------------------

class TableReader(HTMLParser):
    """Tables of an HTML page as lists of rows of cell texts; ``elements`` counts every start tag seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: List[List[List[str]]] = []
        self.table_ids: List[Optional[str]] = []
        self.elements: Dict[str, int] = {}
        self._cell: Optional[List[str]] = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        self.elements[tag] = self.elements.get(tag, 0) + 1
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self.tables.append([])
                self.table_ids.append(dict(attrs).get("id"))
        elif tag == "tr" and self._depth == 1:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self._depth == 1:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag):
        if tag == "table":
            self._depth -= 1
        elif tag in ("td", "th") and self._depth == 1 and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read_tables(html_text: str) -> TableReader:
    reader = TableReader()
    reader.feed(html_text)
    reader.close()
    return reader


def test_md_text_escapes_what_markdown_would_interpret():
    assert md_text(NBL) == NBL                                  # identifiers stay readable
    assert md_text("a|b`c\r\nd") == "a\\|b\\`c d"
    assert md_text("<b>&amp;</b> [x](y) *e* _u_ ~s~ \\") == \
        "\\<b\\>\\&amp;\\</b\\> \\[x\\](y) \\*e\\* \\_u\\_ \\~s\\~ \\\\"
    assert md_text(None) == ""


def markdown_as_html(report: BatchReport) -> TableReader:
    # CMARK_OPT_UNSAFE keeps raw HTML: an escape that failed would show up as an element, not as text
    html_text = cmarkgfm.github_flavored_markdown_to_html(render_markdown(report), options=Options.CMARK_OPT_UNSAFE)
    return read_tables(html_text)


def test_markdown_tables_as_github_renders_them(report):
    reader = markdown_as_html(report)
    assert "script" not in reader.elements and "img" not in reader.elements
    facts, network, failure, culprits, failures = reader.tables
    assert facts == [["Run", ""], ["Root", ROOT],
                     ["Run", "%d, started 2024-05-29T16:26:40Z, interrupted" % report.run.id],
                     ["Tool", "pytriage %s, engine offline" % TOOL], ["Dumps found", "17"],
                     ["Triaged in this run", "14 (a file whose content already has a result is not triaged again)"],
                     ["Results", "11 ok, 4 failed, 2 not triaged"]]
    header = ["#", "Network bucket", "Dumps", "First seen (UTC)", "Last seen (UTC)", "Bugcheck", "Top culprits",
              "Confidence", "Example dump"]
    hostile_path = HOSTILE_PATH.replace("\n", " ")
    assert network == [header,
                       ["1", NBL, "4", "2024-03-09T16:00:00Z", "2024-04-01T19:33:20Z",
                        "0x1E KMODE_EXCEPTION_NOT_HANDLED (3), 0xD1 DRIVER_IRQL_NOT_LESS_OR_EQUAL (1)",
                        "vwifimf.sys (4)", "high 1, medium 3", "a/dump-01.dmp"],
                       ["2", FW, "2", "2024-01-11T19:06:40Z", "2024-01-23T08:53:20Z", "0x19 BAD_POOL_HEADER (2)",
                        "contosofw.sys (2)", "high 2", "b/x.dmp"],
                       ["3", VNET, "2", "2024-02-03T22:40:00Z", "2024-02-15T12:26:40Z", "0x19 BAD_POOL_HEADER (2)",
                        "vnetflt.sys (1), vwifimf.sys (1)", "medium 1, low 1", "c/one.dmp"],
                       ["4", FB_7E, "1", "unknown", "unknown", "0x7E SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (1)",
                        "none found", "none 1", "d.dmp"],
                       ["5", HOSTILE_BUCKET, "1", "2020-09-13T12:26:40Z", "2020-09-13T12:26:40Z",
                        "0x3B SYSTEM_SERVICE_EXCEPTION (1)", HOSTILE_CULPRIT + " (1)", "high 1", hostile_path]]
    assert [row[:3] + row[6:7] for row in failure[1:]] == [
        ["1", FB_19, "4", "contosofw.sys (2), vnetflt.sys (1), vwifimf.sys (1)"],
        ["2", FB_1E, "3", "vwifimf.sys (3)"], ["3", FB_7E, "1", "none found"], ["4", FB_D1, "1", "vwifimf.sys (1)"],
        ["5", HOSTILE_BUCKET, "1", HOSTILE_CULPRIT + " (1)"]]
    assert culprits == [["#", "Driver", "Timestamps (link date) × dumps", "Dumps", "Groups"],
                        ["1", "vwifimf.sys", "0x5ef172b2 (2020-06-23) × 4; 0x60000000 (2021-01-14) × 1", "5", "2"],
                        ["2", "contosofw.sys", "0x5a000000 (2017-11-06) × 2", "2", "1"],
                        ["3", HOSTILE_CULPRIT, "0x11111111 (1979-01-28) × 1", "1", "1"],
                        ["4", "vnetflt.sys", "0x5b000000 (2018-05-19) × 1", "1", "1"]]
    assert failures == [["#", "Status", "Error", "Dumps", "Example dump"],
                        ["1", "error", TRUNCATED, "2", "bad/trunc-1.dmp"], ["2", "crashed", CRASHED, "1", "boom.dmp"],
                        ["3", "timeout", TIMEOUT, "1", "hang.dmp"]]


def test_markdown_says_which_dumps_have_no_result(report):
    assert render_markdown(report).splitlines()[-1] == (
        "2 dump(s) of this run have no result (the run was interrupted): first late/old-version.dmp.")


# -- HTML (static; the browser checks are in test_report_html_browser.py) -------------------------------------------

def test_html_tables_and_escaping(report):
    html_text = render_html(report)
    assert HOSTILE not in html_text and "<script>alert" not in html_text
    assert html_text.count("<script>") == 1 and "<img" not in html_text
    reader = read_tables(html_text)
    assert "img" not in reader.elements and reader.elements["script"] == 1
    tables = dict(zip(reader.table_ids, reader.tables))
    network = tables["network-groups"]
    assert network[0] == ["#", "Network bucket", "Dumps", "First seen (UTC)", "Last seen (UTC)", "Bugcheck",
                          "Top culprits", "Confidence", "Example dump"]
    assert [row[:5] + row[7:] for row in network[1:]] == [
        ["1", NBL, "4", "2024-03-09T16:00:00Z", "2024-04-01T19:33:20Z", "high 1, medium 3", "a/dump-01.dmp"],
        ["2", FW, "2", "2024-01-11T19:06:40Z", "2024-01-23T08:53:20Z", "high 2", "b/x.dmp"],
        ["3", VNET, "2", "2024-02-03T22:40:00Z", "2024-02-15T12:26:40Z", "medium 1, low 1", "c/one.dmp"],
        ["4", FB_7E, "1", "unknown", "unknown", "none 1", "d.dmp"],
        ["5", HOSTILE_BUCKET, "1", "2020-09-13T12:26:40Z", "2020-09-13T12:26:40Z", "high 1", HOSTILE_PATH]]
    assert [row[5:7] for row in network[1:4]] == [
        ["0x1E KMODE_EXCEPTION_NOT_HANDLED (3)\n0xD1 DRIVER_IRQL_NOT_LESS_OR_EQUAL (1)", "vwifimf.sys (4)"],
        ["0x19 BAD_POOL_HEADER (2)", "contosofw.sys (2)"], ["0x19 BAD_POOL_HEADER (2)",
                                                           "vnetflt.sys (1)\nvwifimf.sys (1)"]]
    assert [row[1:3] for row in tables["failure-groups"][1:]] == [
        [FB_19, "4"], [FB_1E, "3"], [FB_7E, "1"], [FB_D1, "1"], [HOSTILE_BUCKET, "1"]]
    assert tables["culprits"][1:] == [
        ["1", "vwifimf.sys", "0x5ef172b2 (2020-06-23) × 4\n0x60000000 (2021-01-14) × 1", "5", "2"],
        ["2", "contosofw.sys", "0x5a000000 (2017-11-06) × 2", "2", "1"],
        ["3", HOSTILE_CULPRIT, "0x11111111 (1979-01-28) × 1", "1", "1"],
        ["4", "vnetflt.sys", "0x5b000000 (2018-05-19) × 1", "1", "1"]]
    assert tables["failures"][1:] == [["1", "error", TRUNCATED, "2", "bad/trunc-1.dmp"],
                                      ["2", "crashed", CRASHED, "1", "boom.dmp"],
                                      ["3", "timeout", TIMEOUT, "1", "hang.dmp"]]
    # drill-down of group 1: its five files, the copy included, each with its culprit and failure bucket
    drill = [t for i, t in zip(reader.table_ids, reader.tables) if i is None]
    dumps_tables = [t for t in drill if t[0][:1] == ["Dump"] and t[0][5:6] == ["Failure bucket"]]
    first = [row for row in dumps_tables[0][1:] if len(row) == 7]
    assert [(r[0], r[3], r[4], r[5], r[6]) for r in first] == [
        ("a/dump-01.dmp", "vwifimf.sys 0x5ef172b2", "medium", FB_1E, "1.50"),
        ("a/dump-02.dmp", "vwifimf.sys 0x5ef172b2", "medium", FB_1E, "2.25"),
        ("a/dump-03.dmp", "vwifimf.sys 0x60000000", "high", FB_D1, "0.75"),
        ("a/dump-04.dmp", "vwifimf.sys 0x5ef172b2", "medium", FB_1E, "1.00"),
        ("nested/deep/dup-of-01.dmp", "vwifimf.sys 0x5ef172b2", "medium", FB_1E, "1.50")]
    assert [row[0] for row in dumps_tables[0][1:] if len(row) == 1][0].endswith(
        "Conclusion: vwifimf.sys, bucket NBL_COMPLETION_STACK_CORRUPT_vwifimf.sys.")


def test_html_content_security_policy_pins_the_page_script_and_style(report):
    html_text = render_html(report)
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html_text).group(1)
    assert policy == content_security_policy().replace("'", "&#x27;")
    assert re.fullmatch(r"default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]{43}='; script-src "
                        r"'sha256-[A-Za-z0-9+/]{43}='; img-src 'none'; base-uri 'none'; form-action 'none'",
                        content_security_policy())
    reader = read_tables(html_text)
    # nothing to fetch: no external resource can be named, so none is (the policy would block it anyway)
    assert not {"img", "link", "iframe", "object", "embed", "base", "form"} & set(reader.elements)
    assert "http:" not in html_text and "https:" not in html_text
