"""PybagTarget over a fake pybag (tests/fakes/pybag.py) backed by the offline engine: on built-in scenarios it
must give what OfflineDumpTarget gives (modules, bugcheck, context, bytes, read errors, the whole triage record),
carry under the live read budget, and pybag must never be imported with pytriage."""

import json
import subprocess
import sys

import pytest

from pytriage.analysis.triage.engine import triage
from pytriage.analysis.triage.modules import load_classifier
from pytriage.errors import MemoryReadError, PytriageError
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.symbolizer import Symbolizer
from pytriage.symbols.sympath import resolve_symbol_path
from pytriage.target.offline import OfflineDumpTarget
from pytriage.target.pybag_target import PybagTarget, import_pybag
from tests.fakes import pybag as fake_pybag

SCENARIOS = ["basic", "nwifi-completion", "expool-not-on-stack", "wfp-callout-nbl"]
LIVE_BUDGET = 256 * 1024


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pytriage.scenarios import build_builtin
    root = tmp_path_factory.mktemp("pybag")
    return {name: build_builtin(name, str(root / name), "bitmap") for name in SCENARIOS}


def _pair(scenario):
    return OfflineDumpTarget.open(scenario.dump_path), PybagTarget.open_dump(scenario.dump_path, fake_pybag)


def _outcome(target, va, size):
    try:
        return target.read(va, size)
    except MemoryReadError as exc:
        return ("MemoryReadError", exc.address, exc.physical)


def _addresses(scenario, offline):
    """Module headers and code, the stack, the spec's memory regions, kernel variables, and unmapped space."""
    out = []
    for module in offline.modules():
        out += [module.base, module.base + 0x1000, module.end - 8, module.end]
    ctx = offline.context_record()
    out += [ctx["rsp"] - 0x40, ctx["rsp"], ctx["rip"]]
    out += [region.va for region in scenario.spec.regions]
    out += list(offline.kernel_anchors().values())
    out += [0, 0x1000, 0x7FFE0000, 0xFFFFF78000000000, 0xFFFF800000000000, 0xFFFFFFFFFFFFF000]
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_crash_facts_and_modules_match_offline(built, name):
    offline, pybag = _pair(built[name])
    assert pybag.modules() == offline.modules()
    assert pybag.module_list().source == offline.module_list().source
    assert pybag.bugcheck() == offline.bugcheck()
    expected = dict(offline.context_record())
    del expected["context_flags"]                  # DbgEng has no register for CONTEXT.ContextFlags
    assert pybag.context_record() == expected
    assert pybag.kernel_anchors() == offline.kernel_anchors()
    assert (pybag.os_build, pybag.machine, pybag.pointer_size, pybag.dump_kind, pybag.is_live) == (
        offline.os_build, offline.machine, offline.pointer_size, offline.dump_kind, False)
    assert pybag.crash_time == pytest.approx(offline.crash_time, abs=0.001)   # vertarget prints milliseconds
    assert [c.to_json() for c in pybag.processor_contexts()] == [c.to_json() for c in offline.processor_contexts()]


@pytest.mark.parametrize("name", SCENARIOS)
def test_reads_and_read_errors_match_offline(built, name):
    scenario = built[name]
    offline, pybag = _pair(scenario)
    failures = 0
    for va in _addresses(scenario, offline):
        for size in (1, 8, 0x30, 0x1000, 0x2100):
            expected = _outcome(offline, va, size)
            assert _outcome(pybag, va, size) == expected, (hex(va), size)
            failures += isinstance(expected, tuple)
    assert failures >= 10                          # unmapped space was really asked for
    assert pybag.stats.read_calls == pybag.dbg.calls["read"]       # one backend call per read request
    assert pybag.stats.bytes_read == pybag.dbg.bytes_served


def test_a_short_dbgeng_read_is_an_error_at_the_first_missing_byte(built):
    offline, pybag = _pair(built["basic"])
    edge = next(m.end for m in offline.modules() if offline.is_valid(m.end - 1) and not offline.is_valid(m.end))
    assert pybag.dbg.read(edge - 0x10, 0x20) == offline.read(edge - 0x10, 0x10)      # pybag's short answer
    with pytest.raises(MemoryReadError) as caught:
        pybag._read_backend(edge - 0x10, 0x20)
    assert caught.value.address == edge


