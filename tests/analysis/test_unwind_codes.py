"""UNWIND_INFO decoding: every unwind code, versions 1 and 2, chained info, and malformed data.

Oracle: pefile's own UNWIND_INFO parser on the images the scenario builder writes (every function of
the built-in unwind-zoo and basic scenarios), plus hand-decoded byte strings.
"""

import pefile
import pytest

from pytriage.analysis.unwind_codes import (
    UNW_FLAG_CHAININFO,
    UWOP_ALLOC_LARGE,
    UWOP_ALLOC_SMALL,
    UWOP_PUSH_MACHFRAME,
    UWOP_PUSH_NONVOL,
    UWOP_SAVE_NONVOL,
    UWOP_SAVE_NONVOL_FAR,
    UWOP_SAVE_XMM128,
    UWOP_SAVE_XMM128_FAR,
    UWOP_SET_FPREG,
    RuntimeFunction,
    decode_unwind_info,
    unwind_info_size,
)
from pytriage.errors import UnwindError
from pytriage.scenarios import build_builtin


def _b(text):
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize("hexbytes, expected", [
    # push rbx; sub rsp,20h
    ("01050200 0532 0130", (5, 0, 0, [(5, UWOP_ALLOC_SMALL, 3, 0x20), (1, UWOP_PUSH_NONVOL, 3, 0)])),
    # ALLOC_LARGE, OpInfo 0: size / 8 in one slot
    ("01070200 0701 2700", (7, 0, 0, [(7, UWOP_ALLOC_LARGE, 0, 0x138)])),
    # ALLOC_LARGE, OpInfo 1: the size in two slots (any size, here 0x3010)
    ("01070300 0711 1030 0000 0000", (7, 0, 0, [(7, UWOP_ALLOC_LARGE, 1, 0x3010)])),
    # push rbp; sub rsp,40h; lea rbp,[rsp+20h]; mov [rbp+10h],rbx  (frame register rbp, offset 2*16)
    ("010e0525 0e34 0600 0a03 0572 0150 0000", (0xE, 5, 0x20, [
        (0xE, UWOP_SAVE_NONVOL, 3, 0x30), (0xA, UWOP_SET_FPREG, 0, 0), (5, UWOP_ALLOC_SMALL, 7, 0x40),
        (1, UWOP_PUSH_NONVOL, 5, 0)])),
    # SAVE_XMM128_FAR xmm7 +0x30, SAVE_XMM128 xmm6 +0x20 (slot * 16), SAVE_NONVOL_FAR rsi +0x70, alloc 0x78
    ("01130900 1379 3000 0000 0e68 0200 0965 7000 0000 04e2 0000", (0x13, 0, 0, [
        (0x13, UWOP_SAVE_XMM128_FAR, 7, 0x30), (0xE, UWOP_SAVE_XMM128, 6, 0x20),
        (9, UWOP_SAVE_NONVOL_FAR, 6, 0x70), (4, UWOP_ALLOC_SMALL, 14, 0x78)])),
    # a trap handler: machine frame with error code, push rbp, sub rsp,158h, lea rbp,[rsp+80h]
    ("01100585 1003 0801 2b00 0150 001a 0000", (0x10, 5, 0x80, [
        (0x10, UWOP_SET_FPREG, 0, 0), (8, UWOP_ALLOC_LARGE, 0, 0x158), (1, UWOP_PUSH_NONVOL, 5, 0),
        (0, UWOP_PUSH_MACHFRAME, 1, 0)])),
    # an interrupt handler: machine frame without error code
    ("01140685 1403 0c01 2b00 0550 0402 000a", (0x14, 5, 0x80, [
        (0x14, UWOP_SET_FPREG, 0, 0), (0xC, UWOP_ALLOC_LARGE, 0, 0x158), (5, UWOP_PUSH_NONVOL, 5, 0),
        (4, UWOP_ALLOC_SMALL, 0, 8), (0, UWOP_PUSH_MACHFRAME, 0, 0)])),
    # version 2: the UWOP_EPILOG slot (size 6, at the end of the function) describes no prolog operation
    ("02050300 0616 0532 0130 0000", (5, 0, 0, [(5, UWOP_ALLOC_SMALL, 3, 0x20), (1, UWOP_PUSH_NONVOL, 3, 0)])),
    # version 2 with two epilog slots (the first not at the end: its offset in the next slot)
    ("02050400 0606 1006 0532 0130", (5, 0, 0, [(5, UWOP_ALLOC_SMALL, 3, 0x20), (1, UWOP_PUSH_NONVOL, 3, 0)])),
    # r12..r15 pushes (register numbers 12-15)
    ("01080400 08f0 06e0 04d0 02c0", (8, 0, 0, [(8, 0, 15, 0), (6, 0, 14, 0), (4, 0, 13, 0), (2, 0, 12, 0)])),
])
def test_every_unwind_code_is_decoded(hexbytes, expected):
    info = decode_unwind_info(_b(hexbytes))
    assert (info.prolog_size, info.frame_register, info.frame_offset,
            [(c.prolog_offset, c.op, c.info, c.value) for c in info.codes]) == expected
    assert unwind_info_size(_b(hexbytes)[:4]) <= len(_b(hexbytes))


