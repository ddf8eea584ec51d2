"""The `pytriage` command line end to end: info (text and JSON), db, demo, scenario.

Values are checked against the corpus facts (real dump) and the scenario builder's own record of what it
wrote (synthetic dumps), never against the reader's output itself.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from pytriage import cli
from pytriage.errors import format_address


def h(value):
    return int(value, 16) if isinstance(value, str) else value


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- info on the real triage dump ----------------------------------------------------------------------

def test_info_json_equals_the_corpus_facts(capsys, triage_dump_path, triage_facts):
    code, out, err = run_cli(capsys, "info", "--json", triage_dump_path)
    assert code == 0 and err == ""
    rec = json.loads(out)
    assert rec["schema"] == "pytriage.info/1"
    assert rec["file"]["size"] == triage_facts["file"]["size"]
    assert rec["dump_type"] == 4 and rec["dump_type_name"] == "triage"
    assert rec["machine"] == "AMD64"
    assert rec["os"] == {"major_version": 15, "build": 19041, "processors": triage_facts["os"]["processors"]}
    hdr = triage_facts["dump_header64"]
    assert h(rec["directory_table_base"]) == h(hdr["DirectoryTableBase"])
    assert h(rec["ps_loaded_module_list"]) == h(hdr["PsLoadedModuleList"])
    assert h(rec["kd_debugger_data_block"]) == h(hdr["KdDebuggerDataBlock"])
    assert h(rec["kernel_base"]) == h(triage_facts["kernel"]["base"])
    assert rec["system_time_utc"] == hdr["SystemTime_utc"]
    assert h(rec["bugcheck"]["code"]) == h(triage_facts["bugcheck"]["code"])
    assert [h(p) for p in rec["bugcheck"]["parameters"]] == [h(p) for p in triage_facts["bugcheck"]["parameters"]]
    for name, value in triage_facts["registers_exception_context"]["regs"].items():
        assert h(rec["context"][name]) == h(value), name
    mods = triage_facts["modules"]
    assert len(rec["modules"]) == mods["count"]
    pairs = list(zip(mods["first"], rec["modules"])) + [(mods["last"], rec["modules"][-1])]
    for fact, got in pairs:
        assert got["image_path"] == fact["name"]
        assert h(got["base"]) == h(fact["base"])
        assert h(got["size"]) == h(fact["size"])
        if "timestamp" in fact:
            assert h(got["timestamp"]) == h(fact["timestamp"])
    assert rec["module_source"] == "triage dump driver list"
    assert rec["warnings"] == []
    # secondary data: the blob chain ends exactly at the end of the file
    blobs = rec["secondary_data"]
    assert len(blobs) == 20
    last = blobs[-1]
    assert h(last["offset"]) + last["size"] <= rec["file"]["size"]


def test_info_text_is_windbg_shaped(capsys, triage_dump_path):
    code, out, _ = run_cli(capsys, "info", triage_dump_path)
    assert code == 0
    lines = out.splitlines()
    assert "Windows 10 Kernel Version 19041 MP (16 procs) Free x64" in lines
    assert "Kernel base = 0xfffff804`7ba00000 PsLoadedModuleList = 0xfffff804`7c62a390" in lines
    assert "Debug session time: Sun Feb 21 01:38:22.987 2021 (UTC + 0:00)" in lines
    assert "Bugcheck code 1000007E" in lines
    assert "Arguments ffffffff`c0000005 fffff804`8b58334c ffff8504`29891ee8 ffff8504`29891720" in lines
    assert "rip=fffff8048b58334c rsp=ffff850429892120 rbp=fffff8048b58f598" in lines
    amdppm = [line for line in lines if re.search(r"\bamdppm\b", line)]
    assert len(amdppm) == 1 and amdppm[0].startswith("fffff804`8b580000  fffff804`8b5bb000  amdppm")


def test_info_stats_counts_reads(capsys, basic_bitmap):
    code, out, _ = run_cli(capsys, "info", "--json", "--stats", basic_bitmap.dump_path)
    assert code == 0
    stats = json.loads(out)["stats"]
    # 6 modules: list head + 6 entries + 12 names, all within a handful of pages
    assert 0 < stats["read_calls"] <= 12
    assert stats["bytes_read"] == stats["read_calls"] * 0x1000
    assert stats["cache_hits"] >= 12
    assert stats["failed_reads"] == 0
    code, out, _ = run_cli(capsys, "info", "--stats", basic_bitmap.dump_path)
    assert re.search(r"^Target reads: \d+ calls, \d+ bytes, \d+ cache hits, 0 failed$", out, re.M)


# --- info on scenario dumps ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_info_on_scenario_dump_matches_the_spec(capsys, basic_full, basic_bitmap, kind):
    built = basic_full if kind == "full" else basic_bitmap
    code, out, _ = run_cli(capsys, "info", "--json", built.dump_path)
    assert code == 0
    rec = json.loads(out)
    spec = built.spec
    assert rec["dump_type"] == (1 if kind == "full" else 5)
    assert h(rec["bugcheck"]["code"]) == spec.bugcheck_code
    assert [h(p) for p in rec["bugcheck"]["parameters"]] == spec.bugcheck_parameters
    assert h(rec["context"]["rip"]) == built.context["rip"] == built.stack.frames[0].rip
    assert h(rec["kernel_base"]) == spec.kernel.base
    expected = [(spec.kernel.name, spec.kernel.base, spec.kernel.size, spec.kernel.timestamp)] + \
        [(m.name, m.base, m.size, m.timestamp) for m in spec.modules]
    got = [(m["name"], h(m["base"]), h(m["size"]), h(m["timestamp"])) for m in rec["modules"]]
    assert got == expected
    assert rec["modules"][0]["module"] == "nt"
    assert rec["warnings"] == []


# --- db -----------------------------------------------------------------------------------------------------

def test_db_matches_the_builders_bytes(capsys, basic_bitmap):
    region = basic_bitmap.spec.regions[0]
    code, out, _ = run_cli(capsys, "db", basic_bitmap.dump_path, format_address(region.va), "-l", "0x30")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    want = basic_bitmap.expected(region.va, 0x30)
    for i, line in enumerate(lines):
        addr, hexpart, text = line[:17], line[19:66], line[68:]
        assert addr == format_address(region.va + 16 * i)
        assert bytes.fromhex(hexpart.replace("-", " ")) == want[16 * i:16 * i + 16]
        assert text == "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in want[16 * i:16 * i + 16])
    assert lines[0] == ("ffffc08b`e0100000  4e 42 4c 20 63 68 61 69-6e 20 70 6c 61 63 65 68  "
                        "NBL chain placeh")


def test_db_physical_and_decimal_length(capsys, basic_full):
    pa = basic_full.space.translate(basic_full.spec.kernel.base)
    code, out, _ = run_cli(capsys, "db", "--physical", basic_full.dump_path, "%x" % pa, "-l", "20")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("#%x  4d 5a" % pa)      # "MZ"
    assert lines[1].split("  ")[1].count(" ") == 3                          # 4 bytes on the last line


def test_db_partly_readable_shows_question_marks(capsys, basic_bitmap):
    kernel = basic_bitmap.spec.kernel
    end = kernel.base + kernel.size              # first byte after the kernel image: unmapped
    code, out, _ = run_cli(capsys, "db", basic_bitmap.dump_path, format_address(end - 0x10), "-l", "0x20")
    assert code == 0
    lines = out.splitlines()
    assert "??" not in lines[0]
    assert lines[1] == format_address(end) + "  " + " ".join(["??"] * 16)


def test_db_rejects_bad_length_and_address(capsys, basic_bitmap):
    code, _, err = run_cli(capsys, "db", basic_bitmap.dump_path, "1000", "-l", "0x200000")
    assert code == 2 and "length" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["db", basic_bitmap.dump_path, "zz"])
    assert exc.value.code == 2


# --- demo and scenario ------------------------------------------------------------------------------------

def test_demo_prints_the_dump_summary_and_its_triage(capsys):
    code, out, err = run_cli(capsys, "demo")
    assert code == 0, err
    assert out.startswith("Built scenario 'nwifi-completion' -> nwifi-completion-bitmap.dmp (bitmap dump)")
    assert "Bugcheck code 0000001E" in out
    triage = out.split("Triage (pytriage analyze nwifi-completion-bitmap.dmp --symbols srv*nwifi-completion.symstore):"
                       "\n", 1)[1]
    for line in ("KMODE_EXCEPTION_NOT_HANDLED (1e)", "FAILURE_BUCKET_ID:  0x1E_80000003_nwifi!Dot11SendCompletion",
                 "CULPRIT:  vwifimf.sys (third-party, NDIS lightweight filter (LWF)) -- confidence high",
                 "NETWORK_BUCKET_ID:  NBL_COMPLETION_STACK_CORRUPT_vwifimf.sys", 'is UTF-16 "562"',
                 "nwifi!Dot11SendCompletion+0x4b"):
        assert line in triage, line


def test_demo_of_another_scenario(capsys):
    code, out, err = run_cli(capsys, "demo", "basic")
    assert code == 0, err
    assert out.startswith("Built scenario 'basic' -> basic-bitmap.dmp (bitmap dump)")
    assert re.search(r"fffff804`75000000\s+fffff804`75008000\s+contosolwf", out)
    assert "CULPRIT:  contosolwf.sys" in out and "contosolwf!FilterReceiveNetBufferLists+0x9" in out


def test_demo_list_and_unknown_name(capsys):
    code, out, _ = run_cli(capsys, "demo", "--list")
    assert code == 0
    assert re.match(r"^basic\s+0xD1 in a third-party NDIS filter", out)
    code, _, err = run_cli(capsys, "demo", "no-such-scenario")
    assert code == 2 and "no built-in scenario 'no-such-scenario'" in err


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_scenario_command_writes_dump_and_symbols(capsys, tmp_path, kind):
    code, out, err = run_cli(capsys, "scenario", "basic", "-o", str(tmp_path), "--type", kind)
    assert code == 0, err
    dump_path, symbols_path, symstore_path = out.splitlines()
    assert dump_path == str(tmp_path / ("basic-%s.dmp" % kind))
    assert os.path.isdir(symbols_path)
    tables = sorted(os.listdir(os.path.join(symbols_path, "windows")))
    assert tables == sorted(["contosolwf.pdb", "hal.pdb", "NETIO.pdb", "ndis.pdb", "ntkrnlmp.pdb", "tcpip.pdb"])
    assert symstore_path == str(tmp_path / "basic.symstore")
    assert sorted(os.listdir(symstore_path)) == sorted(tables + ["contosolwf.sys", "hal.dll", "ndis.sys",
                                                                 "NETIO.SYS", "ntoskrnl.exe", "tcpip.sys"])
    assert os.path.isfile(os.path.join(symstore_path, "ntkrnlmp.pdb", "5278AFF86C341677D7D7835C85B7B8441",
                                       "ntkrnlmp.pdb"))
    with open(dump_path, "rb") as fh:
        assert fh.read(8) == b"PAGEDU64"


def test_console_script_runs_as_a_process(tmp_path):
    """The installed entry point (python -m pytriage) works outside pytest's capture."""
    proc = subprocess.run([sys.executable, "-m", "pytriage", "info", str(tmp_path / "missing.dmp")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "cannot open" in proc.stderr


def test_no_command_prints_help_and_fails(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "usage: pytriage" in out


def test_session_time_and_uptime_print_as_the_engine_does():
    """Microsoft's engine space-pads a one-digit day and truncates the uptime's milliseconds (seen by the
    dbgeng tier on scenarios dated the 7th, and with SystemUpTime 0xe84dcd8f00)."""
    from pytriage.commands.info import windbg_session_time
    from pytriage.commands.render import format_uptime
    assert windbg_session_time("2023-09-07T15:52:49.284000Z") == "Thu Sep  7 15:52:49.284 2023 (UTC + 0:00)"
    assert windbg_session_time("2023-09-21T15:52:49.284000Z") == "Thu Sep 21 15:52:49.284 2023 (UTC + 0:00)"
    assert format_uptime(0xE84DCD8F00 / 1e7) == "1 days 3:42:53.772"
    assert format_uptime(37470697 / 1e7) == "0 days 0:00:03.747"
