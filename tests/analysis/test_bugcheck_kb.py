"""The bug check knowledge base: coverage, decoding, and agreement with independent sources.

Oracles that did not come from the table itself: the corpus facts of a real Windows 10 triage dump
(../shared/corpus/reference/triage_x64.facts.json) and the `NAME (code)` headers WinDbg's `!analyze -v`
printed in the corpus transcripts (../shared/corpus/transcripts/*.txt).
"""

import glob
import os
import re

import pytest

from pytriage.analysis import bugcheck_kb as kb
from tests.conftest import CORPUS, REPO

DESIGN_CODES = (0x0A, 0x19, 0x1E, 0x3B, 0x50, 0x7E, 0x7F, 0x8E, 0xC2, 0xC4, 0xC5, 0xD1, 0xD5, 0xD6, 0xFC,
                0x1000007E, 0x1000008E, 0x133, 0x139, 0x13A, 0x1C8)
CORPUS_PARAMS = [0xFFFFFFFFC0000005, 0xFFFFF8048B58334C, 0xFFFF850429891EE8, 0xFFFF850429891720]


def _all_texts(info):
    """Every piece of prose an entry carries, for the length and emptiness checks."""
    yield info.summary
    for param in info.parameters:
        yield param.name
        yield param.text
    yield from info.next_steps
    yield from info.subcodes.values()
    for layout in info.subcode_layouts.values():
        yield from (label for label in layout if label)
    for meanings in info.value_meanings.values():
        yield from meanings.values()


@pytest.mark.parametrize("code", DESIGN_CODES, ids=hex)
def test_every_design_code_has_four_described_parameters_and_a_next_step(code):
    info = kb.lookup(code)
    assert info is not None and info.code == code
    assert len(info.parameters) == 4
    for param in info.parameters:
        assert param.name.strip() and param.text.strip()
        assert param.kind in kb.KINDS
    assert info.family in kb.FAMILIES
    assert info.summary.strip()
    assert len(info.next_steps) >= 1
    assert any("`" in step for step in info.next_steps), "at least one concrete debugger command"


def test_all_codes_is_sorted_and_covers_design_and_the_extra_codes():
    codes = kb.all_codes()
    assert codes == sorted(codes) == sorted(set(codes))
    assert set(DESIGN_CODES) | {0x9F, 0xBE, 0xC1, 0xCE, 0xEF, 0x101, 0x124} <= set(codes)
    assert 0xA0 not in codes


@pytest.mark.parametrize("code", kb.all_codes(), ids=hex)
def test_entry_prose_is_short_and_the_summary_at_most_three_sentences(code):
    info = kb.lookup(code)
    for text in _all_texts(info):
        assert text.strip(), code
        assert "\n" not in text
        assert len(text) <= 300, text
    assert 1 <= len(re.findall(r"[.!?](?:\s|$)", info.summary)) <= 3, info.summary


@pytest.mark.parametrize("code", kb.all_codes(), ids=hex)
def test_role_indices_point_at_parameters_of_the_matching_kind(code):
    info = kb.lookup(code)
    roles = ((info.subcode_param, "subcode"), (info.exception_param, "status"),
             (info.faulting_ip_param, "ip"), (info.address_param, "address"))
    for index, kind in roles:
        if index is not None:
            assert info.parameters[index].kind == kind
    kinds = [p.kind for p in info.parameters]
    # a subcode or status parameter is always declared as such, so the analysis can rely on the index
    assert (info.subcode_param is not None) == ("subcode" in kinds)
    assert (info.exception_param is not None) == ("status" in kinds)
    assert (info.subcode_param is not None) == bool(info.subcodes)
    for layout in info.subcode_layouts.values():
        assert layout[info.subcode_param] == ""


@pytest.mark.parametrize("code, subcode, exception, ip, address", [
    (0x0A, None, None, 3, 0), (0xD1, None, None, 3, 0), (0xC5, None, None, 3, 0),
    (0x1E, None, 0, 1, None), (0x7E, None, 0, 1, None), (0x8E, None, 0, 1, None), (0x3B, None, 0, 1, None),
    (0x1000007E, None, 0, 1, None), (0x1000008E, None, 0, 1, None),
    (0x50, None, None, 2, 0), (0xD5, None, None, 2, 0), (0xD6, None, None, 2, 0),
    (0xFC, None, None, None, 0),
    (0x19, 0, None, None, None), (0x7F, 0, None, None, None), (0xC2, 0, None, None, None),
    (0xC4, 0, None, None, None), (0x133, 0, None, None, None), (0x139, 0, None, None, None),
    (0x13A, 0, None, None, 2), (0xC1, 3, None, None, 0),
    # 0x1C8's Arg1 is how long the button was held (ms), not a subcode
    (0x1C8, None, None, None, None),
], ids=lambda v: hex(v) if isinstance(v, int) else str(v))
def test_parameter_roles(code, subcode, exception, ip, address):
    info = kb.lookup(code)
    assert (info.subcode_param, info.exception_param, info.faulting_ip_param, info.address_param) == (
        subcode, exception, ip, address)


