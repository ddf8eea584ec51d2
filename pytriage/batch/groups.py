"""Grouping of one batch run: the ranked list of root causes is a query on the result store.

A support team does not read hundreds of triage records; it reads "27 dumps, one bucket, one driver,
since March". So the reports are built from SQL aggregates over ``files JOIN results`` for one run
(``files.last_run`` = the run, ``results.tool_version`` = the run's tool version): groups by our
network-aware bucket (the ``!analyze`` failure bucket where a dump has none) and, separately, by the
``!analyze`` failure bucket alone. Counts are of distinct dumps (content hash): the same file copied
into two folders is one crash, listed under both paths. Dumps whose triage failed (error, timeout,
crashed worker) are grouped apart by status and error text and never mixed into the buckets.

Everything here returns plain dataclasses; the renderers (report_markdown, report_html) turn them
into text without touching the database, so they can be tested on data alone.
"""

import datetime
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pytriage.errors import PytriageError

NETWORK = "network"
FAILURE = "failure"
NO_BUCKET = "(no bucket)"
CONFIDENCE_ORDER = ("high", "medium", "low", "none")
TRIAGED_NOTE = "a file whose content already has a result is not triaged again"

# One run's rows: every file the run saw, with its result for the run's tool version. ``run_rows`` is
# the only place that knows how a run's dumps are found; every aggregate below reads it.
_RUN_ROWS = """
WITH run_rows AS (
    SELECT f.rel_path AS rel_path, f.path AS path, r.sha256 AS sha256, r.status AS status, r.error AS error,
           r.seconds AS seconds, r.engine AS engine, r.dump_time AS dump_time,
           r.bugcheck_code AS bugcheck_code, r.bugcheck_name AS bugcheck_name,
           r.failure_bucket AS failure_bucket, r.network_bucket AS network_bucket,
           COALESCE(r.network_bucket, r.failure_bucket, '%s') AS network_key,
           COALESCE(r.failure_bucket, '%s') AS failure_key,
           r.culprit AS culprit, r.culprit_class AS culprit_class,
           COALESCE(r.culprit_confidence, 'none') AS confidence,
           r.culprit_timestamp AS culprit_timestamp, r.culprit_role AS culprit_role
    FROM files f JOIN results r ON r.sha256 = f.sha256 AND r.tool_version = :tool_version
    WHERE f.last_run = :run_id
)
""" % (NO_BUCKET, NO_BUCKET)
_KEY = {NETWORK: "network_key", FAILURE: "failure_key"}


@dataclass
class RunFacts:
    """The ``runs`` row plus what the run's rows say (ok / failed / not triaged)."""
    id: int
    root: str
    tool_version: str
    engine: str
    started: Optional[float]
    finished: Optional[float]
    interrupted: bool
    dumps_found: int
    dumps_triaged: int     # triaged by this run (TRIAGED_NOTE)
    ok: int = 0            # files of the run with a result, by status
    failed: int = 0
    not_triaged: int = 0   # files of the run without a result for its tool version (an interrupted run)


@dataclass
class CulpritCount:
    """A driver blamed for ``dumps`` distinct dumps, with each PE timestamp it had and how many dumps each."""
    binary: str
    dumps: int
    timestamps: List[Tuple[Optional[str], int]]
    groups: int = 0        # in how many network groups (overall table only)


@dataclass
class BugcheckCount:
    code: Optional[str]
    name: Optional[str]
    dumps: int


@dataclass
class DumpRow:
    """One file of the run with its result; ``reasoning`` is the record's chain, conclusion last."""
    path: str              # relative to the run's root
    sha256: str
    status: str
    error: Optional[str]
    seconds: Optional[float]
    dump_time: Optional[float]
    bugcheck_code: Optional[str]
    bugcheck_name: Optional[str]
    failure_bucket: Optional[str]
    network_bucket: Optional[str]
    culprit: Optional[str]
    culprit_class: Optional[str]
    confidence: str        # high, medium, low or none
    culprit_timestamp: Optional[str]
    reasoning: List[str] = field(default_factory=list)


@dataclass
class Group:
    """Dumps sharing a bucket. ``kind`` is NETWORK (network bucket, else !analyze) or FAILURE (!analyze)."""
    kind: str
    rank: int
    bucket: str
    dumps: int
    first_seen: Optional[float]
    last_seen: Optional[float]
    example: str
    bugchecks: List[BugcheckCount]
    culprits: List[CulpritCount]
    confidence: List[Tuple[str, int]]
    members: List[DumpRow] = field(default_factory=list)


