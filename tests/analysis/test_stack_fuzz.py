"""Garbage in, one-line stop out: random stacks and random unwind data never raise, loop or run away.

The unwind-zoo dump is read through a target that replaces the thread's stack pages, or the zoo
module's ``.rdata``/``.pdata`` (its UNWIND_INFOs and RUNTIME_FUNCTIONs), with seeded random bytes.
"""

import random

import pytest

from pytriage.analysis.stack_walk import WalkLimits, walk_stack
from pytriage.scenarios import build_builtin
from pytriage.target.offline import OfflineDumpTarget
from tests.analysis.stack_helpers import module, store_symbolizer

STOPS = {"end", "max-frames", "read-budget", "unreadable", "no-module", "not-increasing", "loop", "scan-failed",
         "user-mode"}


class _Noisy(OfflineDumpTarget):
    """The dump, with ``ranges`` (virtual) replaced by random bytes (a fresh choice per page)."""

    def __init__(self, dump_path, ranges, seed):
        from pytriage.dump.kernel_dump import KernelDump
        super().__init__(KernelDump(dump_path))
        self.ranges = ranges
        self.rng = random.Random(seed)
        self.noise = {}

    def _read_backend(self, va, size):
        data = bytearray(super()._read_backend(va, size))
        for lo, hi in self.ranges:
            for i in range(max(lo, va), min(hi, va + size)):
                page = i & ~0xFFF
                if page not in self.noise:
                    self.noise[page] = bytes(self.rng.getrandbits(8) for _ in range(0x1000))
                data[i - va] = self.noise[page][i & 0xFFF]
        return bytes(data)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_builtin("unwind-zoo", str(tmp_path_factory.mktemp("zoo-fuzz")), "bitmap")


def _walk(zoo, ranges, seed, unverified):
    target = _Noisy(zoo.dump_path, ranges, seed)
    symbolizer = store_symbolizer(target, zoo)
    try:
        return walk_stack(target, target.context_record(), symbolizer,
                          limits=WalkLimits(max_frames=64, scan_unverified=unverified))
    finally:
        symbolizer.close()
        target.close()


@pytest.mark.parametrize("seed", range(40))
def test_random_stack_contents(zoo, seed):
    plan = zoo.stack
    lo = (plan.lowest & ~0xFFF) + 0x1000 * (seed % 3)        # keep frame 0's page sometimes
    walk = _walk(zoo, [(lo, max(plan.writes) + 0x1000)], seed, unverified=seed % 2 == 1)
    assert walk.stop_reason in STOPS and (walk.stop_text == "") == (walk.stop_reason == "end")
    assert 1 <= len(walk.frames) <= 64 and "\n" not in walk.stop_text


@pytest.mark.parametrize("seed", range(40))
def test_random_unwind_data(zoo, seed):
    image = module(zoo, "unwindzoo.sys")
    rdata = next(s for s in image.image.sections if s.name == ".rdata")
    base = image.spec.base
    ranges = [(base + image.image.pdata_rva, base + image.image.pdata_rva + 0x1000)] if seed % 2 else []
    ranges.append((base + rdata.rva + 0x40, base + rdata.rva + rdata.virtual_size))   # keep the debug directory
    walk = _walk(zoo, ranges, seed, unverified=False)
    assert walk.stop_reason in STOPS and len(walk.frames) <= 64
    assert [f.call_site for f in walk.frames[:3]] == ["nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0xc",
                                                      "nt!KiPageFault+0x1a"]    # nt's unwind data is intact


@pytest.mark.parametrize("seed", range(20))
def test_random_image_headers_fall_back_to_the_image_file(zoo, seed):
    """The zoo module's header page is garbage (past its first 2 bytes, kept "MZ" half the time): its unwind
    data comes from the image file in the scenario's store and the walk is the builder's plan."""
    base = module(zoo, "unwindzoo.sys").spec.base
    walk = _walk(zoo, [(base + (2 if seed % 2 else 0), base + 0x1000)], seed, unverified=False)
    assert [(f.child_sp, f.instruction_pointer) for f in walk.frames] == [(f.child_sp, f.rip) for f in zoo.stack.frames]
    assert walk.complete
    assert any(n.startswith("unwindzoo: unwind data from the image file ") for n in walk.notes)
