"""Every command, every built-in scenario, three targets, one output.

`!py -m pytriage.pyext.<command> args` runs as pykd runs it (runpy, ``sys.argv``, ``__name__ == "__main__"``)
with the fake pykd (tests/fakes/pykd.py) in ``sys.modules``, and again on a PybagTarget over the fake pybag
(tests/fakes/pybag.py): each prints, byte for byte, what `pytriage <command> DUMP` prints offline. The bytes
read through pykd stay under issue 9's budgets (`!pytriage` < 256 KB, `!pooltag` < 16 KB, `!nblwalk` < 1 KB
per NBL without packets).
"""

import runpy
import sys

import pytest

from pytriage import cli
from pytriage.scenarios import build_builtin, builtin_names
from tests.fakes import pykd as fake_pykd

SCENARIOS = [name for name, _ in builtin_names()]
BUDGET_TRIAGE = 256 * 1024
BUDGET_POOLTAG = 16 * 1024
BUDGET_PER_NBL = 1024


@pytest.fixture(scope="module", params=SCENARIOS)
def built(request, tmp_path_factory):
    return build_builtin(request.param, str(tmp_path_factory.mktemp(request.param)), "bitmap")


def under_pykd(capsys, built, module, argv):
    """Run the entry module as `!py -m` does, on a fresh fake pykd; (output, bytes served by pykd)."""
    fake = fake_pykd.install(built.dump_path)
    saved = sys.argv
    sys.argv = ["pytriage.pyext.%s" % module] + argv        # what `!py -m module args` sets
    try:
        runpy.run_module("pytriage.pyext.%s" % module, run_name="__main__", alter_sys=False)
    finally:
        sys.argv = saved
        served = fake.bytes_served
        fake_pykd.uninstall(fake)
    return capsys.readouterr().out, served


def offline(capsys, *argv):
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


def test_pytriage_is_the_same_through_pykd(capsys, built):
    symbols = ["--symbols", "srv*" + built.symstore_path]
    expected = offline(capsys, "analyze", built.dump_path, *symbols)
    out, served = under_pykd(capsys, built, "pytriage", symbols)
    assert out == expected
    assert 0 < served < BUDGET_TRIAGE


def test_pooltag_is_the_same_through_pykd(capsys, built):
    """On the crash's own pool evidence when the scenario has some, else on its first NBL-section block."""
    import json
    symbols = ["--symbols", "srv*" + built.symstore_path]
    record = json.loads(offline(capsys, "analyze", built.dump_path, "--json", *symbols))
    addresses = [p["address"] for p in record["pool"]] or ["%x" % a for a in list(built.nbl_addresses.values())[:1]]
    if not addresses:                            # no pool in this scenario: the tag mode instead
        addresses = ["-t", "Filt"]
    argv = ([addresses[0]] if addresses[0] != "-t" else addresses) + ["--no-scan"] + symbols
    expected = offline(capsys, "pooltag", built.dump_path, *argv)
    out, served = under_pykd(capsys, built, "pooltag", argv)
    assert out == expected
    assert served < BUDGET_POOLTAG or addresses[0] == "-t"


def test_nblwalk_is_the_same_through_pykd(capsys, built):
    if not built.nbl_addresses:
        return                                   # scenarios without an NBL section have nothing to walk
    demo = built.spec.nbl.demo or next(iter(built.nbl_addresses))
    argv = ["%x" % built.nbl_addresses[demo], "--symbols", "srv*" + built.symstore_path]
    expected = offline(capsys, "nblwalk", built.dump_path, *argv)
    out, _ = under_pykd(capsys, built, "nblwalk", argv)
    assert out == expected


def test_nblwalk_reads_under_1kb_per_nbl_through_pykd(capsys, tmp_path):
    """The cost of one more NBL, structures only: a 100-NBL send chain against its last NBL alone (the
    difference leaves out what every command reads once: module headers, the images' CodeView records)."""
    import json

    from pytriage.scenarios import builtin_path
    from pytriage.scenarios.builder import build_scenario
    from pytriage.scenarios.spec import parse_spec
    with open(builtin_path("nbl-zoo"), encoding="utf-8") as fh:
        doc = json.load(fh)
    syn = next(n for n in doc["nbl"]["nbls"] if n["id"] == "syn")        # a TCP SYN, 54 bytes
    count = 100
    doc["nbl"]["nbls"] = [dict(syn, id="q%d" % i, next="@q%d" % (i + 1) if i + 1 < count else None)
                          for i in range(count)]
    doc["nbl"].pop("demo", None)
    doc["nbl"].pop("writes", None)                                       # they name NBLs left out here
    chain = build_scenario(parse_spec(doc), str(tmp_path), "bitmap")
    lean = ["--no-packets", "--no-owners", "--no-dot11", "--json", "--max", "1000",
            "--symbols", "srv*" + chain.symstore_path]
    walked, served_all = under_pykd(capsys, chain, "nblwalk", ["%x" % chain.nbl_addresses["q0"]] + lean)
    one, served_one = under_pykd(capsys, chain, "nblwalk", ["%x" % chain.nbl_addresses["q%d" % (count - 1)]] + lean)
    assert (json.loads(walked)["count"], json.loads(one)["count"]) == (count, 1)
    assert (served_all - served_one) / (count - 1) < BUDGET_PER_NBL


@pytest.mark.parametrize("command", ["analyze", "pooltag", "nblwalk"])
def test_pybag_target_prints_the_same(capsys, built, command):
    """The headless DbgEng host (pybag, faked in tests/fakes/pybag.py) gives the same output again."""
    from pytriage.pyext.runner import run
    from pytriage.target.pybag_target import PybagTarget
    from tests.fakes import pybag as fake_pybag
    symbols = ["--symbols", "srv*" + built.symstore_path]
    if command == "analyze":
        argv = symbols
    elif command == "pooltag":
        argv = ["-t", "Filt", "--no-scan"] + symbols
    elif built.nbl_addresses:
        argv = ["%x" % built.nbl_addresses[built.spec.nbl.demo or next(iter(built.nbl_addresses))]] + symbols
    else:
        return                                   # no NBL section: nothing to walk
    expected = offline(capsys, command, built.dump_path, *argv)
    assert run(command, argv, target_factory=lambda: PybagTarget.open_dump(built.dump_path, fake_pybag)) == 0
    assert capsys.readouterr().out == expected