@dataclass
class FailureGroup:
    """Dumps whose triage did not finish, grouped by status (error, timeout, crashed) and error text."""
    rank: int
    status: str
    error: str
    dumps: int
    example: str
    members: List[DumpRow] = field(default_factory=list)


@dataclass
class BatchReport:
    run: RunFacts
    network_groups: List[Group]
    failure_groups: List[Group]
    culprits: List[CulpritCount]
    failures: List[FailureGroup]
    not_triaged: List[str]       # rel_paths of files without a result (interrupted run)


def connection_of(store: Any) -> sqlite3.Connection:
    """The sqlite3 connection behind a ResultStore (its ``conn``), or the connection itself."""
    return store if isinstance(store, sqlite3.Connection) else store.conn


def utc_iso(epoch: Optional[float]) -> str:
    """``2021-02-21T01:38:22Z`` (UTC, whole seconds), or empty when unknown."""
    if epoch is None:
        return ""
    try:
        when = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return ""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pe_date(timestamp: Optional[str]) -> str:
    """A PE TimeDateStamp (``0x5ef172b2``) as its UTC date ``2020-06-23``; empty when absent or not hex."""
    try:
        return utc_iso(int(timestamp, 16))[:10] if timestamp else ""
    except ValueError:
        return ""


def load_run(conn: sqlite3.Connection, run_id: int) -> RunFacts:
    row = conn.execute("SELECT id, root, tool_version, engine, started, finished, interrupted, dumps_found,"
                       " dumps_triaged FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise PytriageError("no batch run %d in the result store" % run_id)
    facts = RunFacts(id=row[0], root=row[1] or "", tool_version=row[2] or "", engine=row[3] or "",
                     started=row[4], finished=row[5], interrupted=bool(row[6]), dumps_found=row[7] or 0,
                     dumps_triaged=row[8] or 0)
    params = {"run_id": run_id, "tool_version": facts.tool_version}
    for status, count in conn.execute(_RUN_ROWS + "SELECT status = 'ok', COUNT(*) FROM run_rows GROUP BY 1",
                                      params):
        if status:
            facts.ok = count
        else:
            facts.failed = count
    return facts


def _params(run: RunFacts) -> Dict[str, Any]:
    return {"run_id": run.id, "tool_version": run.tool_version}


def _culprit_counts(conn: sqlite3.Connection, run: RunFacts, key: Optional[str]) -> Dict[Any, List[CulpritCount]]:
    """Culprits per group key (or overall when ``key`` is None), ranked by dumps desc then binary."""
    group_by = "%s, " % key if key else ""
    select = "%s AS k, " % key if key else "NULL AS k, "
    counts: Dict[Any, Dict[str, CulpritCount]] = {}
    sql = (_RUN_ROWS + "SELECT " + select + "culprit, COUNT(DISTINCT sha256), COUNT(DISTINCT network_key)"
           " FROM run_rows WHERE status = 'ok' AND culprit IS NOT NULL GROUP BY " + group_by + "culprit")
    for k, binary, dumps, groups in conn.execute(sql, _params(run)):
        counts.setdefault(k, {})[binary] = CulpritCount(binary, dumps, [], groups)
    sql = (_RUN_ROWS + "SELECT " + select + "culprit, culprit_timestamp, COUNT(DISTINCT sha256) FROM run_rows"
           " WHERE status = 'ok' AND culprit IS NOT NULL GROUP BY " + group_by + "culprit, culprit_timestamp")
    for k, binary, timestamp, dumps in conn.execute(sql, _params(run)):
        counts[k][binary].timestamps.append((timestamp, dumps))
    ranked: Dict[Any, List[CulpritCount]] = {}
    for k, by_binary in counts.items():
        for culprit in by_binary.values():
            culprit.timestamps.sort(key=lambda item: (-item[1], item[0] or ""))
        ranked[k] = sorted(by_binary.values(), key=lambda c: (-c.dumps, c.binary))
    return ranked


def _groups(conn: sqlite3.Connection, run: RunFacts, kind: str) -> List[Group]:
    key = _KEY[kind]
    params = _params(run)
    bugchecks: Dict[str, List[BugcheckCount]] = {}
    sql = (_RUN_ROWS + "SELECT %s, bugcheck_code, bugcheck_name, COUNT(DISTINCT sha256) AS n FROM run_rows"
           " WHERE status = 'ok' GROUP BY 1, 2, 3 ORDER BY 1, n DESC, 2, 3" % key)
    for k, code, name, dumps in conn.execute(sql, params):
        bugchecks.setdefault(k, []).append(BugcheckCount(code, name, dumps))
    confidence: Dict[str, Dict[str, int]] = {}
    sql = (_RUN_ROWS + "SELECT %s, confidence, COUNT(DISTINCT sha256) FROM run_rows WHERE status = 'ok'"
           " GROUP BY 1, 2" % key)
    for k, level, dumps in conn.execute(sql, params):
        confidence.setdefault(k, {})[level] = dumps
    culprits = _culprit_counts(conn, run, key)
    sql = (_RUN_ROWS + "SELECT %s AS k, COUNT(DISTINCT sha256) AS n, MIN(dump_time), MAX(dump_time),"
           " MIN(rel_path) FROM run_rows WHERE status = 'ok' GROUP BY k ORDER BY n DESC, k" % key)
    groups = []
    for rank, (k, dumps, first, last, example) in enumerate(conn.execute(sql, params).fetchall(), 1):
        mix = confidence.get(k, {})
        levels = sorted(mix, key=lambda level: (CONFIDENCE_ORDER.index(level)
                                                if level in CONFIDENCE_ORDER else len(CONFIDENCE_ORDER), level))
        groups.append(Group(kind=kind, rank=rank, bucket=k, dumps=dumps, first_seen=first, last_seen=last,
                            example=example, bugchecks=bugchecks.get(k, []), culprits=culprits.get(k, []),
                            confidence=[(level, mix[level]) for level in levels]))
    return groups


def _reasoning(record_text: Optional[str]) -> List[str]:
    if not record_text:
        return []
    try:
        reasoning = json.loads(record_text).get("reasoning")
    except (ValueError, AttributeError):
        return []
    return [str(line) for line in reasoning] if isinstance(reasoning, list) else []


def iter_dump_rows(conn: sqlite3.Connection, run: RunFacts, with_reasoning: bool = True) -> Iterator[DumpRow]:
    """Every file of the run that has a result, by path."""
    sql = ("SELECT f.rel_path, r.sha256, r.status, r.error, r.seconds, r.dump_time, r.bugcheck_code,"
           " r.bugcheck_name, r.failure_bucket, r.network_bucket, r.culprit, r.culprit_class,"
           " COALESCE(r.culprit_confidence, 'none'), r.culprit_timestamp, %s"
           " FROM files f JOIN results r ON r.sha256 = f.sha256 AND r.tool_version = :tool_version"
           " WHERE f.last_run = :run_id ORDER BY f.rel_path, f.path" % ("r.record" if with_reasoning else "NULL"))
    for row in conn.execute(sql, _params(run)):
        yield DumpRow(*row[:14], reasoning=_reasoning(row[14]))


def build_report(store: Any, run_id: int) -> BatchReport:
    """Everything the Markdown and HTML reports show for run ``run_id``, from the store alone."""
    conn = connection_of(store)
    run = load_run(conn, run_id)
    network_groups = _groups(conn, run, NETWORK)
    failure_groups = _groups(conn, run, FAILURE)
    culprits = _culprit_counts(conn, run, None).get(None, [])
    failures = []
    sql = (_RUN_ROWS + "SELECT status, COALESCE(error, '') AS e, COUNT(DISTINCT sha256) AS n, MIN(rel_path)"
           " FROM run_rows WHERE status != 'ok' GROUP BY status, e ORDER BY n DESC, status, e")
    for rank, (status, error, dumps, example) in enumerate(conn.execute(sql, _params(run)).fetchall(), 1):
        failures.append(FailureGroup(rank, status, error, dumps, example))
    by_network = {g.bucket: g for g in network_groups}
    by_failure = {g.bucket: g for g in failure_groups}
    by_error = {(f.status, f.error): f for f in failures}
    for row in iter_dump_rows(conn, run):
        if row.status == "ok":
            by_network[row.network_bucket or row.failure_bucket or NO_BUCKET].members.append(row)
            by_failure[row.failure_bucket or NO_BUCKET].members.append(row)
        else:
            by_error[(row.status, row.error or "")].members.append(row)
    not_triaged = [path for (path,) in conn.execute(
        "SELECT f.rel_path FROM files f LEFT JOIN results r ON r.sha256 = f.sha256 AND r.tool_version = ?"
        " WHERE f.last_run = ? AND r.sha256 IS NULL ORDER BY f.rel_path, f.path", (run.tool_version, run.id))]
    run.not_triaged = len(not_triaged)
    return BatchReport(run, network_groups, failure_groups, culprits, failures, not_triaged)
