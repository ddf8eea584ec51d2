"""Built-in layouts against two independent oracles: clang's MSVC-ABI record layout of the public WDK
declarations, and the real ntkrnlmp 19041 symbols (volatility3 ISF in the corpus)."""

import os

import pytest

from pytriage.symbols.builtin import builtin_layouts
from pytriage.symbols.isf import load_isf
from tests.conftest import CORPUS
from tests.symbols.clang_layout import clang_record_layouts

WDK_SOURCE = os.path.join(os.path.dirname(__file__), "data", "wdk_public.c")
KERNEL_ISF = os.path.join(CORPUS, "symbols", "ntkrnlmp.pdb-5278AFF86C341677D7D7835C85B7B844-1.json.xz")
DOCUMENTED = ["_LIST_ENTRY", "_SINGLE_LIST_ENTRY", "_MDL", "_POOL_HEADER", "_NET_BUFFER", "_NET_BUFFER_LIST",
              "_NET_BUFFER_LIST_CONTEXT"]
# Named alternatives of the header unions: same bytes as Next/FirstNetBuffer..., not separate fields.
NOT_DECLARED = {"Link", "NetBufferHeader", "NetBufferListHeader"}


def _bits(field):
    if field.bit_length is not None:
        return field.offset * 8 + field.bit_position, field.bit_length
    return field.offset * 8, 0


@pytest.fixture(scope="module")
def clang_layouts():
    return clang_record_layouts(WDK_SOURCE)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_documented_layout_equals_clang(name, clang_layouts):
    layout = builtin_layouts().type_layout(name)
    size, fields = clang_layouts[name]
    assert layout.size == size
    ours = {f.name: _bits(f) for f in layout.fields}
    assert ours == {k: v for k, v in fields.items() if k not in NOT_DECLARED}
    assert layout.source.startswith("builtin:documented")


@pytest.mark.parametrize("name", ["_LIST_ENTRY", "_SINGLE_LIST_ENTRY", "_MDL", "_POOL_HEADER"])
def test_documented_layout_equals_kernel_symbols(name):
    kernel = load_isf(KERNEL_ISF).type_layout(name)
    ours = builtin_layouts().type_layout(name)
    assert ours.size == kernel.size
    assert {f.name: (f.offset, f.bit_position, f.bit_length, f.type.size) for f in ours.fields} == \
        {f.name: (f.offset, f.bit_position, f.bit_length, f.type.size) for f in kernel.fields}


def test_observed_dot11_layout_is_consistent_with_the_crash_facts():
    table = builtin_layouts()
    entry = table.type_layout("DOT11_COMPLETION_STACK_ENTRY")
    context = table.type_layout("DOT11_PACKET_CONTEXT")
    nbl_context = table.type_layout("_NET_BUFFER_LIST_CONTEXT")
    assert entry.size == 0x18 and [f.offset for f in entry.fields] == [0x0, 0x8, 0x10]
    cmpl = context.field("CmplArray")
    assert (cmpl.offset, cmpl.type.count, cmpl.type.target.name) == (0x30, 16, "DOT11_COMPLETION_STACK_ENTRY")
    assert cmpl.offset + cmpl.type.size == context.offset_of("pExtension") == 0x1B0
    # DESIGN 8: the packet context is the NBL context's data area, so pBOS = NBL->Context + 0x40.
    assert nbl_context.offset_of("ContextData") + cmpl.offset == 0x40
    assert context.source.startswith("builtin:observed") and context.builds == "17134-17763"
