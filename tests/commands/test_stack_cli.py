"""`pytriage stack` end to end: WinDbg `k`/`kn` text, the ``pytriage.stack/1`` JSON record, the start
options, and the REAL triage dump with its driver images fetched from a local HTTP symbol server."""

import json
import os

import pytest

from pytriage import cli
from pytriage.analysis.function_table import UnwindCatalog
from pytriage.analysis.stack_walk import WalkLimits, walk_stack
from pytriage.commands.stack import render_text
from pytriage.errors import format_address
from tests.analysis.stack_helpers import HidingTarget, module, store_symbolizer
from tests.commands.test_sym_dt_cli import corpus_server  # noqa: F401  (a fixture)
from tests.conftest import CORPUS


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _k_lines(plan, numbers):
    lines = [(" # " if numbers else "") + "Child-SP          RetAddr           Call Site"]
    for f in plan.frames:
        trap = " (TrapFrame @ %s)" % format_address(f.trap_frame) if f.trap_frame is not None else ""
        lines.append("%s%s %s %s%s" % ("%02x " % f.number if numbers else "", format_address(f.child_sp),
                                       format_address(f.return_address), f.name, trap))
    return lines


@pytest.mark.parametrize("numbers", [False, True])
def test_text_is_k_or_kn(capsys, basic_bitmap, numbers):
    argv = ["stack", basic_bitmap.dump_path, "--symbols", basic_bitmap.symstore_path] + (["-n"] if numbers else [])
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert out.splitlines() == _k_lines(basic_bitmap.stack, numbers)


