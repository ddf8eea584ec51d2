"""The debugger entry points (`!py -m pytriage.pyext.*`) run the command line's code on the debugger's target.

Here the target is our offline one behind the runner's factory, so what is checked is the entry layer
itself: argv handling, identical output to `pytriage <command> DUMP`, one-line errors, no re-entrancy.
The pykd and pybag targets are checked against the offline one in tests/target.
"""

import io
import json

import pytest

from pytriage import cli
from pytriage.pyext import runner
from pytriage.scenarios import build_builtin
from pytriage.target.offline import OfflineDumpTarget


@pytest.fixture(scope="module")
def nwifi(tmp_path_factory):
    return build_builtin("nwifi-completion", str(tmp_path_factory.mktemp("pyext")), "bitmap")


def offline(built):
    return lambda: OfflineDumpTarget.open(built.dump_path)


def cli_output(capsys, *argv):
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command, extra", [
    ("analyze", ["-v"]),
    ("pooltag", ["@filt562+0x30"]),
    ("nblwalk", ["@seed", "-v"]),
])
def test_entry_prints_what_the_command_line_prints(capsys, nwifi, command, extra):
    extra = [("%x" % nwifi.nbl_addresses[a[1:].split("+")[0]] if "+" not in a else
              "%x" % (nwifi.nbl_addresses[a[1:].split("+")[0]] + int(a.split("+")[1], 16)))
             if a.startswith("@") else a for a in extra]
    symbols = ["--symbols", "srv*" + nwifi.symstore_path]
    expected = cli_output(capsys, command, nwifi.dump_path, *(extra + symbols))
    assert runner.run(command, extra + symbols, target_factory=offline(nwifi)) == 0
    assert capsys.readouterr().out == expected


def test_json_differs_only_in_the_dump_name(capsys, nwifi):
    symbols = ["--symbols", "srv*" + nwifi.symstore_path]
    expected = json.loads(cli_output(capsys, "analyze", nwifi.dump_path, "--json", *symbols))
    assert runner.run("analyze", ["--json"] + symbols, target_factory=offline(nwifi)) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["dump"].pop("path") == "<debugger>" and expected["dump"].pop("path") == "nwifi-completion-bitmap.dmp"
    assert got == expected


def test_usage_errors_are_argparse_lines_not_tracebacks(capsys, nwifi):
    assert runner.run("nblwalk", [], target_factory=offline(nwifi)) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: !nblwalk") and "Traceback" not in err


def test_errors_are_one_line_named_after_the_debugger_command(nwifi):
    out = io.StringIO()
    assert runner.run("nblwalk", ["nosuchmodule!Symbol"], target_factory=offline(nwifi), out=out) == 2
    assert out.getvalue().startswith("pytriage: !nblwalk: ") and out.getvalue().count("\n") == 1


def test_a_command_cannot_start_while_another_runs(nwifi):
    inner = io.StringIO()
    codes = []

    def reentrant():
        codes.append(runner.run("pooltag", ["-t", "Filt"], target_factory=offline(nwifi), out=inner))
        return OfflineDumpTarget.open(nwifi.dump_path)

    assert runner.run("pooltag", ["-t", "Filt", "--symbols", "srv*" + nwifi.symstore_path],
                      target_factory=reentrant, out=io.StringIO()) == 0
    assert codes == [2]
    assert inner.getvalue() == ("pytriage: !pooltag: another pytriage command is still running in this debugger "
                                "session\n")
    assert runner._running is False          # released again, also after the refusal


def test_install_debugger_ext_prints_the_two_lines(capsys):
    import os
    assert cli.main(["install-debugger-ext"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ".load pykd"
    assert lines[1].startswith(".scriptload ") and lines[1].endswith("pytriage.js")
    assert os.path.isfile(lines[1].split(" ", 1)[1])
