"""Shared pieces of the stack tests: a target that hides memory, and symbolizers on a scenario's store."""

import shutil
import struct

from pytriage.dump.kernel_dump import KernelDump
from pytriage.errors import MemoryReadError
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.symbolizer import Symbolizer
from pytriage.target.offline import OfflineDumpTarget
from tests.conftest import file_offset_of_va


class HidingTarget(OfflineDumpTarget):
    """The dump, with some virtual ranges made unreadable: an image page that a triage dump would not
    hold, a paged-out ``.pdata``."""

    def __init__(self, path, hidden=()):
        super().__init__(KernelDump(path))
        self.hidden = list(hidden)

    def _read_backend(self, va, size):
        for lo, hi in self.hidden:
            if va < hi and va + size > lo:
                raise MemoryReadError(max(va, lo), "hidden by the test")
        return super()._read_backend(va, size)


def store_symbolizer(target, built):
    """Names from the scenario's PDBs; its symbol store also serves the module image files."""
    return Symbolizer(target, store=SymbolStore(built.symstore_path), isf_dirs=[])


def module(built, name):
    return next(m for m in built.modules if m.spec.name == name)


def patched_copy(built, tmp_path, patches, name="patched.dmp"):
    """A copy of the scenario's dump with qwords replaced: ``{virtual address: value}``."""
    path = str(tmp_path / name)
    shutil.copyfile(built.dump_path, path)
    with open(path, "r+b") as fh:
        for va, value in patches.items():
            fh.seek(file_offset_of_va(path, va))
            fh.write(struct.pack("<Q", value))
    return path


def rows(walk):
    """(Child-SP, RetAddr, call site, TrapFrame) per frame, as `k` shows them."""
    return [(f.child_sp, f.return_address, f.call_site, f.trap_frame) for f in walk.frames]


def plan_rows(plan):
    return [(f.child_sp, f.return_address, f.name, f.trap_frame) for f in plan.frames]
