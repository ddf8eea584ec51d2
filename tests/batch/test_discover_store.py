"""Dump discovery by signature, content hashes, and the results database's schema and transactions."""

import hashlib
import os
import sqlite3
import threading

import pytest

from pytriage.batch.discover import classify, find_dumps
from pytriage.batch.identity import HashCancelled, content_hash, file_key
from pytriage.batch.store import RESULT_COLUMNS, ResultStore
from pytriage.errors import PytriageError
from tests.batch.scenario_dumps import write

KERNEL64 = b"PAGEDU64" + b"\0" * 0x100
KERNEL32 = b"PAGEDUMP" + b"\0" * 0x100


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "case"
    files = {
        "MEMORY.DMP": KERNEL64,
        "renamed.bin": KERNEL64 + b"x",
        "no-extension": KERNEL32,
        "notes.txt": b"hello world\n",
        "user.dmp": b"MDMP\x93\xa7\0\0" + b"\0" * 64,
        "empty.dmp": b"",
        "short.dmp": b"PAGE",
        "zip.dmp": b"PK\x03\x04" + b"\0" * 32,
        "nested/deeper/a.dmp": KERNEL64 + b"a",
        "nested/b.txt": b"PAGEDU6",
        "skipme/c.dmp": KERNEL64 + b"c",
    }
    for rel, data in files.items():
        write(str(root / rel), data)
    os.symlink(str(root), str(root / "nested" / "loop"))             # a link back up the tree
    os.symlink(str(root / "MEMORY.DMP"), str(root / "link.dmp"))      # a linked dump is a dump
    os.symlink(str(root / "gone.dmp"), str(root / "dangling.dmp"))
    os.mkfifo(str(root / "fifo.dmp"))                                 # reading it would block the walk
    return str(root)


def test_find_dumps_by_signature_sorted_without_loops(tree):
    found = find_dumps(tree)
    rel = [os.path.relpath(p, tree) for p in found.dumps]
    assert rel == ["MEMORY.DMP", "link.dmp", "nested/deeper/a.dmp", "no-extension", "renamed.bin", "skipme/c.dmp"]
    assert all(os.path.isabs(p) for p in found.dumps)
    assert [(os.path.relpath(p, tree), why) for p, why in found.skipped] == [
        ("dangling.dmp", "unreadable: No such file or directory"),
        ("empty.dmp", "empty file"),
        ("fifo.dmp", "not a regular file"),
        ("nested/b.txt", "not a kernel dump (7 bytes)"),
        ("notes.txt", "not a kernel dump (signature 'hell')"),
        ("short.dmp", "not a kernel dump (4 bytes)"),
        ("user.dmp", "user-mode minidump (signature 'MDMP'), not a kernel dump"),
        ("zip.dmp", "not a kernel dump (signature 'PK\\x03\\x04')"),
    ]


def test_find_dumps_exclude_prunes_folders_and_files(tree):
    found = find_dumps(tree, exclude=["skipme", "*.bin", "nested/deeper"])
    assert [os.path.relpath(p, tree) for p in found.dumps] == ["MEMORY.DMP", "link.dmp", "no-extension"]
    assert "nested/b.txt" in [os.path.relpath(p, tree) for p, _ in found.skipped]


def test_dump_whose_name_is_not_utf8_is_skipped_with_the_reason(tmp_path):
    name = os.fsdecode(b"crash-\xff.dmp")
    write(os.path.join(str(tmp_path), name), KERNEL64)
    found = find_dumps(str(tmp_path))
    assert found.dumps == []
    assert found.skipped == [(os.path.join(str(tmp_path), name), "kernel dump, but its path is not valid UTF-8 (the "
                              "results database stores UTF-8): rename it")]


def test_classify_a_folder_and_missing_file(tmp_path):
    assert classify(str(tmp_path)) == "not a regular file"
    assert classify(str(tmp_path / "nope")) == "unreadable: No such file or directory"


def test_content_hash_streams_whole_file_and_can_be_cancelled(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)                    # spans chunk boundaries
    path = write(str(tmp_path / "d.dmp"), data)
    assert content_hash(path) == hashlib.sha256(data).hexdigest()
    assert file_key(path) == (len(data), os.stat(path).st_mtime_ns)
    stop = threading.Event()
    stop.set()
    with pytest.raises(HashCancelled):
        content_hash(path, stop)


