"""`pytriage analyze` (`!pytriage`): the real corpus dump, the JSON schema, bad and missing input.

The seed scenarios' conclusions, and the same scenarios renamed and moved, are in test_triage_variants.py;
this file checks the REAL dump against its independent facts and the transcripts' bucket format, that every
record validates against the documented JSON Schema, and that what a dump cannot show is said and lowers
confidence instead of being guessed.
"""

import glob
import json
import os
import re
import shutil

import jsonschema
import pytest

from pytriage import cli
from pytriage.analysis.triage.modules import ModuleClassifier, load_classifier
from pytriage.errors import PytriageError

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "corpus")
SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "schemas", "pytriage.analyze-1.schema.json")
CORPUS_SYMBOLS = "srv*%s;%s" % (os.path.join(CORPUS, "symstore"), os.path.join(CORPUS, "symbols"))


@pytest.fixture(scope="module")
def schema():
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        doc = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


def analyze(capsys, *argv):
    code = cli.main(["analyze"] + list(argv) + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def transcript_buckets():
    """Every FAILURE_BUCKET_ID of the real WinDbg transcripts (the format our !analyze-style id follows)."""
    found = []
    for path in glob.glob(os.path.join(CORPUS, "transcripts", "*.txt")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            found += re.findall(r"^\s*FAILURE_BUCKET_ID:\s+(\S+)", fh.read(), re.M)
    return found


# -- the real corpus dump ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_record(triage_dump_path):
    import io
    import sys
    saved = sys.stdout
    sys.stdout = buffer = io.StringIO()
    try:
        assert cli.main(["analyze", triage_dump_path, "--symbols", CORPUS_SYMBOLS, "--json"]) == 0
    finally:
        sys.stdout = saved
    return json.loads(buffer.getvalue())


def test_corpus_bugcheck_is_named_and_explained(corpus_record, triage_facts, schema):
    jsonschema.validate(corpus_record, schema)
    bugcheck = corpus_record["bugcheck"]
    facts = triage_facts["bugcheck"]
    assert int(bugcheck["code"], 16) == int(facts["code"], 16) == 0x1000007E
    assert bugcheck["name"] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    assert [int(p["value"], 16) for p in bugcheck["parameters"]] == [int(v, 16) for v in facts["parameters"]]
    kinds = [p["kind"] for p in bugcheck["parameters"]]
    assert kinds == ["status", "ip", "pointer", "pointer"]
    assert bugcheck["parameters"][0]["detail"] == "exception code 0xC0000005 (STATUS_ACCESS_VIOLATION)"
    assert "exception record" in bugcheck["parameters"][2]["name"]
    assert "context record" in bugcheck["parameters"][3]["name"]


def test_corpus_culprit_is_amdppm_with_an_analyze_style_bucket(corpus_record, triage_facts):
    culprit = corpus_record["culprit"]
    assert culprit["binary"] == triage_facts["bugcheck"]["faulting_module"]["name"] == "amdppm.sys"
    assert culprit["base"] == "0x%016x" % int(triage_facts["bugcheck"]["faulting_module"]["base"], 16)
    assert corpus_record["failure"]["faulting_ip"] == "0x%016x" % int(triage_facts["bugcheck"]["parameters"][1], 16)
    # rizin names the faulting IP amdppm!WriteIoMemRawEx+112 (decimal): 0x70
    assert corpus_record["failure"]["faulting_symbol"] == "amdppm!WriteIoMemRawEx+0x70"
    bucket = corpus_record["buckets"]["failure_bucket_id"]
    assert bucket == "AV_amdppm!WriteIoMemRawEx"
    # the transcripts' modern buckets: AV_<module>!<function>, 0x<code>_<sub>_<module>!<function>
    prefix = r"^(AV_|0x[0-9A-Fa-f]+_(?:[0-9a-f]+_)?|X64_0x[0-9A-F]+_\d+_)"
    shapes = [re.sub(prefix, "", b) for b in transcript_buckets()]
    assert shapes and all(re.match(r"^\w+!\w+(\+[0-9a-f]+)?$", s) for s in shapes)
    assert any(b.startswith("AV_") for b in transcript_buckets())
    assert re.match(r"^AV_\w+!\w+$", bucket)
    # a Microsoft driver, and a triage dump: the answer is given, with what could not be seen
    assert culprit["class"] == "inbox"
    assert any("triage dump" in item for item in corpus_record["unavailable"])
    assert culprit["confidence"] == "low"
    assert corpus_record["dump"]["triage"] is True


def test_corpus_triage_without_the_symbol_store_says_what_is_missing(capsys, triage_dump_path, corpus_record):
    """ISF for nt only: amdppm's PDB and image are gone. The faulting IP still names amdppm (module list),
    the output lists the missing symbols and image, and confidence is not higher than with them."""
    record = analyze(capsys, triage_dump_path, "--symbols", os.path.join(CORPUS, "symbols"))
    assert record["culprit"]["binary"] == "amdppm.sys"
    assert record["buckets"]["failure_bucket_id"] == "AV_amdppm!unknown_function"
    missing = "\n".join(record["unavailable"])
    assert "no symbols for amdppm.sys" in missing
    assert "image unavailable: amdppm has no unwind data: its headers are not in the dump; amdppm.sys " \
           "C9C030003b000 is not on the symbol path" in missing          # the image: neither dump nor store
    assert "frame(s) found by scanning the stack" in missing
    levels = ["low", "medium", "high"]
    assert levels.index(record["culprit"]["confidence"]) <= levels.index(corpus_record["culprit"]["confidence"])


# -- a scenario with and without its symbols -------------------------------------------------------------------
@pytest.fixture(scope="module")
def basic(tmp_path_factory):
    from pytriage.scenarios import build_builtin
    return build_builtin("basic", str(tmp_path_factory.mktemp("basic")), "bitmap")


def test_basic_names_the_filter_with_high_confidence(capsys, basic, schema):
    record = analyze(capsys, basic.dump_path, "--symbols", "srv*" + basic.symstore_path)
    jsonschema.validate(record, schema)
    assert record["culprit"]["binary"] == "contosolwf.sys"
    assert record["culprit"]["confidence"] == "high"
    assert record["buckets"] == {"failure_bucket_id": "AV_contosolwf!FilterReceiveNetBufferLists",
                                 "network_bucket_id": "LWF_AV_contosolwf.sys",
                                 "followup": "contosolwf!FilterReceiveNetBufferLists", "followup_frame": 3}
    null = [c for c in record["forensics"] if c["subject"].startswith("Arg1")]
    assert null[0]["kind"] == "null-offset" and null[0]["value"] == "0x0000000000000030"
    assert record["failure"]["trap_frame"] is not None and record["unavailable"] == []


def test_missing_symbols_are_listed_and_lower_confidence(capsys, basic, tmp_path):
    """An empty symbol store: only the images' export tables name functions; ndis's internal
    ndisCallReceiveHandler is named after a neighbouring export, so roles read from names are weaker: the
    text says so and confidence drops from high."""
    store = tmp_path / "empty-store"
    store.mkdir()
    record = analyze(capsys, basic.dump_path, "--symbols", str(store))
    assert record["culprit"]["binary"] == "contosolwf.sys"          # the faulting IP needs no symbols
    assert record["buckets"]["failure_bucket_id"] == "AV_contosolwf!FilterReceiveNetBufferLists"   # an export
    missing = "\n".join(record["unavailable"])
    for image in ("ntoskrnl.exe", "ndis.sys", "contosolwf.sys"):
        assert "only export names for %s (no PDB)" % image in missing
    assert record["culprit"]["confidence"] == "medium"
    assert record["culprit"]["confidence_lowered_by"] == [
        "no PDB for the Windows modules ntoskrnl.exe, ndis.sys: NDIS/WFP entry points and nt's trap and exception "
        "code are recognised by name"]


def test_text_output_has_the_analyze_sections(capsys, basic):
    code = cli.main(["analyze", basic.dump_path, "--symbols", "srv*" + basic.symstore_path, "-v"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    for section in ("DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)", "Arg1: 0000000000000030, memory referenced",
                    "BUGCHECK_CODE:  d1", "STACK_TEXT:", "SYMBOL_NAME:  contosolwf!FilterReceiveNetBufferLists+0x9",
                    "FAILURE_BUCKET_ID:  AV_contosolwf!FilterReceiveNetBufferLists",
                    "CULPRIT:  contosolwf.sys (third-party, NDIS lightweight filter (LWF)) -- confidence high",
                    "NETWORK_BUCKET_ID:  LWF_AV_contosolwf.sys", "REASONING:", "CANDIDATES:", "NEXT COMMANDS:",
                    ".trap ffffc08b`e0006cc0", "REMEDIES:"):
        assert section in out, section


# -- triage.ini -------------------------------------------------------------------------------------------------
def test_user_list_can_make_a_driver_microsoft_or_third_party(capsys, basic, tmp_path):
    ini = tmp_path / "triage.ini"
    ini.write_text("[inbox]\ncontoso*.sys\n", encoding="utf-8")
    record = analyze(capsys, basic.dump_path, "--symbols", "srv*" + basic.symstore_path, "--triage-ini", str(ini))
    assert record["culprit"]["class"] == "inbox" and record["culprit"]["confidence"] != "high"
    ini.write_text("[third-party]\nndis.sys\n", encoding="utf-8")
    classifier = load_classifier(str(ini))
    assert classifier.classify("ndis.sys") == "third-party" and classifier.classify("tcpip.sys") == "network"


@pytest.mark.parametrize("text, message", [
    ("ndis.sys\n", "comes before any [section]"),
    ("[nosuch]\n", "unknown section [nosuch]"),
    ("[inbox]\nC:\\drivers\\x.sys\n", "is not an image name"),
])
def test_bad_triage_ini_is_one_line_error(tmp_path, text, message):
    ini = tmp_path / "bad.ini"
    ini.write_text(text, encoding="utf-8")
    with pytest.raises(PytriageError, match=re.escape(message)):
        ModuleClassifier().add_file(str(ini))


def test_bad_triage_ini_on_the_command_line(capsys, basic, tmp_path):
    code = cli.main(["analyze", basic.dump_path, "--triage-ini", str(tmp_path / "missing.ini")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("pytriage: error: cannot read triage list") and err.count("\n") == 1


# -- bad dumps -----------------------------------------------------------------------------------------------------
def test_truncated_dump_is_a_one_line_error_or_a_partial_record(capsys, basic, tmp_path, schema):
    data = open(basic.dump_path, "rb").read()
    for cut in (0x100, 0x2000, len(data) // 2):
        path = tmp_path / ("cut-%x.dmp" % cut)
        path.write_bytes(data[:cut])
        code = cli.main(["analyze", str(path), "--symbols", "srv*" + basic.symstore_path, "--json"])
        out, err = capsys.readouterr()
        assert code in (0, 2), err
        if code == 2:
            assert err.startswith("pytriage: error:") and err.count("\n") == 1
        else:
            jsonschema.validate(json.loads(out), schema)


def test_missing_pdb_of_the_culprit(capsys, tmp_path, schema):
    """A symbol store without the LWF's PDB: its frames are named from its exports, the verdict keeps it and
    a third party's missing PDB does not lower confidence (the evidence is its faulting instruction)."""
    from pytriage.scenarios import build_builtin
    built = build_builtin("basic", str(tmp_path), "bitmap")
    shutil.rmtree(os.path.join(built.symstore_path, "contosolwf.pdb"))
    record = analyze(capsys, built.dump_path, "--symbols", "srv*" + built.symstore_path)
    jsonschema.validate(record, schema)
    assert record["culprit"]["binary"] == "contosolwf.sys"
    assert any(item.startswith("only export names for contosolwf.sys") for item in record["unavailable"])
    assert record["culprit"]["confidence"] == "high"


@pytest.mark.parametrize("name", [n for n, _ in __import__("pytriage.scenarios", fromlist=["x"]).builtin_names()])
def test_every_builtin_record_validates_and_names_evidence(capsys, tmp_path, schema, name):
    """Every built-in scenario triages to a record the schema accepts, whose culprit's evidence is part of the
    full evidence list and whose reasoning ends with the conclusion."""
    from pytriage.scenarios import build_builtin
    built = build_builtin(name, str(tmp_path), "bitmap")
    record = analyze(capsys, built.dump_path, "--symbols", "srv*" + built.symstore_path, "--stats")
    jsonschema.validate(record, schema)
    assert record["reasoning"][-1].startswith("Conclusion: ")
    assert record["stats"]["target"]["bytes_read"] < 256 * 1024          # the live-session budget of DESIGN 11
    if record["culprit"] is not None:
        assert all(e in record["evidence"] for e in record["culprit"]["evidence"])
        third_party = [c["binary"] for c in record["candidates"] if c["class"] == "third-party"]
        assert record["culprit"]["binary"] == (third_party[0] if third_party else record["candidates"][0]["binary"])


def test_damaged_dumps_never_break_the_triage(basic, tmp_path, schema):
    """Random bytes over random parts of a dump (header, page tables, stack, pool, module images): the triage
    returns a record the schema accepts, or one PytriageError; never another exception, never a hang."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pytriage.analysis.triage.engine import triage
    from pytriage.symbols.store import SymbolStore
    from pytriage.symbols.symbolizer import Symbolizer
    from pytriage.symbols.sympath import resolve_symbol_path
    from pytriage.target.offline import OfflineDumpTarget

    original = open(basic.dump_path, "rb").read()
    path = tmp_path / "damaged.dmp"
    classifier = load_classifier()

    offsets = st.one_of(st.integers(0, 0x2000), st.integers(0, len(original) - 1))      # the headers, or anywhere

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(offsets, st.binary(min_size=1, max_size=64)), min_size=1, max_size=6))
    def run(patches):
        data = bytearray(original)
        for offset, junk in patches:
            data[offset:offset + len(junk)] = junk
        path.write_bytes(bytes(data[:len(original)]))
        try:
            target = OfflineDumpTarget.open(str(path))
        except PytriageError:
            return
        try:
            symbolizer = Symbolizer(target, store=SymbolStore(resolve_symbol_path("srv*" + basic.symstore_path)))
            try:
                record = triage(target, symbolizer, classifier)
            except PytriageError:
                return
            jsonschema.validate(json.loads(json.dumps(record)), schema)
        finally:
            target.close()

    run()
