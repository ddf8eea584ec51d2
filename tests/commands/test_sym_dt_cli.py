"""`pytriage sym` and `pytriage dt` end to end on REAL data and on scenario dumps.

The real chain (issue 4): a plain, case-sensitive ``http.server`` serves the corpus symbol store
(Microsoft's amdppm.sys / amdppm.pdb, lower-case keys as copied to Linux); from the triage dump's driver
list the tool fetches amdppm.sys by TimeDateStamp/SizeOfImage, reads its CodeView record, fetches the
PDB by GUID/age and names the faulting instruction exactly as the corpus facts do.
"""

import functools
import http.server
import json
import os
import threading

import pytest

from pytriage import cli
from tests.conftest import CORPUS

SYMSTORE = os.path.join(CORPUS, "symstore")
KERNEL_ISF_DIR = os.path.join(CORPUS, "symbols")
FAULT = "0xfffff8048b58334c"


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):        # keep pytest output clean; requests are recorded instead
        pass

    def do_GET(self):
        self.server.requests.append((self.path, None))
        super().do_GET()
        self.server.requests[-1] = (self.path, self._status)

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)


@pytest.fixture()
def corpus_server():
    handler = functools.partial(_LoggingHandler, directory=SYMSTORE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sym_fetches_image_then_pdb_from_a_real_store(capsys, tmp_path, corpus_server, triage_dump_path,
                                                     triage_facts):
    url = "http://127.0.0.1:%d" % corpus_server.server_address[1]
    sympath = "srv*%s*%s" % (tmp_path / "cache", url)
    code, out, err = run(capsys, "sym", triage_dump_path, FAULT, "--symbols", sympath)
    assert (code, err) == (0, "")
    assert out == "amdppm!WriteIoMemRawEx+0x70\n"
    assert triage_facts["bugcheck"]["parameters"][1] == FAULT
    fetched = [(path, status) for path, status in corpus_server.requests if status == 200]
    assert fetched == [("/amdppm.sys/c9c030003b000/amdppm.sys", 200),
                       ("/amdppm.pdb/1C19FDDB27BB3399D9B45973EFEAFCF31/amdppm.pdb", 200)]
    # second run: everything from the cache, not one request
    before = len(corpus_server.requests)
    code, out, _ = run(capsys, "sym", triage_dump_path, FAULT, "--json", "--symbols", sympath)
    record = json.loads(out)["results"][0]
    assert len(corpus_server.requests) == before
    assert record["text"] == "amdppm!WriteIoMemRawEx+0x70" and record["source"] == "pdb"
    assert record["module_symbols"]["pdb"] == {"name": "amdppm.pdb", "guid": "1C19FDDB27BB3399D9B45973EFEAFCF3",
                                               "age": 1}
    assert record["module_symbols"]["image_file"] == str(tmp_path / "cache" / "amdppm.sys" / "C9C030003b000" /
                                                         "amdppm.sys")


def test_sym_name_to_address_and_kernel_names_from_isf(capsys, tmp_path, corpus_server, triage_dump_path):
    url = "http://127.0.0.1:%d" % corpus_server.server_address[1]
    sympath = "srv*%s*%s;%s" % (tmp_path / "cache", url, KERNEL_ISF_DIR)
    code, out, err = run(capsys, "sym", triage_dump_path, "amdppm!WriteIoMemRawEx", "fffff804`7bdf5a80",
                         "nt!KeBugCheckEx", "--symbols", sympath)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["fffff804`8b5832dc amdppm!WriteIoMemRawEx", "nt!KeBugCheckEx",
                                "fffff804`7bdf5a80 nt!KeBugCheckEx"]


def test_sym_without_symbols_is_module_plus_offset_and_says_why(capsys, tmp_path, triage_dump_path):
    code, out, err = run(capsys, "sym", triage_dump_path, FAULT, "-v", "--symbols", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "amdppm+0x334c"
    assert "  symbols of amdppm: none" in lines
    assert "  note: image headers not in the dump" in lines


def test_sym_unknown_symbol_is_one_line_error(capsys, tmp_path, triage_dump_path):
    code, out, err = run(capsys, "sym", triage_dump_path, "amdppm!NoSuchFunction", "--symbols", str(tmp_path))
    assert code == 2 and out == ""
    assert err == "pytriage: error: symbol amdppm!NoSuchFunction not found\n"


def test_dt_layout_and_values_on_a_scenario(capsys, basic_full):
    sympath = basic_full.symbols_path
    code, out, err = run(capsys, "dt", basic_full.dump_path, "nt!_LIST_ENTRY", "--symbols", sympath)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["   +0x000 Flink            : Ptr64 _LIST_ENTRY",
                                "   +0x008 Blink            : Ptr64 _LIST_ENTRY"]
    # unqualified: the engine names the module it found the type in, and so do we
    code, out, err = run(capsys, "dt", basic_full.dump_path, "_LIST_ENTRY", "--symbols", sympath)
    assert out.splitlines()[0] == "nt!_LIST_ENTRY"
    lwf = next(m for m in basic_full.modules if m.spec.name == "contosolwf.sys")
    code, out, err = run(capsys, "dt", basic_full.dump_path, "nt!_KLDR_DATA_TABLE_ENTRY", "%x" % lwf.ldr_entry,
                         "--symbols", sympath)
    assert (code, err) == (0, "")
    values = {line.split(":", 1)[0].split()[-1]: line.split(":", 1)[1].strip() for line in out.splitlines()}
    assert values["DllBase"] == "0x%08x`%08x Void" % (lwf.spec.base >> 32, lwf.spec.base & 0xFFFFFFFF)
    assert values["SizeOfImage"] == "0x%x" % lwf.spec.size
    assert values["TimeDateStamp"] == "0x%x" % lwf.spec.timestamp
    assert values["BaseDllName"] == '_UNICODE_STRING "contosolwf.sys"'


def test_dt_builtin_layout_is_marked_and_json_is_stable(capsys, basic_full, tmp_path):
    code, out, err = run(capsys, "dt", basic_full.dump_path, "_NET_BUFFER_LIST", "--symbols", str(tmp_path))
    lines = out.splitlines()
    assert code == 0 and lines[0] == "_NET_BUFFER_LIST"
    assert "   +0x090 NetBufferListInfo : [27] Ptr64 Void" in lines     # padded to 16, longer names overflow
    assert lines[-1].startswith("(layout: builtin:documented (public WDK ndis/nbl.h")
    code, out, err = run(capsys, "dt", basic_full.dump_path, "DOT11_PACKET_CONTEXT", "--json",
                         "--symbols", str(tmp_path))
    record = json.loads(out)
    assert record["schema"] == "pytriage.dt/1" and record["address"] is None
    assert record["type"]["builds"] == "17134-17763"
    assert [(f["name"], f["offset"]) for f in record["type"]["fields"]][-3:] == [
        ("pTOS", 0x28), ("CmplArray", 0x30), ("pExtension", 0x1B0)]


def test_dt_unknown_type_is_one_line_error(capsys, basic_full, tmp_path):
    code, out, err = run(capsys, "dt", basic_full.dump_path, "nt!_NOPE", "--symbols", str(tmp_path))
    assert code == 2 and err.startswith("pytriage: error: type _NOPE not found")


def test_scenario_dumps_symbolize_fully_from_their_own_symbol_store(capsys, basic_bitmap):
    """The builder's PDBs and images (a store next to the dump) give every spec function its name via PDB."""
    sympath = "srv*%s" % basic_bitmap.symstore_path
    queries, expected = [], []
    for module in basic_bitmap.modules:
        for function in module.spec.functions:
            queries.append("%x" % (module.spec.base + function.rva + 1))
            expected.append((module.image.pdb_name, function.name))
    assert len(queries) >= 4
    code, out, err = run(capsys, "sym", basic_bitmap.dump_path, *queries, "--json", "--symbols", sympath)
    assert (code, err) == (0, "")
    results = json.loads(out)["results"]
    for record, (pdb_name, function) in zip(results, expected):
        assert (record["symbol"], record["displacement"], record["source"]) == (function, 1, "pdb")
        assert record["module_symbols"]["pdb"]["name"] == pdb_name


def test_dt_from_the_scenario_pdb_equals_dt_from_its_isf(capsys, basic_bitmap):
    """Two type sources the builder writes for nt (PDB through our PDB reader, ISF JSON) print the same."""
    outputs = []
    for sympath in ("srv*%s" % basic_bitmap.symstore_path, basic_bitmap.symbols_path):
        code, out, err = run(capsys, "dt", basic_bitmap.dump_path, "nt!_KLDR_DATA_TABLE_ENTRY", "--symbols", sympath)
        assert (code, err) == (0, "")
        outputs.append(out)
    assert outputs[0] == outputs[1]
    assert "   +0x09c TimeDateStamp    : Uint4B" in outputs[0].splitlines()


def test_sym_wildcard_lists_like_x(capsys, tmp_path, triage_dump_path):
    sympath = "srv*%s*%s" % (tmp_path, SYMSTORE)
    code, out, err = run(capsys, "sym", triage_dump_path, "amdppm!FxStub*", "--symbols", sympath)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "amdppm!FxStubDriverUnloadCommon", "amdppm!FxStubDriverUnload", "amdppm!FxStubBindClasses",
        "amdppm!FxStubUnbindClasses", "amdppm!FxStubInitTypes"]
    assert lines[4] == "fffff804`8b582b90 amdppm!FxStubInitTypes"       # the engine's `x` address
    code, out, err = run(capsys, "sym", triage_dump_path, "amdppm!NoSuch*", "--json", "--symbols", sympath)
    record = json.loads(out)["results"][0]
    assert (record["kind"], record["matches"], record["truncated"]) == ("pattern", [], False)
