"""results.jsonl: one JSON line per dump of a batch run, for tools (jq, a SIEM, a notebook), not people.

A triaged dump's line is its ``pytriage.analyze/1`` record, the same one ``pytriage analyze --json``
prints, so whatever reads single records reads these; ``dump.path`` becomes the path relative to the
batch root (the file name alone is ambiguous across folders) and a ``batch`` object says which file,
which content hash, how long it took and with which engine and tool version. A dump whose triage did
not finish has no record: its line is a ``pytriage.batch-error/1`` object with the same ``batch``
object and the error. Both shapes are in docs/schemas/pytriage.batch-1.schema.json.

Lines are streamed from the store one at a time (a record is tens of kilobytes; a batch is thousands),
ASCII only (``ensure_ascii``), so U+2028 and friends never split a line for a naive reader.
"""

import json
from typing import Any, Dict, Iterator, Optional, TextIO

from pytriage.batch.groups import connection_of, load_run

ERROR_SCHEMA = "pytriage.batch-error/1"


def batch_info(rel_path: str, sha256: str, status: str, seconds: Optional[float], engine: Optional[str],
               tool_version: str) -> Dict[str, Any]:
    return {"path": rel_path, "sha256": sha256, "status": status, "seconds": seconds, "engine": engine,
            "tool_version": tool_version}


def dump_line(batch: Dict[str, Any], record_text: Optional[str], error: Optional[str]) -> Dict[str, Any]:
    """The JSON object of one dump: its record with ``batch`` added, or an error object.

    An ``ok`` result always carries its record (the store writes them together); should one be
    unreadable anyway, the line says so as an error rather than dropping the dump.
    """
    if batch["status"] == "ok":
        try:
            record = json.loads(record_text or "")
        except ValueError as exc:
            record, error = None, "stored record is not JSON: %s" % exc
        if isinstance(record, dict):
            line = {"schema": record.get("schema"), "version": record.get("version"), "batch": batch}
            line.update((k, v) for k, v in record.items() if k not in line)
            if isinstance(line.get("dump"), dict):
                line["dump"] = dict(line["dump"], path=batch["path"])
            return line
        batch = dict(batch, status="error")
        error = error or "stored record is not a JSON object"
    return {"schema": ERROR_SCHEMA, "batch": batch, "error": error or "(no error text stored)"}


def iter_lines(store: Any, run_id: int) -> Iterator[Dict[str, Any]]:
    """The run's dumps by relative path, as the objects ``results.jsonl`` holds."""
    conn = connection_of(store)
    run = load_run(conn, run_id)
    sql = ("SELECT f.rel_path, r.sha256, r.status, r.seconds, r.engine, r.error, r.record"
           " FROM files f JOIN results r ON r.sha256 = f.sha256 AND r.tool_version = ?"
           " WHERE f.last_run = ? ORDER BY f.rel_path, f.path")
    for rel_path, sha256, status, seconds, engine, error, record in conn.execute(sql, (run.tool_version, run.id)):
        yield dump_line(batch_info(rel_path, sha256, status, seconds, engine, run.tool_version), record, error)


def write_jsonl(store: Any, run_id: int, out: TextIO) -> int:
    """Writes the run's lines to ``out``; returns how many."""
    count = 0
    for line in iter_lines(store, run_id):
        out.write(json.dumps(line, ensure_ascii=True, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count
