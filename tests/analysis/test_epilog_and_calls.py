"""Epilog recognition (Microsoft's x64 epilog rules) and call-before-return-address decoding (capstone)."""

import struct

import pytest

from pytriage.analysis.call_site import call_ending_at
from pytriage.analysis.epilog import EpilogStep, parse_epilog, run_epilog

BASE = 0xFFFFF80476001000
RBP, R12, R13 = 5, 12, 13


def _b(text):
    return bytes.fromhex(text.replace(" ", ""))


def _never_inside(_va):
    return False


@pytest.mark.parametrize("code, frame_register, steps", [
    ("4883c420 5b c3", None, [EpilogStep("add", value=0x20), EpilogStep("pop", "rbx"), EpilogStep("ret")]),
    ("4881c408100000 c3", None, [EpilogStep("add", value=0x1008), EpilogStep("ret")]),
    ("488d6520 5d c3", RBP, [EpilogStep("lea", "rbp", 0x20), EpilogStep("pop", "rbp"), EpilogStep("ret")]),
    ("488da500010000 5d c3", RBP, [EpilogStep("lea", "rbp", 0x100), EpilogStep("pop", "rbp"), EpilogStep("ret")]),
    ("498d6424f0 415c c3", R12, [EpilogStep("lea", "r12", -0x10), EpilogStep("pop", "r12"), EpilogStep("ret")]),
    ("498d6508 415d c3", R13, [EpilogStep("lea", "r13", 8), EpilogStep("pop", "r13"), EpilogStep("ret")]),
    ("415f 415e 5f 5e 5b c3", None, [EpilogStep("pop", r) for r in ("r15", "r14", "rdi", "rsi", "rbx")]
     + [EpilogStep("ret")]),
    ("c3", None, [EpilogStep("ret")]),
    ("c20800", None, [EpilogStep("ret")]),
    ("f3c3", None, [EpilogStep("ret")]),
    ("5b e9 00100000", None, [EpilogStep("pop", "rbx"), EpilogStep("jmp")]),          # tail call out
    ("4883c428 eb10", None, [EpilogStep("add", value=0x28), EpilogStep("jmp")]),
    ("4883c428 ff2500100000", None, [EpilogStep("add", value=0x28), EpilogStep("jmp")]),   # jmp [rip+...]
    ("4883c428 48ff2500100000", None, [EpilogStep("add", value=0x28), EpilogStep("jmp")]),
    ("4883c428 ff20", None, [EpilogStep("add", value=0x28), EpilogStep("jmp")]),          # jmp [rax], mod 00
])
def test_epilogs_are_recognised(code, frame_register, steps):
    assert parse_epilog(_b(code), BASE, frame_register, _never_inside) == steps


@pytest.mark.parametrize("code, frame_register, inside", [
    ("4883c420 90 c3", None, False),          # a nop: not an epilog
    ("488d6520 5d c3", None, False),          # lea rsp,[rbp+..] without a frame register
    ("488d6520 5d c3", R12, False),           # ... or based on another register than the frame register
    ("4883c420 5c c3", None, False),          # pop rsp is no epilog pop
    ("4883c428 ff6008", None, False),         # jmp [rax+8]: mod 01 is not allowed
    ("4883c428 ffe0", None, False),           # jmp rax: mod 11 is not allowed
    ("5b e9 00100000", None, True),           # a jump inside the function is no tail call
    ("488b01 c3", None, False),               # a body instruction first
    ("4883ec20 c3", None, False),             # sub rsp is a prolog
])
def test_non_epilogs_are_refused(code, frame_register, inside):
    assert parse_epilog(_b(code), BASE, frame_register, lambda va: inside) is None


def test_running_an_epilog_restores_registers_and_returns():
    stack = {0x1000 + 0x20: 0xB0B0, 0x1000 + 0x28: 0xC0C0, 0x1000 + 0x30: 0xFFFFF80472001089}
    regs = {"rip": BASE, "rsp": 0x1000, "rbx": 1, "rsi": 2, "rbp": 0x900}
    steps = parse_epilog(_b("4883c420 5b 5e c3"), BASE, None, _never_inside)
    after = run_epilog(steps, regs, stack.__getitem__)
    assert after == {"rip": 0xFFFFF80472001089, "rsp": 0x1038, "rbx": 0xB0B0, "rsi": 0xC0C0, "rbp": 0x900}
    steps = parse_epilog(_b("488d6510 5d c3"), BASE, RBP, _never_inside)
    after = run_epilog(steps, {"rip": BASE, "rsp": 0x800, "rbp": 0xFF0}, {0x1000: 0x77, 0x1008: 0x99}.__getitem__)
    assert after == {"rip": 0x99, "rsp": 0x1010, "rbp": 0x77}


@pytest.mark.parametrize("code, end_offset, expected", [
    ("4883ec28 e800000000 90", 9, (4, 5, "call", 9)),       # e8 rel32 (target = the next instruction here)
    ("e8fbffffff", 5, (0, 5, "call", 0)),                   # a call to itself
    ("ff5018 90", 3, (0, 3, "call qword ptr [rax + 0x18]", None)),
    ("ff5320", 3, (0, 3, "call qword ptr [rbx + 0x20]", None)),
    ("ffd0", 2, (0, 2, "call rax", None)),
    ("41ffd0", 3, (0, 3, "call r8", None)),
    ("ff1500100000", 6, (0, 6, "call qword ptr [rip + 0x1000]", None)),
    ("48ff1500100000", 7, (0, 7, "call qword ptr [rip + 0x1000]", None)),
    ("ff94240001000090", 7, (0, 7, "call qword ptr [rsp + 0x100]", None)),
    ("41ff542408", 5, (0, 5, "call qword ptr [r12 + 8]", None)),
    ("41ff9424 00010000", 8, (0, 8, "call qword ptr [r12 + 0x100]", None)),
    ("4883c428 c3", 4, None),                               # add rsp,28h is no call
    ("ff7018 90", 3, None),                                 # push [rax+18h] (ff /6)
    ("ff1800", 2, None),                                    # lcall (ff /3) is no near call
    ("90909090", 4, None),
])
def test_call_instructions_before_a_return_address(code, end_offset, expected):
    data = _b(code)[:end_offset]
    found = call_ending_at(data, BASE + end_offset)
    if expected is None:
        assert found is None
        return
    start, length, text, target = expected
    assert (found.address - BASE, found.length) == (start, length)
    assert found.text.startswith(text)
    assert found.target == (None if target is None else BASE + target)


def test_call_target_wraps_like_the_processor():
    code = b"\xe8" + struct.pack("<i", -0x10)
    assert call_ending_at(code, 0x8).target == 0xFFFFFFFFFFFFFFF8
