"""The batch's results in SQLite (``OUT/results.sqlite``): resumable, and grouping is a query.

Why SQLite: it ships with Python, a single file is easy to hand over with the reports, and each finished
dump is committed in its own transaction, so Ctrl-C (or a killed machine) leaves every stored row whole and
the next run continues from there. WAL journaling lets report readers query while a batch writes.

Tables (the schema is shared with the report code in ``groups.py`` and must stay exactly this):

- ``runs``: one row per ``pytriage batch`` invocation; ``interrupted`` = 1 when it was stopped by Ctrl-C.
- ``files``: every dump file a run saw, with its content hash cached by (path, size, mtime_ns);
  ``last_run`` is the last run that saw it, so a run's dumps are ``files WHERE last_run = run id``.
- ``results``: one triage result per (content hash, tool version). Two paths with the same bytes share one
  row, and a new pytriage version triages everything again (its analysis may have changed).

All writes go through the thread that created the store (sqlite3 connections are not shared between
threads); the batch runner collects results from its job threads and writes them here.
"""

import sqlite3
import time
from typing import Dict, Iterable, List, Optional, Set

from pytriage.errors import PytriageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL,
    finished REAL NULL,
    root TEXT,
    tool_version TEXT,
    engine TEXT,
    interrupted INTEGER,
    dumps_found INTEGER,
    dumps_triaged INTEGER
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    rel_path TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    last_run INTEGER
);
CREATE TABLE IF NOT EXISTS results (
    sha256 TEXT,
    tool_version TEXT,
    status TEXT,
    error TEXT NULL,
    seconds REAL,
    triaged_at REAL,
    engine TEXT,
    dump_time REAL NULL,
    bugcheck_code TEXT NULL,
    bugcheck_name TEXT NULL,
    failure_bucket TEXT NULL,
    network_bucket TEXT NULL,
    culprit TEXT NULL,
    culprit_class TEXT NULL,
    culprit_confidence TEXT NULL,
    culprit_timestamp TEXT NULL,
    culprit_role TEXT NULL,
    record TEXT NULL,
    PRIMARY KEY (sha256, tool_version)
);
CREATE INDEX IF NOT EXISTS files_last_run ON files (last_run);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
"""

# the results columns a task fills (everything but the key)
RESULT_COLUMNS = ("status", "error", "seconds", "triaged_at", "engine", "dump_time", "bugcheck_code",
                  "bugcheck_name", "failure_bucket", "network_bucket", "culprit", "culprit_class",
                  "culprit_confidence", "culprit_timestamp", "culprit_role", "record")
STATUSES = ("ok", "error", "timeout", "crashed")


class ResultStore:
    """``OUT/results.sqlite``: open (creating the tables), read and write runs, files and results."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise PytriageError("cannot use %s as the results database: %s" % (path, exc)) from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, sql: str, params: Iterable = ()) -> sqlite3.Cursor:
        """One statement in its own transaction (autocommit mode: committed when it returns)."""
        return self.conn.execute(sql, tuple(params))

    # -- runs --------------------------------------------------------------------------------------------------
    def start_run(self, root: str, tool_version: str, engine: str, dumps_found: int) -> int:
        cur = self._write("INSERT INTO runs (started, finished, root, tool_version, engine, interrupted, "
                          "dumps_found, dumps_triaged) VALUES (?, NULL, ?, ?, ?, 0, ?, 0)",
                          (time.time(), root, tool_version, engine, dumps_found))
        return int(cur.lastrowid)

    def set_found(self, run_id: int, dumps_found: int) -> None:
        """Correct the run's dump count once hashing has dropped the dumps that could not be read."""
        self._write("UPDATE runs SET dumps_found = ? WHERE id = ?", (dumps_found, run_id))

    def finish_run(self, run_id: int, interrupted: bool) -> None:
        self._write("UPDATE runs SET finished = ?, interrupted = ? WHERE id = ?",
                    (time.time(), 1 if interrupted else 0, run_id))

    def run(self, run_id: int) -> Optional[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()

    # -- files -------------------------------------------------------------------------------------------------
    def cached_hash(self, path: str, size: int, mtime_ns: int) -> Optional[str]:
        """The stored sha256 of ``path`` if the file still has this size and mtime, else None."""
        row = self.conn.execute("SELECT sha256 FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
                                (path, size, mtime_ns)).fetchone()
        return row[0] if row is not None and row[0] else None

    def record_file(self, path: str, rel_path: str, size: int, mtime_ns: int, sha256: str, run_id: int) -> None:
        self._write("INSERT OR REPLACE INTO files (path, rel_path, size, mtime_ns, sha256, last_run) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (path, rel_path, size, mtime_ns, sha256, run_id))

    def run_files(self, run_id: int) -> List[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM files WHERE last_run = ? ORDER BY rel_path", (run_id,)).fetchall()

    # -- results -----------------------------------------------------------------------------------------------
    def stored_hashes(self, tool_version: str, ok_only: bool = False) -> Set[str]:
        """Contents with a result for ``tool_version``; ``ok_only``: only those triaged (a failed row -- error,
        timeout, crashed -- then counts as not stored, so ``--retry-failed`` triages it again)."""
        where = " AND status = 'ok'" if ok_only else ""
        return {row[0] for row in self.conn.execute("SELECT sha256 FROM results WHERE tool_version = ?" + where,
                                                    (tool_version,))}

    def put_result(self, sha256: str, tool_version: str, result: Dict[str, object],
                   run_id: Optional[int] = None) -> None:
        """Store one dump's result (a dict with ``RESULT_COLUMNS``) in its own transaction, counting it in run
        ``run_id``'s ``dumps_triaged`` in the same transaction."""
        unknown = set(result) - set(RESULT_COLUMNS)
        if unknown:
            raise ValueError("not result columns: %s" % ", ".join(sorted(unknown)))
        if result.get("status") not in STATUSES:
            raise ValueError("bad result status %r" % (result.get("status"),))
        columns = ("sha256", "tool_version") + RESULT_COLUMNS
        values = (sha256, tool_version) + tuple(result.get(c) for c in RESULT_COLUMNS)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute("INSERT OR REPLACE INTO results (%s) VALUES (%s)" % (
                ", ".join(columns), ", ".join("?" * len(columns))), values)
            if run_id is not None:
                self.conn.execute("UPDATE runs SET dumps_triaged = dumps_triaged + 1 WHERE id = ?", (run_id,))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def result(self, sha256: str, tool_version: str) -> Optional[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM results WHERE sha256 = ? AND tool_version = ?",
                                 (sha256, tool_version)).fetchone()

    def run_results(self, run_id: int) -> List[sqlite3.Row]:
        """(rel_path, path, results.*) of every dump of run ``run_id`` that has a result for the run's version."""
        return self.conn.execute(
            "SELECT f.rel_path, f.path, r.* FROM files f JOIN runs ru ON ru.id = f.last_run "
            "JOIN results r ON r.sha256 = f.sha256 AND r.tool_version = ru.tool_version "
            "WHERE f.last_run = ? ORDER BY f.rel_path", (run_id,)).fetchall()