def test_corpus_dump_parameters_are_explained_as_the_facts_say(triage_facts):
    bugcheck = triage_facts["bugcheck"]
    code = int(bugcheck["code"], 16)
    params = [int(p, 16) for p in bugcheck["parameters"]]
    assert params == CORPUS_PARAMS
    info = kb.lookup(code)
    assert info.name == bugcheck["name"].split(" (")[0] == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    explained = kb.explain_parameters(code, params)
    assert [e.index for e in explained] == [0, 1, 2, 3]
    assert [e.value for e in explained] == CORPUS_PARAMS
    assert [e.kind for e in explained] == ["status", "ip", "pointer", "pointer"]
    assert [e.name for e in explained] == ["exception code", "exception address", "exception record",
                                           "context record"]
    assert explained[0].detail == bugcheck["parameter_meaning"][0] == \
        "exception code 0xC0000005 (STATUS_ACCESS_VIOLATION)"
    assert "EXCEPTION_RECORD" in bugcheck["parameter_meaning"][2] and "EXCEPTION_RECORD" in explained[2].text
    assert "CONTEXT" in bugcheck["parameter_meaning"][3] and "CONTEXT" in explained[3].text
    assert [e.text for e in explained] == [p.text for p in info.parameters]


def test_m_variants_share_the_base_parameters():
    for variant, base_code in ((0x1000007E, 0x7E), (0x1000008E, 0x8E), (0x1000007F, 0x7F),
                               (0x10000050, 0x50), (0x100000D6, 0xD6)):
        info, base = kb.lookup(variant), kb.lookup(base_code)
        assert info.name == base.name + "_M"
        assert info.parameters == base.parameters and info.subcodes == base.subcodes
        assert info.family == base.family and info.next_steps == base.next_steps
        assert "0x%02X %s" % (base_code, base.name) in info.summary
    # only variants that exist in bugcodes.h
    assert kb.lookup(0x100000D1) is None and kb.lookup(0x1000000A) is None


def test_d1_irql_and_access_are_decoded():
    ip = 0xFFFFF805736312D0
    explained = kb.explain_parameters(0xD1, [0, 2, 0, ip])
    assert [e.detail for e in explained] == ["", "IRQL 2 (DISPATCH_LEVEL)", "read", ""]
    assert [e.kind for e in explained] == ["address", "irql", "access", "ip"]
    assert [e.name for e in explained] == ["memory referenced", "IRQL", "access type", "faulting instruction"]
    assert kb.explain_parameters(0xD1, [0, 0, 1, ip])[1:3] == [
        kb.ExplainedParam(1, 0, "IRQL", "irql", explained[1].text, "IRQL 0 (PASSIVE_LEVEL)"),
        kb.ExplainedParam(2, 1, "access type", "access", explained[2].text, "write")]
    assert kb.explain_parameters(0xD1, [ip, 2, 8, ip])[2].detail == "execute"
    assert kb.explain_parameters(0xD1, [0, 2, 5, ip])[2].detail == "unrecognised access code 0x5"


def test_page_fault_access_uses_the_windows_10_encoding_too():
    details = [kb.explain_parameters(0x50, [0xFFFFF80012345678, access, 0, 2])[1].detail
               for access in (0, 1, 2, 0x10)]
    assert details == ["read", "write", "write", "execute"]
    fault_type = kb.explain_parameters(0x50, [0x4F4F4F4F4F4F4F4F, 0, 0, 4])[3]
    assert fault_type.detail.startswith("0x4: the address is not canonical")
    assert kb.explain_parameters(0x50, [0, 0, 0, 7])[3].detail == ""


def test_bad_pool_header_subcode_0x20_and_its_layout():
    explained = kb.explain_parameters(0x19, [0x20, 0xFFFFA001C2A3B000, 0xFFFFA001C2A3B0C0, 0])
    assert explained[0].kind == "subcode"
    assert explained[0].detail == "subcode 0x20: " + kb.lookup(0x19).subcodes[0x20]
    assert "BlockSize is corrupt" in explained[0].detail
    assert [e.detail for e in explained[1:]] == ["with subcode 0x20: entry that should have been found",
                                                 "with subcode 0x20: the next pool entry",
                                                 "with subcode 0x20: reserved"]
    assert {0x3, 0x7, 0x20, 0x21, 0x22} <= set(kb.lookup(0x19).subcodes)
    assert kb.explain_parameters(0x19, [0x99, 0, 0, 0])[0].detail == "subcode 0x99: not in pytriage's table"


