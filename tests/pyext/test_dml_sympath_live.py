"""What the debugger adds to a command: DML links, the session's symbol path, and `pytriage live` over KDNET.

- DML: under pykd (its stdout has ``writedml``) the output is DML whose text, once the markup is taken out, is
  byte for byte what the command line prints; the follow-up commands are links that run.
- Symbol path: without ``--symbols`` a command uses the debugger's ``.sympath`` (pykd's getSymbolPath, or
  DbgEng's ``.sympath`` output through pybag).
- ``pytriage live --kdnet``: attaches through the fake pybag, runs the command, detaches.
"""

import html
import io
import re
import runpy
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytriage import cli
from pytriage.errors import PytriageError
from pytriage.pyext.dml import is_linkable, to_dml
from pytriage.scenarios import build_builtin
from pytriage.target.pybag_target import PybagTarget
from tests.fakes import pybag as fake_pybag
from tests.fakes import pykd as fake_pykd

EXEC = re.compile(r'<exec cmd="([^"]*)">(.*?)</exec>')


def plain(dml: str) -> str:
    """DML as a console shows it: the markup dropped, the entities decoded (our own reading, not the code's)."""
    return html.unescape(re.sub(r"</?exec[^>]*>", "", dml))


def links(dml: str):
    return [(html.unescape(cmd), html.unescape(text)) for cmd, text in EXEC.findall(dml)]


@pytest.fixture(scope="module")
def nwifi(tmp_path_factory):
    return build_builtin("nwifi-completion", str(tmp_path_factory.mktemp("nwifi")), "bitmap")


class DbgOut(io.StringIO):
    """pykd's sys.stdout in the debugger (pykd/pydbgio.h: DbgOut has write and writedml)."""

    def __init__(self) -> None:
        super().__init__()
        self.dml: list = []

    def writedml(self, text: str) -> None:
        self.dml.append(text)


def run_under_pykd(monkeypatch, built, module, argv, symbol_path="", stdout=None):
    fake = fake_pykd.install(built.dump_path)
    fake.symbol_path = symbol_path
    stream = stdout if stdout is not None else DbgOut()
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setattr(sys, "argv", ["pytriage.pyext.%s" % module] + argv)
    try:
        runpy.run_module("pytriage.pyext.%s" % module, run_name="__main__", alter_sys=False)
    finally:
        fake_pykd.uninstall(fake)
        monkeypatch.undo()
    return stream, fake


def offline(capsys, *argv):
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


# -- DML ---------------------------------------------------------------------------------------------------


def test_dml_links_the_next_commands_and_keeps_the_text(monkeypatch, capsys, nwifi):
    symbols = ["--symbols", "srv*" + nwifi.symstore_path]
    expected = offline(capsys, "analyze", nwifi.dump_path, *symbols)
    stream, fake = run_under_pykd(monkeypatch, nwifi, "pytriage", symbols)
    assert stream.getvalue() == ""                       # everything went out as DML, in one piece
    assert len(stream.dml) == 1
    assert plain(stream.dml[0]) == expected
    found = links(stream.dml[0])
    assert (".trap ffff8401`32b05380", ".trap ffff8401`32b05380") in found
    assert ("kn", "kn") in found
    assert ("lmvm vwifimf", "lmvm vwifimf") in found
    assert ("!py -m pytriage.pyext.nblwalk ffffda8a`cc2e02b0", "!nblwalk ffffda8a`cc2e02b0") in found
    assert ("ln 0xfffff80140401c45", "ln 0xfffff80140401c45") in found
    assert ("!py -m pytriage.pyext.pytriage -v", "!pytriage -v") in found
    # placeholders, bare context resets and shell commands are not links
    texts = [text for _, text in found]
    assert "!nblwalk <NBL>" not in texts and ".trap" not in texts and ".cxr" not in texts
    assert not any(text.startswith("verifier") for text in texts)


def test_dml_links_nbl_and_pool_addresses_in_nblwalk(monkeypatch, capsys, nwifi):
    argv = ["ffffda8acc2e02b0", "--symbols", "srv*" + nwifi.symstore_path]
    expected = offline(capsys, "nblwalk", nwifi.dump_path, *argv)
    stream, _ = run_under_pykd(monkeypatch, nwifi, "nblwalk", argv)
    assert plain(stream.dml[0]) == expected
    found = links(stream.dml[0])
    assert ("!py -m pytriage.pyext.pooltag ffffda8a`cc2e0230", "ffffda8a`cc2e0230") in found    # the Filt block
    assert ("!py -m pytriage.pyext.nblwalk ffffda8a`cc2e02b0", "ffffda8a`cc2e02b0") in found    # NBL #0


def test_dml_can_be_turned_off(monkeypatch, capsys, nwifi):
    symbols = ["--symbols", "srv*" + nwifi.symstore_path]
    expected = offline(capsys, "analyze", nwifi.dump_path, *symbols)
    monkeypatch.setenv("PYTRIAGE_DML", "0")
    stream, _ = run_under_pykd(monkeypatch, nwifi, "pytriage", symbols)
    assert stream.dml == [] and stream.getvalue() == expected


def test_dml_escapes_markup_from_the_dump():
    text = ('NEXT COMMANDS:\n  !nblwalk ffffda8a`cc2e02b0\n'
            'name <script>alert("x")</script> & `kv` in pool block ffffda8acc2e0230')
    dml = to_dml(text)
    assert "<script>" not in dml and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; " in dml
    assert plain(dml) == text
    assert links(dml) == [("!py -m pytriage.pyext.nblwalk ffffda8a`cc2e02b0", "!nblwalk ffffda8a`cc2e02b0"),
                          ("kv", "kv"), ("!py -m pytriage.pyext.pooltag ffffda8acc2e0230", "ffffda8acc2e0230")]