# -- the store ------------------------------------------------------------------------------------------------------
CONTRACT = {
    "runs": [("id", "INTEGER", 1), ("started", "REAL", 0), ("finished", "REAL", 0), ("root", "TEXT", 0),
             ("tool_version", "TEXT", 0), ("engine", "TEXT", 0), ("interrupted", "INTEGER", 0),
             ("dumps_found", "INTEGER", 0), ("dumps_triaged", "INTEGER", 0)],
    "files": [("path", "TEXT", 1), ("rel_path", "TEXT", 0), ("size", "INTEGER", 0), ("mtime_ns", "INTEGER", 0),
              ("sha256", "TEXT", 0), ("last_run", "INTEGER", 0)],
    "results": [("sha256", "TEXT", 1), ("tool_version", "TEXT", 2), ("status", "TEXT", 0), ("error", "TEXT", 0),
                ("seconds", "REAL", 0), ("triaged_at", "REAL", 0), ("engine", "TEXT", 0), ("dump_time", "REAL", 0),
                ("bugcheck_code", "TEXT", 0), ("bugcheck_name", "TEXT", 0), ("failure_bucket", "TEXT", 0),
                ("network_bucket", "TEXT", 0), ("culprit", "TEXT", 0), ("culprit_class", "TEXT", 0),
                ("culprit_confidence", "TEXT", 0), ("culprit_timestamp", "TEXT", 0), ("culprit_role", "TEXT", 0),
                ("record", "TEXT", 0)],
}


def _row(status="ok", **over):
    row = {c: None for c in RESULT_COLUMNS}
    row.update(status=status, seconds=0.5, triaged_at=1.0, engine="offline")
    row.update(over)
    return row


def test_store_schema_is_the_contract(tmp_path):
    path = str(tmp_path / "results.sqlite")
    ResultStore(path).close()
    conn = sqlite3.connect(path)
    for table, columns in CONTRACT.items():
        got = [(r[1], r[2], r[5]) for r in conn.execute("PRAGMA table_info(%s)" % table)]
        assert got == columns, table
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert RESULT_COLUMNS == tuple(c for c, _, _ in CONTRACT["results"][2:])


def test_store_runs_files_results(tmp_path):
    store = ResultStore(str(tmp_path / "results.sqlite"))
    run = store.start_run("/case", "9.9", "offline", 3)
    assert tuple(store.run(run))[3:] == ("/case", "9.9", "offline", 0, 3, 0)
    store.record_file("/case/a.dmp", "a.dmp", 10, 111, "aa", run)
    store.record_file("/case/b.dmp", "b.dmp", 10, 222, "aa", run)
    store.record_file("/case/c.dmp", "c.dmp", 20, 333, "cc", run)
    assert store.cached_hash("/case/a.dmp", 10, 111) == "aa"
    assert store.cached_hash("/case/a.dmp", 10, 112) is None          # touched: hash again
    assert store.cached_hash("/case/a.dmp", 11, 111) is None          # grew: hash again
    store.put_result("aa", "9.9", _row(culprit="x.sys", record='{"a": 1}'), run)
    store.put_result("cc", "9.8", _row("error", error="truncated"), run)   # another version: not this run's
    assert store.stored_hashes("9.9") == {"aa"}
    assert store.run(run)["dumps_triaged"] == 2
    rows = store.run_results(run)
    assert [(r["rel_path"], r["status"], r["culprit"]) for r in rows] == [("a.dmp", "ok", "x.sys"),
                                                                         ("b.dmp", "ok", "x.sys")]
    store.set_found(run, 2)
    store.finish_run(run, interrupted=True)
    assert (store.run(run)["dumps_found"], store.run(run)["interrupted"]) == (2, 1)
    assert store.run(run)["finished"] >= store.run(run)["started"]
    run2 = store.start_run("/case", "9.9", "offline", 1)
    store.record_file("/case/a.dmp", "sub/a.dmp", 10, 111, "aa", run2)      # rel_path follows the new root
    assert [(r["path"], r["rel_path"]) for r in store.run_files(run2)] == [("/case/a.dmp", "sub/a.dmp")]
    assert [r["path"] for r in store.run_files(run)] == ["/case/b.dmp", "/case/c.dmp"]
    store.close()


def test_store_rejects_bad_rows_without_a_partial_write(tmp_path):
    store = ResultStore(str(tmp_path / "results.sqlite"))
    run = store.start_run("/case", "1", "offline", 1)
    with pytest.raises(ValueError, match="bad result status 'maybe'"):
        store.put_result("aa", "1", _row("maybe"), run)
    with pytest.raises(ValueError, match="not result columns: colour"):
        store.put_result("aa", "1", dict(_row(), colour="red"), run)
    assert store.stored_hashes("1") == set()
    assert store.run(run)["dumps_triaged"] == 0
    store.close()


def test_store_on_a_file_that_is_not_a_database_is_one_line(tmp_path):
    path = write(str(tmp_path / "results.sqlite"), b"this is not sqlite" * 100)
    with pytest.raises(PytriageError, match="^cannot use .*results.sqlite as the results database: file is not a "
                                            "database$"):
        ResultStore(path)
