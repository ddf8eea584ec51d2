"""`pytriage batch` on a generated folder of 50+ dumps: groups and culprits, re-runs, new dumps (issue 10).

The folder is ``tests/batch/dumpfarm.make_farm``'s: variants of the built-in scenarios (drivers renamed, tags
replaced, everything moved, through ``tests/scenarios/variants``), several dumps per variant at different crash
times, in nested folders under random names (some without ``.dmp``), plus truncated dumps, corrupted headers, a
text file named like a dump and a byte-identical duplicate. Its manifest says what each file must give,
from the generator's inputs alone. The batch runs three times as a user would run it (``python -m pytriage
batch``, two jobs): the first run must store exactly the manifest's answers and groups, the second must triage
nothing, and after three dumps are added the third must triage exactly those three.

The farm seed is drawn per run; ``PYTRIAGE_FARM_SEED=<n>`` replays one (every failure message names it).
"""

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections import Counter

import pytest

from pytriage.scenarios import build_from_file, builtin_path
from tests.batch.dumpfarm import SCENARIOS, add_dumps, make_farm, with_crash_time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FARM_SEED = int(os.environ.get("PYTRIAGE_FARM_SEED") or random.SystemRandom().randrange(1 << 32))
WHERE = "farm seed %d (replay: PYTRIAGE_FARM_SEED=%d)" % (FARM_SEED, FARM_SEED)
ROW_COLUMNS = ("status", "error", "network_bucket", "culprit", "culprit_timestamp", "bugcheck_code", "dump_time")