@pytest.mark.parametrize("command, expected", [
    ("kn", True), (".trap ffff8401`32b05380", True), ("!pytriage -v", True), ("lmvm vwifimf", True),
    (".trap", False), (".cxr", False), ("!nblwalk <NBL>", False), ("verifier /flags 0x1 /driver a.sys", False),
    ("vwifimf", False), ("", False)])
def test_which_commands_become_links(command, expected):
    assert is_linkable(command) is expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_dml_text_is_always_the_input(text):
    assert plain(to_dml(text)) == text


# -- symbol path -------------------------------------------------------------------------------------------


def test_without_symbols_the_debuggers_sympath_is_used(monkeypatch, capsys, nwifi):
    monkeypatch.delenv("_NT_SYMBOL_PATH", raising=False)
    with_symbols = offline(capsys, "analyze", nwifi.dump_path, "--symbols", "srv*" + nwifi.symstore_path)
    stream, fake = run_under_pykd(monkeypatch, nwifi, "pytriage", [], symbol_path="srv*" + nwifi.symstore_path,
                                  stdout=io.StringIO())
    assert stream.getvalue() == with_symbols
    assert fake.calls["getSymbolPath"] == 1
    # and without a debugger symbol path the same command has no PDBs: the path really came from pykd
    stream, _ = run_under_pykd(monkeypatch, nwifi, "pytriage", [], symbol_path="", stdout=io.StringIO())
    assert stream.getvalue() != with_symbols and "no PDB" not in with_symbols and "no PDB" in stream.getvalue()


def test_given_symbols_beat_the_debuggers(monkeypatch, capsys, nwifi, tmp_path):
    expected = offline(capsys, "analyze", nwifi.dump_path, "--symbols", "srv*" + nwifi.symstore_path)
    stream, fake = run_under_pykd(monkeypatch, nwifi, "pytriage", ["--symbols", "srv*" + nwifi.symstore_path],
                                  symbol_path=str(tmp_path / "elsewhere"), stdout=io.StringIO())
    assert stream.getvalue() == expected and fake.calls["getSymbolPath"] == 0


def test_pybag_reads_the_engines_sympath(nwifi):
    target = PybagTarget.open_dump(nwifi.dump_path, fake_pybag)
    assert target.debugger_symbol_path() is None                     # "<empty>"
    target.dbg.symbol_path = r"srv*C:\symcache*https://msdl.microsoft.com/download/symbols"
    assert target.debugger_symbol_path() == r"srv*C:\symcache*https://msdl.microsoft.com/download/symbols"
    target.close()


@pytest.mark.parametrize("path", ['C:\\dumps\\a".dmp', "C:\\dumps\\a.dmp\n.shell calc"])
def test_opendump_refuses_paths_that_would_rewrite_the_command(path):
    with pytest.raises(PytriageError) as caught:
        PybagTarget.open_dump(path, fake_pybag)
    assert "quote or a control character" in str(caught.value)


# -- pytriage live -----------------------------------------------------------------------------------------


class RecordingKernelDbg(fake_pybag.KernelDbg):
    made: list = []

    def __init__(self) -> None:
        super().__init__()
        RecordingKernelDbg.made.append(self)


@pytest.fixture
def live_pybag(monkeypatch, nwifi):
    monkeypatch.setitem(sys.modules, "pybag", fake_pybag)
    monkeypatch.setattr(fake_pybag, "KernelDbg", RecordingKernelDbg)
    RecordingKernelDbg.made = []
    fake_pybag.serve_kdnet("net:port=50000,key=1.2.3.4", nwifi.dump_path)
    return RecordingKernelDbg


def test_live_kdnet_triage_and_detach(capsys, live_pybag, nwifi):
    symbols = ["--symbols", "srv*" + nwifi.symstore_path]
    # --scan: a live target scans drivers' code for pool tags only when asked (each byte crosses KDNET)
    assert cli.main(["live", "--kdnet", "port=50000,key=1.2.3.4", "pytriage", "--json", "--scan"] + symbols) == 0
    import json
    record = json.loads(capsys.readouterr().out)
    assert record["culprit"]["binary"] == "vwifimf.sys"
    assert record["buckets"]["network_bucket_id"] == "NBL_COMPLETION_STACK_CORRUPT_vwifimf.sys"
    assert record["dump"]["path"] == "<debugger>" and record["dump"]["crash_time"] is None
    dbg = live_pybag.made[0]
    assert dbg.initial_break is True
    assert (dbg.calls["detach"], dbg.calls["Release"]) == (1, 1)     # the machine runs on afterwards


def test_live_nblwalk_matches_offline(capsys, live_pybag, nwifi):
    argv = ["ffffda8acc2e02b0", "--scan", "--symbols", "srv*" + nwifi.symstore_path]   # --scan: as offline
    expected = offline(capsys, "nblwalk", nwifi.dump_path, *argv)
    assert cli.main(["live", "--kdnet", "net:port=50000,key=1.2.3.4", "nblwalk"] + argv) == 0
    assert capsys.readouterr().out == expected


def test_live_with_no_kernel_answering_is_one_line(capsys, live_pybag):
    assert cli.main(["live", "--kdnet", "port=50009,key=9.9.9.9", "pytriage"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pytriage: pytriage live pytriage: KDNET attach") or "vertarget" in err
    assert err.count("\n") == 1 and "9.9.9.9" not in err.split(":", 2)[1]
    assert "Traceback" not in err


def test_live_without_pybag_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pybag", None)
    assert cli.main(["live", "--kdnet", "port=50000,key=1.2.3.4", "pooltag", "-t", "Filt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pybag" in err and "Traceback" not in err
