"""A wrong scenario spec is refused with one line that names the JSON path of the bad value."""

import copy
import json

import pytest

from pytriage import cli
from pytriage.errors import SpecError
from pytriage.scenarios.spec import load_spec, parse_spec


def _with(doc, mutate):
    doc = copy.deepcopy(doc)
    mutate(doc)
    return doc


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["bugcheck"].update(parameters=["0x1"]), "bugcheck.parameters: expected 4 values, got 1"),
    (lambda d: d["bugcheck"].update(code="zz"), "bugcheck.code: expected a number"),
    (lambda d: d["physical_memory"]["runs"][1].update(base="0x100800"), "physical_memory.runs[1].base: 0x100800 is "
                                                                         "not aligned to 0x1000"),
    (lambda d: d["physical_memory"].update(runs=[]), "physical_memory.runs: at least one run is needed"),
    (lambda d: d["physical_memory"]["runs"].append({"base": "0x2000", "size": "0x1000"}),
     "physical_memory.runs: runs overlap at PFN 0x2"),
    (lambda d: d["modules"][0].update(name="..\\evil.sys"), "modules[0].name: expected an image file name"),
    (lambda d: d["modules"][0].update(name=".."), "modules[0].name: expected an image file name"),
    (lambda d: d["modules"][0].update(name=".hidden.sys"), "modules[0].name: expected an image file name"),
    (lambda d: d["modules"][0].update(name="a b.sys"), "modules[0].name: expected an image file name"),
    (lambda d: d["modules"][4]["functions"][0].update(name="two words"), "modules[4].functions[0].name: expected a "
                                                                          "symbol name"),
    (lambda d: d["modules"][4].update(data_symbols={"g": "0x8000"}), "modules[4].data_symbols.g: rva 0x8000 is "
                                                                      "outside the image's sections"),
    (lambda d: d["modules"][4].update(data_symbols={"bad name": "0x2000"}), "modules[4].data_symbols.bad name: a "
                                                                             "symbol name is printable ASCII"),
    (lambda d: d["modules"][4].update(pdb_name="ndis.pdb", pdb_guid="0000000000000000F10BFCF6DBC3D5CF"),
     "modules: ndis.sys and contosolwf.sys have the same PDB name, GUID and age"),
    (lambda d: d["modules"][1].update(name="contosolwf.sys", timestamp="0x60d5a1b2", size="0x8000"),
     "modules: contosolwf.sys and contosolwf.sys have the same image name, timestamp and size"),
    (lambda d: d["modules"][1].update(base="0x1000"), "modules[1].base: 0x1000 is not a canonical kernel address"),
    (lambda d: d["modules"][2].update(pdb_guid="xyz"), "modules[2].pdb_guid: expected 32 hex digits"),
    (lambda d: d["modules"][2].update(pdb_name="../../x.pdb"), "modules[2].pdb_name: expected a file name"),
    (lambda d: d["modules"][4]["functions"][0].update(hex="4g"), "modules[4].functions[0].hex: not valid hex bytes"),
    (lambda d: d["modules"][3].update(base="0xfffff80472010000"), "modules: ndis.sys and tcpip.sys overlap"),
    (lambda d: d["large_pages"][0].update(size="4M"), "large_pages[0].size: large pages are 2M or 1G"),
    (lambda d: d["large_pages"][1].update(va="0xffffd00000200000"), "large_pages[1].va: 0xffffd00000200000 is not "
                                                                   "aligned to 0x40000000"),
    (lambda d: d["memory"][0].update(va="0x7ff000000000"), "memory[0].va: 0x7ff000000000 is not a canonical kernel"),
    (lambda d: d.update(memory={}), "memory: expected a list"),
])
def test_bad_values_name_their_json_path(basic_doc, mutate, message):
    with pytest.raises(SpecError) as exc:
        parse_spec(_with(basic_doc, mutate))
    assert message in str(exc.value)


def test_build_time_errors_are_spec_errors(tmp_path, capsys, basic_doc):
    doc = _with(basic_doc, lambda d: d["context"].update(xyz="0x1"))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    code = cli.main(["scenario", str(path), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "pytriage: error: context: unknown register(s) xyz"


def test_unreadable_and_invalid_json(tmp_path):
    with pytest.raises(SpecError, match="cannot read scenario spec"):
        load_spec(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{\"name\": ")
    with pytest.raises(SpecError, match="is not valid JSON"):
        load_spec(str(bad))


def test_hostile_scenario_name_cannot_escape_the_output_dir(tmp_path, basic_doc):
    from pytriage.scenarios.builder import build_scenario
    out = tmp_path / "out"
    out.mkdir()
    built = build_scenario(parse_spec(_with(basic_doc, lambda d: d.update(name="../../etc/passwd"))), str(out))
    assert built.dump_path.startswith(str(out) + "/")
    assert sorted(p.name for p in out.iterdir()) == ["etc_passwd-bitmap.dmp", "etc_passwd.symbols",
                                                     "etc_passwd.symstore"]


@pytest.fixture(scope="module")
def nbl_doc():
    from pytriage.scenarios import builtin_path
    with open(builtin_path("nbl-zoo"), encoding="utf-8") as fh:
        return json.load(fh)


def _nbl(doc, nbl_id):
    return next(n for n in doc["nbl"]["nbls"] if n["id"] == nbl_id)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["nbl"].update(area="0xffffc08be1400010"), "nbl.area: 0xffffc08be1400010 is not a page-aligned"),
    (lambda d: _nbl(d, "dns").update(id="syn"), "nbl.nbls[1].id: id 'syn' is already used by nbl.nbls[0].id"),
    (lambda d: _nbl(d, "dns").update(next="hello world"), "nbl.nbls[1].next: expected a number"),
    (lambda d: _nbl(d, "syn")["net_buffers"][0].update(mapping=["va"]),
     "nbl.nbls[0].net_buffers[0].mapping: one of va, pfn, unmapped, or a list of them, one per MDL (2)"),
    (lambda d: _nbl(d, "syn")["net_buffers"][0].update(mdl_sizes=[54]),
     "nbl.nbls[0].net_buffers[0].mdl_sizes: positive sizes that leave bytes for the last MDL"),
    (lambda d: _nbl(d, "wifi")["context"]["dot11"].update(tos="@filt562"),
     "nbl.nbls[5].context.dot11: give either tos_index"),
    (lambda d: _nbl(d, "wifi")["context"].update(size="0x100"),
     "nbl.nbls[5].context: a DOT11 packet context needs 0x1b8 bytes after offset"),
    (lambda d: d["nbl"].update(demo="nope"), "nbl.demo: 'nope' is not the id of an NBL of the section"),
])
def test_bad_nbl_section_names_the_path(nbl_doc, mutate, message):
    with pytest.raises(SpecError) as info:
        parse_spec(_with(nbl_doc, mutate))
    assert message in str(info.value)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: _nbl(d, "dns").update(next="@nowhere"), "nbl.nbls[1].next: no NBL or block with id 'nowhere'"),
    (lambda d: _nbl(d, "wifi")["context"]["dot11"]["entries"][0].update(routine="nwifi!NoSuchRoutine"),
     "nbl.nbls[5].context.dot11.entries[0].routine: no symbol nwifi!NoSuchRoutine among the spec's modules"),
])
def test_unresolvable_nbl_reference_is_refused_at_build(nbl_doc, tmp_path, mutate, message):
    from pytriage.scenarios.builder import build_scenario
    with pytest.raises(SpecError) as info:
        build_scenario(parse_spec(_with(nbl_doc, mutate)), str(tmp_path))
    assert message in str(info.value)