def run_batch_cli(farm, out):
    """`pytriage batch FARM -o OUT --jobs 2 --symbols STORE` in a fresh interpreter, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "pytriage", "batch", farm.root, "-o", out, "--jobs", "2",
                           "--symbols", farm.symbols], cwd=REPO, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def snapshot(out, run_id):
    """What the store and results.jsonl say right after run ``run_id``."""
    conn = sqlite3.connect(os.path.join(out, "results.sqlite"))
    conn.row_factory = sqlite3.Row
    try:
        runs = [dict(row) for row in conn.execute("SELECT * FROM runs ORDER BY id")]
        rows = {row["rel_path"]: dict(row) for row in conn.execute(
            "SELECT f.rel_path, f.sha256, r.* FROM files f JOIN runs ru ON ru.id = f.last_run "
            "LEFT JOIN results r ON r.sha256 = f.sha256 AND r.tool_version = ru.tool_version "
            "WHERE f.last_run = ?", (run_id,))}
        groups = {bucket: (dumps, culprits) for bucket, dumps, culprits in conn.execute(
            "SELECT r.network_bucket, COUNT(DISTINCT r.sha256), GROUP_CONCAT(DISTINCT r.culprit) "
            "FROM files f JOIN results r ON r.sha256 = f.sha256 WHERE f.last_run = ? AND r.status = 'ok' "
            "GROUP BY r.network_bucket", (run_id,))}
        results = {row[0] for row in conn.execute("SELECT sha256 FROM results")}
    finally:
        conn.close()
    with open(os.path.join(out, "results.jsonl"), encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh]
    return {"runs": runs, "rows": rows, "groups": groups, "results": results, "jsonl": lines}


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("farm")
    manifest = make_farm(str(folder / "dumps"), FARM_SEED, count=52)
    manifest.write_json(str(folder / "manifest.json"))
    return manifest


@pytest.fixture(scope="module")
def runs(farm, tmp_path_factory):
    """The three runs, each followed by a snapshot of what it stored."""
    out = str(tmp_path_factory.mktemp("batch-out") / "out")
    first = run_batch_cli(farm, out)
    first_state = snapshot(out, 1)
    first_expected = {"groups": farm.expected_groups(), "dumps": farm.dumps()}
    second = run_batch_cli(farm, out)
    second_state = snapshot(out, 2)
    added = add_dumps(farm, 3, seed=1)
    third = run_batch_cli(farm, out)
    third_state = snapshot(out, 3)
    return {"first": (first, first_state, first_expected), "second": (second, second_state),
            "third": (third, third_state, added)}


def expected_row(entry):
    return {"status": entry.status, "error": entry.error, "network_bucket": entry.network_bucket,
            "culprit": entry.culprit, "culprit_timestamp": entry.culprit_timestamp,
            "bugcheck_code": entry.bugcheck_code, "dump_time": entry.dump_time}


def test_the_farm_is_what_the_issue_asks_for(farm):
    kinds = Counter(f.kind for f in farm.files)
    assert kinds["scenario"] == 52 and kinds["duplicate"] == 1 and kinds["not-a-dump"] == 1, WHERE
    assert kinds["truncated"] == 3 and kinds["corrupt"] == 2, WHERE
    assert len(farm.dumps()) == 58 and len(farm.by_sha256()) == 57, WHERE
    assert {family.scenario for family in farm.families.values()} == set(SCENARIOS), WHERE
    for entry in farm.files:
        with open(farm.path(entry), "rb") as fh:
            data = fh.read()
        assert (data[:8] == b"PAGEDU64") == (entry.kind != "not-a-dump"), (WHERE, entry)
    not_dump = farm.skipped()[0]
    assert not_dump.rel_path.lower().endswith(".dmp"), WHERE
    duplicate = next(f for f in farm.files if f.kind == "duplicate")
    assert [f.rel_path for f in farm.files if f.sha256 == duplicate.sha256 and f is not duplicate] != [], WHERE
    names = [f.rel_path.rsplit("/", 1)[-1] for f in farm.files]
    assert sum(1 for name in names if not name.lower().endswith(".dmp")) >= 5, WHERE
    assert max(f.rel_path.count("/") for f in farm.files) == 3 and min(f.rel_path.count("/") for f in farm.files) \
        == 1, WHERE
    # renamed everywhere: no seed driver name reaches a culprit, a bucket or a file name
    seed_culprits = {culprit for _, culprit in SCENARIOS.values() if culprit}
    expected = farm.expected_groups()
    assert not seed_culprits & {culprit for _, culprit in expected.values()}, WHERE
    assert len({family.culprit for family in farm.families.values() if family.culprit}) == \
        len([family for family in farm.families.values() if family.culprit]), WHERE
    assert sum(n for n, _ in expected.values()) == 52, WHERE
    assert farm.build_seconds < 60, "%s: building the farm took %.1f s" % (WHERE, farm.build_seconds)


def test_a_crash_time_copy_is_the_dump_a_build_with_that_time_gives(tmp_path):
    """The farm makes a family's dumps by writing another crash time into the header of the one build: that
    must be byte for byte what the builder writes for a spec with that ``os.system_time``."""
    with open(builtin_path("nbl-zoo"), encoding="utf-8") as fh:
        doc = json.load(fh)
    when = 1718000000.0
    once = build_from_file(builtin_path("nbl-zoo"), str(tmp_path / "once"), "bitmap")
    doc.setdefault("os", {})["system_time"] = "0x%x" % (int(when * 10 ** 7) + 116444736000000000)
    spec = str(tmp_path / "timed.json")
    with open(spec, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    timed = build_from_file(spec, str(tmp_path / "timed"), "bitmap")
    with open(once.dump_path, "rb") as a, open(timed.dump_path, "rb") as b:
        original, rebuilt = a.read(), b.read()
    assert original != rebuilt
    assert with_crash_time(original, when) == rebuilt


def test_first_run_stores_the_manifest_answer_for_every_dump(runs, farm):
    (code, stdout, stderr), state, expected = runs["first"]
    assert code == 0, (WHERE, stderr[-2000:])
    rows = state["rows"]
    assert sorted(rows) == sorted(e.rel_path for e in expected["dumps"]), WHERE
    for entry in expected["dumps"]:
        got = {column: rows[entry.rel_path][column] for column in ROW_COLUMNS}
        assert got == expected_row(entry), "%s: %s (%s)" % (WHERE, entry.rel_path, entry.family)
        assert rows[entry.rel_path]["sha256"] == entry.sha256, WHERE
    run = state["runs"][0]
    assert (run["id"], run["dumps_found"], run["dumps_triaged"], run["interrupted"]) == (1, 58, 57, 0), WHERE
    assert run["finished"] is not None, WHERE
    skipped = farm.skipped()[0]
    assert "Skipped:\n  %s: %s\n" % (skipped.rel_path, skipped.skip_reason) in stdout, (WHERE, stdout)
    assert "Results: 53 ok, 5 error" in stdout, (WHERE, stdout)


def test_first_run_groups_by_network_bucket_with_the_renamed_culprits(runs):
    _result, state, expected = runs["first"]
    assert state["groups"] == expected["groups"], WHERE


def test_first_run_json_lines_say_the_same(runs):
    _result, state, expected = runs["first"]
    by_path = {line["batch"]["path"]: line for line in state["jsonl"]}
    assert len(state["jsonl"]) == 58 and sorted(by_path) == sorted(e.rel_path for e in expected["dumps"]), WHERE
    for entry in expected["dumps"]:
        line = by_path[entry.rel_path]
        assert (line["batch"]["sha256"], line["batch"]["status"]) == (entry.sha256, entry.status), WHERE
        if entry.status == "ok":
            assert line["schema"] == "pytriage.analyze/1", WHERE
            assert line["buckets"]["network_bucket_id"] == entry.network_bucket, (WHERE, entry.rel_path)
            assert (line["culprit"] or {}).get("binary") == entry.culprit, (WHERE, entry.rel_path)
            assert line["dump"]["path"] == entry.rel_path, WHERE
        else:
            assert (line["schema"], line["error"]) == ("pytriage.batch-error/1", entry.error), WHERE


def test_a_rerun_triages_nothing(runs, farm):
    (code, stdout, stderr), state = runs["second"]
    assert code == 0, (WHERE, stderr[-2000:])
    run = state["runs"][1]
    assert (run["id"], run["dumps_found"], run["dumps_triaged"], run["interrupted"]) == (2, 58, 0, 0), WHERE
    assert "Triaged now: 0 in " in stdout and "already in the store: 57;" in stdout, (WHERE, stdout)
    assert len(state["results"]) == 57, WHERE
    first = runs["first"][1]
    assert state["groups"] == first["groups"], WHERE
    assert state["rows"] == first["rows"], WHERE


def test_three_new_dumps_are_the_only_ones_triaged(runs, farm):
    (code, stdout, stderr), state, added = runs["third"]
    assert code == 0, (WHERE, stderr[-2000:])
    run = state["runs"][2]
    assert (run["id"], run["dumps_found"], run["dumps_triaged"], run["interrupted"]) == (3, 61, 3, 0), WHERE
    assert "Triaged now: 3 in " in stdout and "already in the store: 57;" in stdout, (WHERE, stdout)
    assert state["results"] - runs["second"][1]["results"] == {entry.sha256 for entry in added}, WHERE
    for entry in added:
        got = {column: state["rows"][entry.rel_path][column] for column in ROW_COLUMNS}
        assert got == expected_row(entry), (WHERE, entry.rel_path)
    assert state["groups"] == farm.expected_groups(), WHERE
    assert len(state["jsonl"]) == 61, WHERE