def test_chained_info_and_handler():
    chained = decode_unwind_info(_b("21050200 0574 0200 c0100000 ca100000 10200000"))
    assert chained.is_chained and chained.flags == UNW_FLAG_CHAININFO
    assert chained.chained == RuntimeFunction(0x10C0, 0x10CA, 0x2010)
    assert [(c.op, c.register, c.value) for c in chained.codes] == [(UWOP_SAVE_NONVOL, "rdi", 0x10)]
    # odd code count: the RUNTIME_FUNCTION follows the padding slot
    odd = decode_unwind_info(_b("21010100 0130 0000 c0100000 ca100000 10200000"))
    assert odd.chained == RuntimeFunction(0x10C0, 0x10CA, 0x2010)
    assert unwind_info_size(_b("21010100")) == 4 + 4 + 12
    handler = decode_unwind_info(_b("09040100 0442 0000 78563412"))          # UNW_FLAG_EHANDLER
    assert handler.handler == 0x12345678 and handler.chained is None
    assert unwind_info_size(_b("09040100")) == 4 + 4 + 4


@pytest.mark.parametrize("hexbytes, message", [
    ("0100", "cut short"),
    ("03000000", "version 3"),
    ("01040200 0462", "needs 0x8 bytes"),
    ("01040100 040b 0000", "unknown unwind code 11"),
    ("02040100 0407 0000", "unknown unwind code 7"),
    ("01040100 0401 0000", "needs 2 slots, 1 left"),
    ("01040300 0421 0000 0000 0000", "UWOP_ALLOC_LARGE with OpInfo 2"),
    ("01040100 042a 0000", "UWOP_PUSH_MACHFRAME with OpInfo 2"),
    ("01040100 0403 0000", "UWOP_SET_FPREG without a frame register"),
    ("01040104 0403 0000", "names rsp as its frame register"),
    ("21000000", "needs 0x10 bytes"),
])
def test_malformed_unwind_info_is_one_unwind_error(hexbytes, message):
    with pytest.raises(UnwindError, match=message):
        decode_unwind_info(_b(hexbytes), 0x2000)


def test_error_names_the_address():
    with pytest.raises(UnwindError, match=r"rva 0x2000 .*\(at fffff804`76002000\)"):
        decode_unwind_info(_b("03000000"), 0x2000, 0xFFFFF80476000000)


def _pe_value(code):
    """pefile's allocation size or save offset for the codes that have one (None for the others)."""
    if code.struct.UnwindOp in (UWOP_ALLOC_SMALL, UWOP_ALLOC_LARGE):
        return code.get_alloc_size()
    if code.struct.UnwindOp in (UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR):
        return code.get_offset()
    return None


@pytest.mark.parametrize("scenario", ["basic", "unwind-zoo"])
def test_decoding_agrees_with_pefile_on_every_builder_function(tmp_path, scenario):
    """pefile (an independent parser) and ours read the same codes from every .pdata entry."""
    built = build_builtin(scenario, str(tmp_path), "full")
    compared = 0
    for module in built.modules:
        pe = pefile.PE(data=module.image.data)
        for entry in getattr(pe, "DIRECTORY_ENTRY_EXCEPTION", []):
            raw = module.image.data[entry.struct.UnwindData:entry.struct.UnwindData + 0x220]
            ours = decode_unwind_info(raw, entry.struct.UnwindData)
            theirs = entry.unwindinfo
            assert (ours.version, ours.prolog_size, ours.frame_register, ours.frame_offset // 16) == (
                theirs.Version, theirs.SizeOfProlog, theirs.FrameRegister, theirs.FrameOffset)
            # pefile lists version 2's epilog slots too; it names OpInfo by meaning (Reg, sizes ...)
            pe_codes = [(c.struct.CodeOffset, c.struct.UnwindOp, getattr(c.struct, "Reg", None), _pe_value(c))
                        for c in theirs.UnwindCodes if c.struct.UnwindOp != 6]
            assert [(c.prolog_offset, c.op, c.info if c.op in (0, 4, 5, 8, 9) else None,
                     c.value if c.op in (1, 2, 4, 5) else None) for c in ours.codes] == pe_codes
            if ours.is_chained:                                # pefile keeps the chained entry's start
                assert ours.chained.begin == theirs.FunctionEntry
            compared += 1
    assert compared == {"basic": 8, "unwind-zoo": 14}[scenario]
