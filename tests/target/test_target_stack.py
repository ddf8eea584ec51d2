"""``Target.stack`` on a backend that is not a dump (FakeTarget: memory given as data), the way a
debugger adapter would call it: no module headers, so the walk scans and says why."""

from pytriage.target.fake import FakeTarget
from pytriage.target.model import make_module

MOD = 0xFFFFF80400000000
STACK = 0xFFFFC00000001000


def test_stack_on_a_fake_target_scans_and_explains():
    module = make_module("\\SystemRoot\\System32\\drivers\\fake.sys", MOD, 0x3000, 0x5F000000, 0, 1)
    memory = {
        MOD + 0xFFD: bytes.fromhex("909090 e800000000"),                  # a call that ends at MOD+0x1005
        STACK: (0x1111).to_bytes(8, "little") + (MOD + 0x1005).to_bytes(8, "little") + bytes(8),
    }
    target = FakeTarget(memory=memory, modules=[module], registers={"rip": MOD + 0x2000, "rsp": STACK})
    walk = target.stack()
    assert [(f.child_sp, f.instruction_pointer, f.found_by, f.call_site) for f in walk.frames] == [
        (STACK, MOD + 0x2000, "context", "fake+0x2000"), (STACK + 0x10, MOD + 0x1005, "scanned", "fake+0x1005")]
    assert walk.frames[1].scan.instruction == "call 0xfffff80400001005 at fffff804`00001000"
    assert walk.notes == ["fake has no unwind data: its headers are not in the dump; no symbol path to fetch "
                          "fake.sys from"]
    assert (walk.stop_reason, walk.stop_text) == (
        "unreadable", "frame 01 (fake+0x1005): no unwind data, and the stack scan for its return address reached "
        "unreadable memory at ffffc000`00001018")
    assert target.stack() is not walk and target.__dict__["_unwind_catalog"][0] is None     # catalog kept