def test_bad_pool_header_0x22_from_the_corpus_transcript_is_a_double_free():
    """ie-0x19-bad-pool-header-double-free-*.txt: Arg1 0x22, Arg2 the freed address, Arg3 1 or 4."""
    explained = kb.explain_parameters(0x19, [0x22, 0xFFFFBD06D46E0000, 1, 0])
    assert "double free" in explained[0].detail
    assert explained[1].detail == "with subcode 0x22: address being freed"


def test_unexpected_kernel_mode_trap_8_is_a_double_fault():
    explained = kb.explain_parameters(0x7F, [8, 0, 0, 0])
    assert explained[0].detail.startswith("subcode 0x8: double fault")
    assert "stack overflow" in explained[0].detail
    assert {0x0, 0x4, 0x5, 0x6, 0x8, 0xD, 0xE} <= set(kb.lookup(0x7F).subcodes)
    assert kb.lookup(0x7F).subcodes[0x0].startswith("divide error")
    assert kb.lookup(0x7F).subcodes[0x6].startswith("invalid opcode")


def test_security_check_and_heap_corruption_subcodes():
    assert "FAST_FAIL_CORRUPT_LIST_ENTRY" in kb.lookup(0x139).subcodes[3]
    assert "FAST_FAIL_STACK_COOKIE_CHECK_FAILURE" in kb.lookup(0x139).subcodes[2]
    heap = kb.lookup(0x13A).subcodes
    assert {0x11, 0x12, 0x14, 0x17} <= set(heap)
    assert "segment_lfh_double_free" in heap[0x11] and "vs_subsegment" in heap[0x12]
    assert kb.explain_parameters(0x13A, [0x12, 0xFFFF9C0000000000, 0xFFFF9C0001234560, 0])[2].kind == "address"


def test_kmode_exception_access_violation_decodes_exception_parameters():
    av = kb.explain_parameters(0x1E, [0xFFFFFFFFC0000005, 0xFFFFF80012340000, 1, 0x4F4F4F4F4F4F4F4F])
    assert [e.detail for e in av] == ["exception code 0xC0000005 (STATUS_ACCESS_VIOLATION)", "", "write",
                                      "address the instruction tried to access"]
    # the nwifi seed: a breakpoint exception at a text address; its parameters are not an access
    bp = kb.explain_parameters(0x1E, [0x80000003, 0x0000003200360035, 0, 0])
    assert [e.detail for e in bp] == ["exception code 0x80000003 (STATUS_BREAKPOINT)", "", "", ""]


def test_verifier_and_special_pool_subcodes_with_layouts():
    leak = kb.explain_parameters(0xC4, [0x62, 0xFFFFE0001234A000, 0xFFFFE0001234B000, 4])
    assert leak[0].detail.startswith("subcode 0x62: the driver unloaded without freeing")
    assert leak[3].detail == "with subcode 0x62: number of allocations not freed"
    irql = kb.explain_parameters(0xC1, [2, 1, 0x40, 0x30])
    assert irql[3].detail.startswith("subcode 0x30: allocation at an invalid IRQL")
    assert [e.detail for e in irql[:3]] == ["with subcode 0x30: current IRQL", "with subcode 0x30: pool type",
                                            "with subcode 0x30: number of bytes"]


def test_power_button_hold_is_explained_without_a_subcode():
    explained = kb.explain_parameters(0x1C8, [7000, 0xFFFFF8047C612340, 0, 0])
    assert [e.kind for e in explained] == ["value", "pointer", "reserved", "reserved"]
    assert explained[0].name == "hold time (ms)" and explained[0].detail == ""


def test_unknown_code_gives_four_generic_entries():
    assert kb.lookup(0x12345) is None
    explained = kb.explain_parameters(0x12345, [1, 2, 3])
    assert [(e.index, e.value, e.name, e.kind, e.detail) for e in explained] == [
        (0, 1, "Arg1", "value", ""), (1, 2, "Arg2", "value", ""), (2, 3, "Arg3", "value", ""),
        (3, 0, "Arg4", "value", "")]
    assert all(e.text for e in explained)
    assert kb.next_steps_for(0x12345, [1, 2, 3, 4])