def test_text_matches_the_engines_kvn_shown_in_the_docs(capsys, basic_full):
    """docs/scenarios.md shows the engine's `kvn` on basic-full.dmp; `pytriage stack -n` prints its
    columns (without the arguments) line for line."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "scenarios.md"), encoding="utf-8") as fh:
        doc = fh.read()
    block = doc.split("`basic.json` has the 0xD1 story")[1].split("```\n")[1].splitlines()
    engine = [line.split(" : ")[0] + " " + line.split(" : ")[-1] for line in block[1:]]
    code, out, _ = run(capsys, "stack", "-n", basic_full.dump_path, "--symbols", basic_full.symstore_path)
    assert out.splitlines()[1:] == engine


def test_json_record(capsys, basic_full):
    code, out, _ = run(capsys, "stack", basic_full.dump_path, "--json", "--stats",
                       "--symbols", basic_full.symstore_path)
    record = json.loads(out)
    assert code == 0 and record["schema"] == "pytriage.stack/1"
    assert set(record) == {"schema", "start", "frames", "complete", "stop", "notes", "reads", "trap_frame_layout",
                           "stats"}
    plan = basic_full.stack.frames
    assert record["start"] == {"source": "context record", "rip": "0x%016x" % plan[0].rip,
                               "rsp": "0x%016x" % plan[0].child_sp}
    assert [(f["number"], int(f["child_sp"], 16), int(f["return_address"], 16), f["call_site"], f["found_by"])
            for f in record["frames"]] == [(p.number, p.child_sp, p.return_address, p.name, found) for p, found in
                                           zip(plan, ["context", "unwind", "unwind", "machine-frame", "unwind",
                                                      "unwind"])]
    frame2 = record["frames"][2]
    assert frame2["trap_frame"] == "0x%016x" % plan[2].trap_frame and frame2["scan"] is None
    assert frame2["symbol"] == {"address": "0x%016x" % plan[2].rip, "module": "nt", "symbol": "KiPageFault",
                                "displacement": 0x1A, "source": "pdb", "text": "nt!KiPageFault+0x1a"}
    assert frame2["unwind_data"] == "dump memory" and frame2["module"] == "nt"
    assert record["frames"][4]["registers"]["rbx"] == "0x%016x" % plan[4].registers["rbx"]
    assert (record["complete"], record["stop"], record["notes"]) == (True, {"reason": "end", "text": ""}, [])
    assert record["reads"]["bytes"] > 0 and record["stats"]["target"]["bytes_read"] >= record["reads"]["bytes"]


def test_scanned_frames_are_marked_in_text(basic_full):
    ndis = module(basic_full, "ndis.sys")
    target = HidingTarget(basic_full.dump_path, [(ndis.spec.base, ndis.spec.base + 0x1000)])
    symbolizer = store_symbolizer(target, basic_full)
    try:
        walk = walk_stack(target, target.context_record(), symbolizer, catalog=UnwindCatalog(target, None))
        lines = render_text(walk, numbers=True)
        loose = walk_stack(target, target.context_record(), symbolizer, catalog=UnwindCatalog(target, None),
                           limits=WalkLimits(scan_unverified=True))
    finally:
        symbolizer.close()
        target.close()
    plan = basic_full.stack.frames
    assert lines[6] == "05 %s ????????`???????? ndis!NdisMIndicateReceiveNetBufferLists+0x9 [scanned]" % (
        format_address(plan[5].child_sp))
    assert lines[7:] == ["", "Stopped: " + walk.stop_text, "",
                         "Note: ndis has no unwind data: its headers are not in the dump; no symbol path to fetch "
                         "ndis.sys from"]
    loose.frames[5].scan.evidence = "code-unavailable"          # how an unverified hit is shown
    assert render_text(loose)[6].endswith("ndis!NdisMIndicateReceiveNetBufferLists+0x9 [scanned, call not verified]")


def test_start_from_rip_rsp_and_from_a_context_record(capsys, basic_full):
    plan = basic_full.stack.frames
    code, out, _ = run(capsys, "stack", basic_full.dump_path, "--symbols", basic_full.symstore_path, "--json",
                       "--rip", format_address(plan[3].rip), "--rsp", "%x" % plan[3].child_sp)
    record = json.loads(out)
    assert record["start"]["source"] == "--rip/--rsp"
    assert [f["call_site"] for f in record["frames"]] == [p.name for p in plan[3:]]
    assert record["frames"][1]["registers"] == {"rip": "0x%016x" % plan[4].rip, "rsp": "0x%016x" % plan[4].child_sp,
                                               "rbx": "0x%016x" % plan[4].registers["rbx"]}


@pytest.mark.parametrize("argv, message", [
    (["--rip", "fffff80475001029"], "--rip and --rsp go together: give both, or neither"),
    (["--rbp", "1"], "--rbp needs --rip and --rsp"),
    (["--rip", "1", "--rsp", "2", "--cxr", "3"], "give one start: --cxr, --trap, --processor, --thread or --rip/--rsp"),
    (["--max-frames", "0"], "--max-frames must be between 1 and 65536"),
    (["--cxr", "ffffc08b`f0000000"], "cannot read address ffffc08b`f0000000: "),
])
def test_bad_start_options_are_one_line_errors(capsys, basic_full, argv, message):
    code, out, err = run(capsys, "stack", basic_full.dump_path, "--symbols", "", *argv)
    assert code == 2 and out == ""
    assert err.startswith("pytriage: error: " + message) and err.count("\n") == 1


def test_real_triage_dump_with_images_from_an_http_symbol_server(capsys, tmp_path, corpus_server,  # noqa: F811
                                                                triage_dump_path, triage_facts):
    """0x7E's CONTEXT (parameter 4), amdppm.sys and Wdf01000.sys fetched by TimeDateStamp/SizeOfImage from a
    plain http.server: frames 00-10 are the facts' frames 8-24, amdppm's named from its PDB."""
    url = "http://127.0.0.1:%d" % corpus_server.server_address[1]
    code, out, err = run(capsys, "stack", triage_dump_path, "-n", "--cxr", triage_facts["bugcheck"]["parameters"][3],
                         "--symbols", "srv*%s*%s" % (tmp_path / "cache", url))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    facts = triage_facts["stack"]["frames"]
    for n in range(17):
        fact, caller = facts[8 + n], facts[9 + n]
        prefix = "%02x %s %s " % (n, format_address(int(fact["sp"], 16)), format_address(int(caller["address"], 16)))
        if n < 16:
            assert lines[1 + n].startswith(prefix), (n, lines[1 + n])
    assert lines[1] == "00 ffff8504`29892120 fffff804`8b58313f amdppm!WriteIoMemRawEx+0x70"
    assert lines[7] == "06 ffff8504`29892380 fffff804`79966f81 Wdf01000+0x7c027"
    # no kernel symbols on this path: the scan cannot tell which function frame 10 is in, so it accepts
    # only calls that could reach it; none of the candidates' calls can be checked and it stops honestly
    assert lines[17] == "10 ffff8504`29892730 ????????`???????? nt+0x252f55"
    assert lines[19] == ("Stopped: frame 10 (nt+0x252f55): no unwind data, and the stack scan for its return address "
                         "reached unreadable memory at ffff8504`29893000 (24 values pointed into module code, none "
                         "after a verified call)")
    fetched = sorted(path for path, status in corpus_server.requests if status == 200)
    assert fetched == ["/Wdf01000.sys/a9a9d36ed1000/Wdf01000.sys", "/amdppm.pdb/1C19FDDB27BB3399D9B45973EFEAFCF31/"
                       "amdppm.pdb", "/amdppm.sys/c9c030003b000/amdppm.sys"]


def test_stats_line(capsys, basic_bitmap):
    code, out, _ = run(capsys, "stack", basic_bitmap.dump_path, "--stats", "--symbols", basic_bitmap.symstore_path)
    stats = [line for line in out.splitlines() if line.startswith("Stack walk: ")]
    assert len(stats) == 1 and stats[0].startswith("Stack walk: 6 frames, ")
    assert any(line.startswith("Target reads: ") for line in out.splitlines())


def test_trap_start_walks_like_the_exception_context(capsys, tmp_path, triage_dump_path, triage_facts):
    """`.trap` on amdppm's KTRAP_FRAME (found on the real stack, see tests/symbols/test_isf.py) gives the
    same frames as `.cxr` on the 0x7E exception CONTEXT: Child-SP and RetAddr, line for line."""
    sympath = "srv*%s*%s;%s" % (tmp_path, os.path.join(CORPUS, "symstore"), os.path.join(CORPUS, "symbols"))
    param4 = triage_facts["bugcheck"]["parameters"][3]
    code, by_cxr, err = run(capsys, "stack", triage_dump_path, "--cxr", param4, "--symbols", sympath)
    assert code == 0, err
    code, by_trap, err = run(capsys, "stack", triage_dump_path, "--trap", "ffff850429891f90", "--symbols", sympath)
    assert code == 0, err
    frames = [line for line in by_cxr.splitlines()[1:18]]
    assert frames[0].endswith("amdppm!WriteIoMemRawEx+0x70")
    assert by_trap.splitlines()[1:18] == frames
    code, out, err = run(capsys, "stack", triage_dump_path, "--trap", "ffff850429891f00", "--symbols", sympath)
    assert code == 2 and "does not look like a _KTRAP_FRAME" in err
    code, out, err = run(capsys, "stack", triage_dump_path, "--trap", "ffff850429891f90", "--cxr", param4,
                         "--symbols", sympath)
    assert code == 2 and err == "pytriage: error: give one start: --cxr, --trap, --processor, --thread or --rip/--rsp\n"


def test_bugcheck_processor_reaches_amdppm_through_a_searched_trap_frame(capsys, tmp_path, triage_dump_path,
                                                                         triage_facts):
    """`~0s; kn` as pytriage does it on the real dump: KeBugCheckEx, two scanned nt frames, then the
    trap handler found through its _KTRAP_FRAME on the stack, marked, with the faulting amdppm frame next."""
    sympath = "srv*%s*%s;%s" % (tmp_path, os.path.join(CORPUS, "symstore"), os.path.join(CORPUS, "symbols"))
    code, out, err = run(capsys, "stack", triage_dump_path, "-n", "--processor", "0", "--symbols", sympath)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1:6] == [
        "00 ffff8504`29890ee8 fffff804`7bdcc052 nt!KeBugCheckEx",
        "01 ffff8504`29890f30 fffff804`7bd17e25 nt!_C_specific_handler+0xa2 [scanned]",
        "02 ffff8504`29890f98 fffff804`7be031f5 nt!PspSystemThreadStartup+0x55 [scanned]",
        "03 ffff8504`29891f90 fffff804`8b58334c nt!KiSegmentNotPresentFault+0x335 (TrapFrame @ ffff8504`29891f90) "
        "[trap frame search]",
        "04 ffff8504`29892120 fffff804`8b58313f amdppm!WriteIoMemRawEx+0x70"]
    code, out, err = run(capsys, "stack", triage_dump_path, "--processor", "0", "--json", "--symbols", sympath)
    record = json.loads(out)
    assert [f["found_by"] for f in record["frames"][:5]] == ["context", "scanned", "scanned", "trap-search",
                                                             "trap-frame"]
    assert record["frames"][3]["trap_frame"] == "0xffff850429891f90"
    assert record["frames"][4]["instruction_pointer"] == triage_facts["bugcheck"]["parameters"][1]