@pytest.mark.parametrize("name", SCENARIOS)
def test_triage_record_matches_offline_within_the_live_budget(built, name):
    scenario = built[name]
    records = []
    for target in _pair(scenario):
        symbolizer = Symbolizer(target, store=SymbolStore(resolve_symbol_path("srv*" + scenario.symstore_path)))
        records.append(json.loads(json.dumps(triage(target, symbolizer, load_classifier()))))
        last = target
    offline, pybag = records
    offline_time, pybag_time = offline["dump"].pop("crash_time"), pybag["dump"].pop("crash_time")
    assert pybag_time == pytest.approx(offline_time, abs=0.001)
    offline.pop("stats", None)
    pybag.pop("stats", None)
    assert pybag == offline
    assert 0 < last.dbg.bytes_served < LIVE_BUDGET
    assert last.dbg.calls["read"] == last.stats.read_calls


def test_open_dump_uses_opendump_because_pybag_load_dump_is_not_implemented(built):
    pybag = PybagTarget.open_dump(built["basic"].dump_path, fake_pybag)
    calls = pybag.dbg.calls
    assert (calls["load_dump"], calls["cmd .opendump"], calls["go"]) == (1, 1, 1)
    pybag.close()
    assert pybag.dbg.released


def test_open_dump_of_a_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(PytriageError) as caught:
        PybagTarget.open_dump(str(tmp_path / "missing.dmp"), fake_pybag)
    assert "\n" not in str(caught.value) and "missing.dmp" in str(caught.value)


def test_physical_reads_go_under_pybag_unimplemented_wrapper(built):
    offline, pybag = _pair(built["basic"])
    pages = [0x1000, 0x2000, 0x100000, 0x4000000, 0x100000000]
    for pa in pages:
        outcomes = []
        for target in (offline, pybag):
            try:
                outcomes.append(target.read_physical(pa, 0x40))
            except MemoryReadError as exc:
                outcomes.append((exc.address, exc.physical))
        assert outcomes[0] == outcomes[1], hex(pa)
    assert pybag.dbg.calls["ReadPhysical"] == len(pages)
    assert pybag.read_physical(0x1000, 0x40) == offline.read_physical(0x1000, 0x40)
    with pytest.raises(MemoryReadError) as caught:
        pybag.read_physical(0x200000000000, 0x10)
    assert (caught.value.address, caught.value.physical) == (0x200000000000, True)


def test_dbgeng_module_list_is_the_fallback_without_the_loader_list(built):
    offline, pybag = _pair(built["basic"])
    pybag._anchor = lambda name: None
    listing = pybag.module_list()
    assert listing.source == "DbgEng module list"
    assert listing.warnings == ["PsLoadedModuleList address unknown"]
    assert [(m.base, m.size, m.timestamp, m.checksum, m.debugger_name) for m in listing.modules] == [
        (m.base, m.size, m.timestamp, m.checksum, m.debugger_name) for m in offline.modules()]
    assert [m.name for m in listing.modules][:2] == ["ntkrnlmp.exe", "hal.exe"]    # DbgEng's renames


def test_kdnet_attach_reads_a_live_kernel(built):
    scenario = built["nwifi-completion"]
    fake_pybag.serve_kdnet("net:port=50000,key=1.2.3.4", scenario.dump_path)
    live = PybagTarget.attach_kdnet("port=50000,key=1.2.3.4", fake_pybag)
    offline = OfflineDumpTarget.open(scenario.dump_path)
    assert live.dbg.initial_break is True
    assert (live.is_live, live.dump_kind, live.crash_time, live.os_build) == (True, None, None, offline.os_build)
    assert live.modules() == offline.modules()
    assert live.kernel_anchors() == offline.kernel_anchors()        # nt symbols: no dump header when live
    assert [c.to_json() for c in live.processor_contexts()] == [c.to_json() for c in offline.processor_contexts()]
    assert live.dbg.calls["cmd .dumpdebug"] == 0


def test_kdnet_attach_with_no_kernel_answering_is_one_line_error():
    with pytest.raises(PytriageError) as caught:
        PybagTarget.attach_kdnet("net:port=50001,key=9.9.9.9", fake_pybag)
    assert "vertarget" in str(caught.value) and "\n" not in str(caught.value)


def test_pybag_missing_is_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pybag", None)
    with pytest.raises(PytriageError) as caught:
        import_pybag()
    assert "pybag" in str(caught.value) and "\n" not in str(caught.value)


def test_importing_pytriage_does_not_import_pybag():
    code = ("import sys, pytriage, pytriage.cli, pytriage.target.pybag_target\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pybag'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
