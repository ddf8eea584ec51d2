"""`PykdTarget` over a fake pykd backed by the offline engine: same facts, same reads, same triage (issue 9).

The fake (tests/fakes/pykd.py) reproduces pykd's real names, return types and exceptions and counts what it
serves, so these tests also hold the bridge to its read budget: ``!pytriage`` under 256 KB through pykd.
"""

import subprocess
import sys

import pytest

from pytriage.analysis.triage.engine import triage
from pytriage.analysis.triage.modules import default_classifier
from pytriage.errors import MemoryReadError, PytriageError
from pytriage.scenarios import build_builtin
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.symbolizer import Symbolizer
from pytriage.symbols.sympath import resolve_symbol_path
from pytriage.target.offline import OfflineDumpTarget
from pytriage.target.pykd_target import PykdTarget
from tests.fakes import pykd as fake_pykd

SCENARIOS = ("basic", "nwifi-completion", "pool-overrun-pattern", "vpn-lwf-doublefault")
BUDGET = 256 * 1024
UNMAPPED = (0x0, 0x1000, 0xFFFF800000000000, 0xFFFFF6FB7DBED000 - 0x123456000, 0x00007FF000000000)


@pytest.fixture(scope="module", params=SCENARIOS)
def built(request, tmp_path_factory):
    return build_builtin(request.param, str(tmp_path_factory.mktemp(request.param)), "bitmap")


@pytest.fixture()
def pair(built):
    fake = fake_pykd.FakePykd(built.dump_path)
    offline = OfflineDumpTarget.open(built.dump_path)
    yield PykdTarget(fake), offline, fake
    offline.close()
    fake.close()


def sample_addresses(offline, built):
    """Module headers and sections, the crash stack, and pool pages the scenario placed."""
    out = []
    for m in offline.modules():
        out += [m.base, m.base + 0x40, m.base + 0x1000, m.end - 8]
    rsp = offline.context_record()["rsp"]
    out += [rsp - 0x100, rsp, rsp + 0x238]
    pool = built.spec.pool
    for page in (pool.pages if pool is not None else []):
        out += [page.va, page.va + 0x10, page.va + 0xFF0]
    out += list(built.nbl_addresses.values())
    out += [built.kernel_symbols[name] for name in ("KiProcessorBlock", "PsLoadedModuleList")]
    return out


def test_facts_match_offline(pair):
    target, offline, _ = pair
    assert target.machine == offline.machine == "AMD64"
    assert target.pointer_size == 8
    assert target.os_build == offline.os_build
    assert target.is_live is False
    assert target.dump_kind == offline.dump_kind == "bitmap"
    assert target.crash_time == float(int(offline.crash_time))     # pykd's currentTime: whole seconds
    assert target.bugcheck() == offline.bugcheck()
    ours = target.context_record()
    theirs = dict(offline.context_record())
    theirs.pop("context_flags")                                    # no register behind it in DbgEng
    assert ours == theirs
    assert target.kernel_anchors() == offline.kernel_anchors()
    assert target.processor_contexts() == offline.processor_contexts()
    running = [c.current_thread for c in offline.processor_contexts() if c.current_thread]
    assert running
    for thread in running:
        assert target.thread_start(thread) == offline.thread_start(thread)


def test_modules_match_offline(pair):
    target, offline, _ = pair
    ours, theirs = target.modules(), offline.modules()
    assert len(ours) == len(theirs) > 1
    for a, b in zip(ours, theirs):
        # DbgEng's image name has no directory in kernel mode: the loader's full path is not in pykd's API.
        assert (a.name, a.base, a.size, a.timestamp, a.checksum, a.debugger_name) == \
            (b.name, b.base, b.size, b.timestamp, b.checksum, b.debugger_name)
        assert a.image_path == b.name
    assert target.module_at(theirs[1].base + 0x10) == ours[1]


def test_reads_match_offline(pair, built):
    target, offline, fake = pair
    addresses = sample_addresses(offline, built)
    assert len(addresses) >= 20
    for va in addresses:
        for size in (1, 8, 0x30, 0x1800):
            try:
                expected = offline.read(va, size)
            except MemoryReadError as exc:
                with pytest.raises(MemoryReadError) as got:
                    target.read(va, size)
                assert (got.value.address, got.value.physical) == (exc.address, exc.physical)
            else:
                assert target.read(va, size) == expected
    # one loadBytes per page the cache did not have: never byte by byte
    assert fake.calls["loadBytes"] == target.stats.read_calls
    assert fake.bytes_served == target.stats.bytes_read


def test_unmapped_addresses_raise_the_same_error(pair):
    target, offline, _ = pair
    for va in UNMAPPED:
        with pytest.raises(MemoryReadError) as theirs:
            offline.read(va, 16)
        with pytest.raises(MemoryReadError) as ours:
            target.read(va, 16)
        assert ours.value.address == theirs.value.address == va
        assert "%08x`%08x" % (va >> 32, va & 0xFFFFFFFF) in str(ours.value)
        assert "\n" not in str(ours.value)
        assert target.is_valid(va) is False


def test_physical_reads_match_offline(pair):
    target, offline, fake = pair
    pa = offline.dump.translate(offline.modules()[0].base)
    assert target.read_physical(pa, 0x20) == offline.read_physical(pa, 0x20)
    assert fake.reads[-1] == (pa, 0x20, True)


def test_pykd_errors_become_pytriage_errors(pair):
    target, _, fake = pair

    def broken(*_args):
        raise fake.DbgException("IDebugControl::ReadBugCheckData failed")

    fake.bugCheckData = broken
    with pytest.raises(PytriageError) as got:
        target.bugcheck()
    assert not isinstance(got.value, MemoryReadError)
    assert str(got.value) == "pykd.bugCheckData failed: IDebugControl::ReadBugCheckData failed"


def run_triage(target, built):
    symbolizer = Symbolizer(target, store=SymbolStore(resolve_symbol_path("srv*" + built.symstore_path)),
                            isf_dirs=[])
    try:
        return triage(target, symbolizer, default_classifier())
    finally:
        symbolizer.close()


def test_triage_is_the_same_through_pykd(pair, built):
    target, offline, fake = pair
    ours, theirs = run_triage(target, built), run_triage(offline, built)
    assert fake.bytes_served < BUDGET, "triage read %d bytes through pykd" % fake.bytes_served
    assert fake.bytes_served == target.stats.bytes_read
    assert fake.calls["loadBytes"] == target.stats.read_calls
    ours, theirs = dict(ours), dict(theirs)
    for record in (ours, theirs):
        record.pop("stats", None)
    # pykd's currentTime has whole seconds; the dump header 100 ns units
    assert ours["dump"].pop("crash_time") == int(theirs["dump"].pop("crash_time"))
    assert ours == theirs


def test_core_does_not_import_pykd():
    code = ("import sys, pytriage, pytriage.target, pytriage.target.offline, pytriage.target.pykd_target, "
            "pytriage.analysis.triage.engine; print('pykd' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pykd_is_imported_lazily(built):
    modules = {}
    fake = fake_pykd.install(built.dump_path, modules)
    saved = sys.modules.get("pykd")
    sys.modules["pykd"] = modules["pykd"]
    try:
        target = PykdTarget()
        assert target.pykd is fake
        assert target.bugcheck() == fake.bugCheckData()[:1] + (fake.bugCheckData()[1:],)
    finally:
        if saved is None:
            sys.modules.pop("pykd", None)
        else:
            sys.modules["pykd"] = saved
        fake.close()