def test_explain_takes_parameters_as_unsigned_64_bit_and_pads_missing_ones():
    explained = kb.explain_parameters(0x7E, [-0x3FFFFFFB])
    assert explained[0].value == 0xFFFFFFFFC0000005
    assert explained[0].detail == "exception code 0xC0000005 (STATUS_ACCESS_VIOLATION)"
    assert [e.value for e in explained[1:]] == [0, 0, 0]
    assert kb.explain_parameters(0x7E, [0x12C0000005, 0, 0, 0])[0].detail == \
        "0x12C0000005 is not a 32-bit status code"
    assert kb.explain_parameters(0x7E, [0xC0DE0001, 0, 0, 0])[0].detail == "exception code 0xC0DE0001"


@pytest.mark.parametrize("code", kb.all_codes(), ids=hex)
def test_explain_never_fails_on_odd_values(code):
    for params in ([0, 0, 0, 0], [kb._MASK64] * 4, [0x80000003, 0xFF, 0x10, 0x1D]):
        explained = kb.explain_parameters(code, params)
        assert len(explained) == 4 and all(isinstance(e.detail, str) for e in explained)


def test_status_name_accepts_sign_extended_codes():
    assert kb.status_name(0xC0000005) == kb.status_name(0xFFFFFFFFC0000005) == "STATUS_ACCESS_VIOLATION"
    assert kb.status_name(-0x3FFFFFFB) == "STATUS_ACCESS_VIOLATION"
    assert kb.status_name(0xFFFFFFFF80000003) == kb.status_name(0x80000003) == "STATUS_BREAKPOINT"
    expected = {0xC000001D: "STATUS_ILLEGAL_INSTRUCTION", 0xC0000096: "STATUS_PRIVILEGED_INSTRUCTION",
                0xC0000409: "STATUS_STACK_BUFFER_OVERRUN", 0xC0000094: "STATUS_INTEGER_DIVIDE_BY_ZERO",
                0xC0000006: "STATUS_IN_PAGE_ERROR", 0x80000002: "STATUS_DATATYPE_MISALIGNMENT",
                0xC000000D: "STATUS_INVALID_PARAMETER"}
    for value, name in expected.items():
        assert kb.status_name(value) == name
        assert kb.status_name(value | 0xFFFFFFFF00000000) == name
    assert kb.status_name(0x00000001C0000005) is None  # high bits that are not a sign extension
    assert kb.status_name(0xFFFFFFFF40000005) is None  # bit 31 clear: not a sign extension either
    assert kb.status_name(0xC0DE0001) is None


def test_irql_names():
    assert [kb.irql_name(i) for i in (0, 1, 2, 13, 14, 15)] == [
        "PASSIVE_LEVEL", "APC_LEVEL", "DISPATCH_LEVEL", "CLOCK_LEVEL", "IPI_LEVEL", "HIGH_LEVEL"]
    assert kb.irql_name(5) == "device IRQL (DIRQL)"
    assert kb.irql_name(16) == "not a valid x64 IRQL"
    assert kb.explain_parameters(0x0A, [0, 15, 0, 0])[1].detail == "IRQL 15 (HIGH_LEVEL)"


def test_next_steps_for_fills_in_the_dump_values():
    steps = kb.next_steps_for(0x1000007E, CORPUS_PARAMS)
    assert steps[0].startswith("`.exr 0xffff850429891ee8`")
    assert steps[1].startswith("`.cxr 0xffff850429891720` then `kv`")
    assert not any("<Arg" in step for step in steps)
    assert kb.lookup(0x1000007E).next_steps[0].startswith("`.exr <Arg3>`")


def _transcript_bugcheck_names():
    """`NAME (code)` header lines of `!analyze -v` in the corpus transcripts: {code: {names}}."""
    found = {}
    files = sorted(glob.glob(os.path.join(CORPUS, "transcripts", "*.txt")))
    assert files, "the corpus transcripts must sit at ../shared/corpus/transcripts"
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                match = re.match(r"^([A-Z][A-Z0-9_]{5,}) \(([0-9a-f]{1,8})\)\s*$", line)
                if match:
                    found.setdefault(int(match.group(2), 16), set()).add(match.group(1))
    return found


def test_names_agree_with_the_debugger_transcripts():
    found = _transcript_bugcheck_names()
    assert {0xC5, 0x19, 0xD1} <= set(found)
    for code, names in found.items():
        info = kb.lookup(code)
        assert info is not None, hex(code)
        assert names == {info.name}, (hex(code), names)


def test_docs_table_lists_every_code_and_is_the_generated_one():
    with open(os.path.join(REPO, "docs", "bugchecks.md"), encoding="utf-8") as fh:
        doc = fh.read()
    for code in kb.all_codes():
        info = kb.lookup(code)
        assert "| 0x%02X | %s | %s |" % (code, info.name, info.family) in doc, hex(code)
    assert kb.markdown_table() in doc
    assert "## How pytriage uses this" in doc
