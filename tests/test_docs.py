"""The documentation stays true: its examples run and say what the tool prints."""

import json
import os
import re

from pytriage import cli
from pytriage.scenarios.builder import build_scenario
from pytriage.scenarios.spec import parse_spec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(REPO, name), encoding="utf-8") as fh:
        return fh.read()


def test_scenarios_md_example_builds_and_reads_back(tmp_path, capsys):
    doc = json.loads(re.search(r"```json\n(.*?)```", _read("docs/scenarios.md"), re.S).group(1))
    built = build_scenario(parse_spec(doc), str(tmp_path))
    assert os.path.basename(built.dump_path) == "filter-d1-bitmap.dmp"
    assert cli.main(["info", "--json", built.dump_path]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert [m["module"] for m in rec["modules"]] == ["nt", "ndis", "contosolwf"]
    assert rec["bugcheck"]["code"] == "0x000000d1"
    # the region marked "present": false is mapped but not saved
    assert built.expected(0xFFFFC08BE0102000, 1) is None
    assert cli.main(["db", built.dump_path, "ffffc08b`e0102000", "-l", "0x10"]) == 2
    assert "not present in the dump" in capsys.readouterr().err


def test_cli_md_sample_output_matches_the_real_dump(capsys, triage_dump_path):
    sample = re.search(r"```\n(Dump file: .*?)```", _read("docs/cli.md"), re.S).group(1)
    assert cli.main(["info", triage_dump_path]) == 0
    real = capsys.readouterr().out.splitlines()
    shown = [line for line in sample.splitlines() if line and line != "..."]
    for line in shown:
        assert line in real, line


def test_readme_has_the_two_setup_commands():
    readme = _read("README.md")
    assert "pip install -e . && pytriage demo" in readme
    assert "./scripts/test" in readme
    assert os.access(os.path.join(REPO, "scripts", "test"), os.X_OK)


def test_symbols_md_sym_examples_are_what_the_tool_prints(capsys, tmp_path, triage_dump_path):
    """The two `pytriage sym` outputs shown in docs/symbols.md, produced from the corpus store on disk."""
    doc = _read("docs/symbols.md")
    shown = re.findall(r"^\$ pytriage sym triage_x64\.dmp (\S+) --symbols .*\n(.+)$", doc, re.M)
    assert len(shown) == 2
    store = os.path.join(os.path.dirname(REPO), "shared", "corpus", "symstore")
    for query, expected in shown:
        assert cli.main(["sym", triage_dump_path, query, "--symbols", "srv*%s*%s" % (tmp_path, store)]) == 0
        assert capsys.readouterr().out.strip() == expected


def test_cli_md_stack_example_is_what_the_tool_prints(capsys, tmp_path, triage_dump_path):
    """The `pytriage stack` example in docs/cli.md, from the corpus store on disk (the doc's HTTP server
    serves the same files); lines naming the cache folder differ only by that folder."""
    doc = _read("docs/cli.md")
    block = re.search(r"```\n\$ pytriage stack triage_x64\.dmp (.*?) --symbols .*?\n(.*?)```", doc, re.S)
    args = block.group(1).split()
    corpus = os.path.join(os.path.dirname(REPO), "shared", "corpus")
    sympath = "srv*%s*%s;%s" % (tmp_path, os.path.join(corpus, "symstore"), os.path.join(corpus, "symbols"))
    assert cli.main(["stack", triage_dump_path] + args + ["--symbols", sympath]) == 0
    real = capsys.readouterr().out.replace(str(tmp_path), "./cache").splitlines()
    shown = [line for line in block.group(2).splitlines() if line != "..."]
    assert [line for line in real if line in shown] == shown


def test_readme_nblwalk_example_is_the_seed_nbl(tmp_path, capsys):
    """README walks nbl-zoo's seed NBL by address: that address must stay the seed NBL's."""
    from pytriage.scenarios import build_builtin

    address = re.search(r"pytriage nblwalk DIR/nbl-zoo-bitmap\.dmp (\S+)", _read("README.md")).group(1)
    built = build_builtin("nbl-zoo", str(tmp_path), "bitmap")
    assert int(address.replace("`", ""), 16) == built.nbl_addresses["seed"]
    assert cli.main(["nblwalk", built.dump_path, address, "--symbols", built.symstore_path]) == 0
    assert "the driver below nwifi (vwifimf.sys)" in capsys.readouterr().out


def test_windbg_md_sample_is_what_pytriage_prints(tmp_path, capsys):
    """docs/windbg.md shows part of `!pytriage` on nwifi-completion: it must be the command's real output."""
    from pytriage.scenarios import build_builtin

    doc = _read(os.path.join("docs", "windbg.md"))
    sample = re.search(r"### What you see.*?```\n(.*?)```", doc, re.DOTALL).group(1)
    built = build_builtin("nwifi-completion", str(tmp_path), "bitmap")
    assert cli.main(["analyze", built.dump_path, "--symbols", "srv*" + built.symstore_path]) == 0
    assert sample in capsys.readouterr().out
