"""The spec's ``nbl`` section: NET_BUFFER_LIST chains with real packets, NBL contexts and nwifi DOT11
completion stacks, laid out in classic pool pages (DESIGN 8, docs/scenarios.md).

Every NBL is one pool allocation holding the NBL, its NET_BUFFERs and their MDLs (what
``NdisAllocateNetBufferAndNetBufferList`` hands out), tagged as the spec says, so the pool layer finds
its owner. Packet bytes live in their own pool blocks mapped by ``MappedSystemVa`` (``"mapping": "va"``),
in physical pages reachable only through the MDL's PFN array (``"pfn"``), or nowhere (``"unmapped"``: a
mapped-looking VA and a PFN outside the machine's memory). An NBL context is a pool block holding a
``NET_BUFFER_LIST_CONTEXT`` header and its data; ``dot11`` writes nwifi's ``DOT11_PACKET_CONTEXT`` at the
data start (``Context + 0x10 + Offset``), with ``pTOS`` one entry past the top of ``CmplArray`` (a push
stores at pTOS and adds 0x18, so ``pTOS == &CmplArray[0]`` is an empty stack).

Addresses inside the section are references, resolved when the machine is built: a number,
``@id[+off]`` (an NBL or a block of this section), ``module!symbol[+off]`` (a spec module's function or
data symbol), ``$rsp[+/-off]`` (the crash context's stack pointer). ``writes`` puts qwords at such an
address (an entry on a kernel stack, say).

The structure offsets here are written out from the public WDK declarations on purpose rather than
taken from ``symbols.builtin``: the walker reads with the built-in layouts, the builder writes with
these, and the clang test proves both against the headers.
"""

import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from pytriage.errors import SpecError
from pytriage.scenarios.pool import PAGE, BlockSpec, PoolPageSpec, _tag
from pytriage.scenarios.spec import parse_data, parse_int
from pytriage.scenarios.spec import require_list as seq
from pytriage.scenarios.spec import require_object as obj

NBL_SIZE, NB_SIZE, MDL_SIZE, NBL_CONTEXT_HEADER = 0x170, 0xB0, 0x30, 0x10
DOT11_CONTEXT_SIZE, DOT11_ENTRY_SIZE, DOT11_ENTRIES = 0x1B8, 0x18, 16
MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED, MDL_SOURCE_IS_NONPAGED_POOL, MDL_ALLOCATED_FIXED_SIZE = 0x1, 0x2, 0x4, 0x8
UNREADABLE_PFN = 0x7FFFFFFF                      # far outside any scenario's physical memory
_MAPPINGS = ("va", "pfn", "unmapped")
_REF = re.compile(r"^\s*(?:(@[A-Za-z0-9_.-]+)|(\$rsp)|([A-Za-z0-9_.-]+![\x21-\x7e]+?))\s*(?:([+-])\s*(\S+))?\s*$")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass
class Ref:
    """An address as the spec wrote it; ``NblBuild.resolve`` turns it into a number."""
    text: Any
    path: str


@dataclass
class BlockDecl:
    id: str
    tag: int
    size: int
    data: bytes
    path: str


@dataclass
class NetBufferDecl:
    packet: bytes
    mdl_sizes: List[int]           # how the packet is split over MDLs (the last one takes the rest)
    headroom: int                  # unused bytes before the packet in the first MDL (DataOffset)
    mappings: List[str]            # per MDL: va, pfn, unmapped (one value given = every MDL)
    path: str


@dataclass
class Dot11Decl:
    tos_index: Optional[int]       # pTOS = &CmplArray[tos_index] ...
    tos: Optional[Ref]             # ... or any address
    entries: List[Tuple[Ref, Ref, Ref]]   # CmplArray[0..]: pRoutine, pCtxt, pCtxt2
    velan: Ref


@dataclass
class ContextDecl:
    tag: int
    size: int                      # NET_BUFFER_LIST_CONTEXT.Size (data bytes)
    offset: int                    # NET_BUFFER_LIST_CONTEXT.Offset
    dot11: Optional[Dot11Decl]


@dataclass
class NblDecl:
    id: str
    tag: int
    data_tag: int
    next: Optional[Ref]
    parent: Optional[Ref]
    pool_handle: Ref
    source_handle: Ref
    flags: int
    nbl_flags: int
    status: int
    child_ref_count: int
    net_buffers: List[NetBufferDecl]
    context: Optional[ContextDecl]
    path: str


@dataclass
class WriteDecl:
    at: Ref
    qwords: List[Ref]


@dataclass
class NblSpec:
    area: int
    blocks: List[BlockDecl] = field(default_factory=list)
    nbls: List[NblDecl] = field(default_factory=list)
    writes: List[WriteDecl] = field(default_factory=list)
    demo: Optional[str] = None     # the NBL `pytriage demo` walks


def reference_kind(value: Any) -> Optional[str]:
    """What ``value`` refers to when it is a reference: "@" (an NBL or block of the section), "$rsp" or "!" (a
    module's symbol); None for anything else (a number)."""
    match = _REF.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    local, rsp = match.group(1), match.group(2)
    return "@" if local else "$rsp" if rsp else "!"


def _ref(value: Any, path: str) -> Ref:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError("%s: an address: a number, \"@id+0x10\", \"module!symbol\" or \"$rsp+0x40\"" % path)
    if isinstance(value, str) and not _REF.match(value):
        parse_int(value, path)             # neither a reference nor a number: say so
    return Ref(value, path)


def _opt_ref(item: dict, key: str, path: str) -> Optional[Ref]:
    value = item.get(key)
    return None if value is None else _ref(value, "%s.%s" % (path, key))


def _identifier(value: Any, path: str, seen: Dict[str, str]) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise SpecError("%s: an id is 1-64 letters, digits, '.', '_' or '-'" % path)
    if value in seen:
        raise SpecError("%s: id %r is already used by %s" % (path, value, seen[value]))
    seen[value] = path
    return value


def _net_buffer(item: Any, path: str) -> NetBufferDecl:
    item = obj(item, path)
    packet = parse_data(obj(item.get("packet"), path + ".packet"), path + ".packet")
    if not 1 <= len(packet) <= 0x4000:
        raise SpecError("%s.packet: 1 to 0x4000 bytes" % path)
    sizes = [parse_int(s, "%s.mdl_sizes[%d]" % (path, i)) for i, s in enumerate(seq(item.get("mdl_sizes", []),
                                                                                      path + ".mdl_sizes"))]
    if any(s <= 0 for s in sizes) or sum(sizes) >= len(packet) and sizes:
        raise SpecError("%s.mdl_sizes: positive sizes that leave bytes for the last MDL" % path)
    headroom = parse_int(item.get("headroom", 0), path + ".headroom")
    if not 0 <= headroom <= 0x800:
        raise SpecError("%s.headroom: 0 to 0x800 bytes" % path)
    mapping = item.get("mapping", "va")
    mappings = mapping if isinstance(mapping, list) else [mapping] * (len(sizes) + 1)
    if len(mappings) != len(sizes) + 1 or any(m not in _MAPPINGS for m in mappings):
        raise SpecError("%s.mapping: one of %s, or a list of them, one per MDL (%d)" % (
            path, ", ".join(_MAPPINGS), len(sizes) + 1))
    return NetBufferDecl(packet, sizes, headroom, mappings, path)


def _dot11(item: Any, path: str) -> Dot11Decl:
    item = obj(item, path)
    if ("tos_index" in item) == ("tos" in item):
        raise SpecError("%s: give either tos_index (pTOS = &CmplArray[n]) or tos (an address)" % path)
    tos_index = None
    if "tos_index" in item:
        tos_index = parse_int(item["tos_index"], path + ".tos_index")
        if not 0 <= tos_index <= DOT11_ENTRIES:
            raise SpecError("%s.tos_index: 0 to %d" % (path, DOT11_ENTRIES))
    entries = []
    for i, entry in enumerate(seq(item.get("entries", []), path + ".entries")):
        epath = "%s.entries[%d]" % (path, i)
        entry = obj(entry, epath)
        entries.append(tuple(_ref(entry.get(k, 0), "%s.%s" % (epath, k)) for k in ("routine", "ctxt", "ctxt2")))
    if len(entries) > DOT11_ENTRIES:
        raise SpecError("%s.entries: CmplArray has %d entries" % (path, DOT11_ENTRIES))
    return Dot11Decl(tos_index, _opt_ref(item, "tos", path), entries,   # type: ignore[arg-type]
                     _ref(item.get("velan", 0), path + ".velan"))


def _context(item: Any, path: str) -> ContextDecl:
    item = obj(item, path)
    dot11 = _dot11(item["dot11"], path + ".dot11") if "dot11" in item else None
    size = parse_int(item.get("size", "0x1c0" if dot11 else "0x40"), path + ".size")
    offset = parse_int(item.get("offset", 0), path + ".offset")
    if not 0 < size <= 0xF00 or not 0 <= offset <= size:
        raise SpecError("%s: size 1..0xf00 and 0 <= offset <= size" % path)
    if dot11 is not None and size - offset < DOT11_CONTEXT_SIZE:
        raise SpecError("%s: a DOT11 packet context needs 0x%x bytes after offset" % (path, DOT11_CONTEXT_SIZE))
    return ContextDecl(_tag(item.get("tag", "NDnc"), path + ".tag"), size, offset, dot11)


def parse_nbl(doc: Any) -> Optional[NblSpec]:
    if doc is None:
        return None
    doc = obj(doc, "nbl")
    area = parse_int(doc.get("area"), "nbl.area")
    if area >> 47 != 0x1FFFF or area % PAGE:
        raise SpecError("nbl.area: 0x%x is not a page-aligned kernel address" % area)
    spec = NblSpec(area)
    seen: Dict[str, str] = {}
    for i, block in enumerate(seq(doc.get("blocks", []), "nbl.blocks")):
        path = "nbl.blocks[%d]" % i
        block = obj(block, path)
        data = parse_data(obj(block["data"], path + ".data"), path + ".data") if "data" in block else b""
        size = parse_int(block.get("size", max(len(data), 0x10)), path + ".size")
        if not len(data) <= size <= 0xFE0:
            raise SpecError("%s.size: 0x%x must hold the data (0x%x bytes) and fit a page (0xfe0)" % (path, size,
                                                                                                   len(data)))
        spec.blocks.append(BlockDecl(_identifier(block.get("id"), path + ".id", seen),
                                     _tag(block.get("tag"), path + ".tag"), size, data, path))
    for i, item in enumerate(seq(doc.get("nbls", []), "nbl.nbls")):
        path = "nbl.nbls[%d]" % i
        item = obj(item, path)
        nbs = [_net_buffer(nb, "%s.net_buffers[%d]" % (path, j))
               for j, nb in enumerate(seq(item.get("net_buffers", []), path + ".net_buffers"))]
        if not 1 <= len(nbs) <= 8:
            raise SpecError("%s.net_buffers: 1 to 8 NET_BUFFERs" % path)
        spec.nbls.append(NblDecl(
            _identifier(item.get("id"), path + ".id", seen), _tag(item.get("tag", "NDnd"), path + ".tag"),
            _tag(item.get("data_tag", "NDnd"), path + ".data_tag"),
            _opt_ref(item, "next", path), _opt_ref(item, "parent", path),
            _ref(item.get("pool_handle", 0), path + ".pool_handle"),
            _ref(item.get("source_handle", 0), path + ".source_handle"),
            parse_int(item.get("flags", 0), path + ".flags") & 0xFFFFFFFF,
            parse_int(item.get("nbl_flags", 0), path + ".nbl_flags") & 0xFFFFFFFF,
            parse_int(item.get("status", 0), path + ".status") & 0xFFFFFFFF,
            parse_int(item.get("child_ref_count", 0), path + ".child_ref_count") & 0xFFFFFFFF,
            nbs, _context(item["context"], path + ".context") if "context" in item else None, path))
    demo = doc.get("demo")
    if demo is not None:
        if demo not in [n.id for n in spec.nbls]:
            raise SpecError("nbl.demo: %r is not the id of an NBL of the section" % (demo,))
        spec.demo = demo
    for i, item in enumerate(seq(doc.get("writes", []), "nbl.writes")):
        path = "nbl.writes[%d]" % i
        item = obj(item, path)
        spec.writes.append(WriteDecl(_ref(item.get("at"), path + ".at"),
                                     [_ref(q, "%s.qwords[%d]" % (path, j))
                                      for j, q in enumerate(seq(item.get("qwords", []), path + ".qwords"))]))
    return spec


# -- building ---------------------------------------------------------------------------------------------
def _align(value: int, to: int = 16) -> int:
    return (value + to - 1) // to * to


class _Pages:
    """Bump allocation of pool blocks over consecutive pages from ``area`` (a block never spans pages)."""

    def __init__(self, area: int) -> None:
        self.pages: List[PoolPageSpec] = []
        self.area = area
        self.used = PAGE

    def place(self, tag: int, data_size: int, path: str) -> Tuple[int, BlockSpec]:
        size = _align(data_size + 16)
        if size > PAGE - 16:
            raise SpecError("%s: 0x%x bytes do not fit in one pool page" % (path, data_size))
        if self.used + size > PAGE:
            self.pages.append(PoolPageSpec(self.area + len(self.pages) * PAGE, "nonpaged", [], path))
            self.used = 0
        block = BlockSpec(tag, size, False, b"", None, path)
        page = self.pages[-1]
        page.blocks.append(block)
        start = page.va + self.used
        self.used += size
        return start + 16, block


@dataclass
class _Mdl:
    va: int
    data: bytes                    # the bytes the MDL describes
    mapping: str
    buffer: int = 0                # where the bytes are (a VA for "va", a PA for "pfn")
    block: Optional[BlockSpec] = None
    frames: List[int] = field(default_factory=list)     # "pfn": the physical pages holding the bytes


def _mdl_room(mdl: _Mdl) -> int:
    """Bytes reserved for an MDL and its PFN array: enough pages for wherever its buffer lands (a pool
    buffer's page offset is known only once it is placed)."""
    offset = 0x80 if mdl.mapping != "va" else 0
    return MDL_SIZE + 8 * max(1, (offset + len(mdl.data) + 16 + PAGE - 1) // PAGE + 1)


class _Unwritten:
    """Memory for a layout that only computes addresses: writes go nowhere, physical pages are not taken."""

    def write(self, va: int, data: bytes) -> None:
        pass

    def alloc(self, high: bool = False) -> int:
        return 0


def planned_layout(spec: Optional[NblSpec], symbol: Callable[[str], Optional[int]]) -> "NblBuild":
    """The section's addresses, with nothing written: the builder resolves references made outside the section
    (a stack frame's registers, "@seed") before the stack exists, while the section is laid out after it.
    ``plan`` places blocks by arithmetic alone, so the real layout puts every id at the same address."""
    layout = NblBuild(spec if spec is not None else NblSpec(0), _Unwritten(), _Unwritten(), symbol, 0)
    layout.plan()
    return layout


class NblBuild:
    """Lays the section out: ``plan`` places every block, ``fill`` writes the bytes once every address is known."""

    def __init__(self, spec: NblSpec, space, phys, symbol: Callable[[str], Optional[int]], rsp: int) -> None:
        self.spec = spec
        self.space = space
        self.phys = phys
        self.symbol = symbol
        self.rsp = rsp
        self.pages = _Pages(spec.area)
        self.addresses: Dict[str, int] = {}
        self._blocks: Dict[str, BlockSpec] = {}
        self._nbl_blocks: Dict[str, Tuple[BlockSpec, List[int], List[List[_Mdl]]]] = {}
        self._contexts: Dict[str, Tuple[int, BlockSpec]] = {}
        self._unmapped_cursor = spec.area + 0x4000000          # never mapped: MDL StartVa of PFN-only buffers

    def resolve(self, ref: Optional[Ref]) -> int:
        if ref is None:
            return 0
        if isinstance(ref.text, int):
            return ref.text & 0xFFFFFFFFFFFFFFFF
        match = _REF.match(ref.text)
        if match is None:
            return parse_int(ref.text, ref.path) & 0xFFFFFFFFFFFFFFFF
        local, rsp, symbol, sign, offset_text = match.groups()
        if local:
            if local[1:] not in self.addresses:
                raise SpecError("%s: no NBL or block with id %r in the nbl section" % (ref.path, local[1:]))
            base = self.addresses[local[1:]]
        elif rsp:
            base = self.rsp
        else:
            found = self.symbol(symbol)
            if found is None:
                raise SpecError("%s: no symbol %s among the spec's modules" % (ref.path, symbol))
            base = found
        offset = parse_int(offset_text, ref.path) if offset_text else 0
        return (base - offset if sign == "-" else base + offset) & 0xFFFFFFFFFFFFFFFF

    # -- pass 1: addresses ------------------------------------------------------------------------------
    def plan(self) -> None:
        for block in self.spec.blocks:
            self.addresses[block.id], self._blocks[block.id] = self.pages.place(block.tag, block.size, block.path)
        for nbl in self.spec.nbls:
            mdls = [[_Mdl(0, piece, nb.mappings[i]) for i, piece in enumerate(self._pieces(nb))]
                    for nb in nbl.net_buffers]
            headers = NBL_SIZE + NB_SIZE * len(mdls)
            va, block = self.pages.place(nbl.tag, headers + sum(_mdl_room(m) for chain in mdls for m in chain),
                                         nbl.path)
            self.addresses[nbl.id] = va
            self._nbl_blocks[nbl.id] = (block, [va + NBL_SIZE + NB_SIZE * i for i in range(len(mdls))], mdls)
            cursor = va + headers
            for chain in mdls:
                for mdl in chain:
                    mdl.va = cursor
                    cursor += _mdl_room(mdl)
                    self._place_buffer(nbl, mdl)
            if nbl.context is not None:
                self._contexts[nbl.id] = self.pages.place(nbl.context.tag, NBL_CONTEXT_HEADER + nbl.context.size,
                                                          nbl.path + ".context")
                # a context's address is the NET_BUFFER_LIST_CONTEXT header, i.e. the block's data start
        for page in self.pages.pages:                  # map every page now: PFN arrays need their frames
            self.space.write(page.va, bytes(PAGE))

    @staticmethod
    def _pieces(nb: NetBufferDecl) -> List[bytes]:
        data = bytes(nb.headroom) + nb.packet
        cuts = [nb.headroom + s if i == 0 else s for i, s in enumerate(nb.mdl_sizes)]   # headroom: first MDL only
        pieces, start = [], 0
        for size in cuts:
            pieces.append(data[start:start + size])
            start += size
        pieces.append(data[start:])
        return pieces

    def _place_buffer(self, nbl: NblDecl, mdl: _Mdl) -> None:
        if mdl.mapping == "va":
            mdl.buffer, mdl.block = self.pages.place(nbl.data_tag, len(mdl.data), nbl.path + ".packet")
        elif mdl.mapping == "pfn":
            count = (0x80 + len(mdl.data) + PAGE - 1) // PAGE
            mdl.frames = [self.phys.alloc(high=True) for _ in range(count)]
            mdl.buffer = mdl.frames[0] * PAGE + 0x80
        else:
            mdl.buffer = self._unmapped_cursor + 0x80
            self._unmapped_cursor += 0x10000

    # -- pass 2: bytes ------------------------------------------------------------------------------------
    def fill(self) -> List[PoolPageSpec]:
        for block in self.spec.blocks:
            self._blocks[block.id].data = block.data
        for nbl in self.spec.nbls:
            self._fill_nbl(nbl)
        for write in self.spec.writes:
            at = self.resolve(write.at)
            self.space.write(at, b"".join(struct.pack("<Q", self.resolve(q)) for q in write.qwords))
        return self.pages.pages

    def _fill_nbl(self, nbl: NblDecl) -> None:
        block, nb_vas, mdls = self._nbl_blocks[nbl.id]
        va = self.addresses[nbl.id]
        handle = self.resolve(nbl.pool_handle)
        context_va = 0
        if nbl.context is not None:
            context_va, context_block = self._contexts[nbl.id]
            context_block.data = self._context_bytes(nbl.context, context_va)
        image = bytearray(block.size - 16)
        struct.pack_into("<QQQQQ", image, 0, self.resolve(nbl.next), nb_vas[0], context_va,
                         self.resolve(nbl.parent), handle)
        struct.pack_into("<QQIIII", image, 0x70, 0, self.resolve(nbl.source_handle), nbl.nbl_flags,
                         nbl.child_ref_count, nbl.flags, nbl.status)
        for index, (nb, nb_va, chain) in enumerate(zip(nbl.net_buffers, nb_vas, mdls)):
            at = nb_va - va
            following = nb_vas[index + 1] if index + 1 < len(nb_vas) else 0
            struct.pack_into("<QQQQQQ", image, at, following, chain[0].va, nb.headroom, len(nb.packet),
                             chain[0].va, nb.headroom)
            struct.pack_into("<Q", image, at + 0x38, handle)
            for position, mdl in enumerate(chain):
                after = chain[position + 1].va if position + 1 < len(chain) else 0
                self._fill_mdl(image, mdl.va - va, mdl, after)
        block.data = bytes(image)

    def _fill_mdl(self, image: bytearray, at: int, mdl: _Mdl, following: int) -> None:
        if mdl.mapping == "va":
            assert mdl.block is not None
            mdl.block.data = mdl.data
            start = mdl.buffer
            frames = []
            for page_va in range(start & ~(PAGE - 1), start + len(mdl.data), PAGE):
                frames.append(self.space.translate(page_va) // PAGE)
            mapped, flags = start, MDL_SOURCE_IS_NONPAGED_POOL | MDL_ALLOCATED_FIXED_SIZE
        elif mdl.mapping == "pfn":
            frames = list(mdl.frames)
            offset = 0x80
            for n, pfn in enumerate(frames):
                chunk = mdl.data[max(0, n * PAGE - offset):(n + 1) * PAGE - offset]
                self.phys.write(pfn * PAGE + (offset if n == 0 else 0), chunk)
            start, mapped, flags = self._unmapped_cursor + offset, 0, MDL_PAGES_LOCKED    # no system mapping
            self._unmapped_cursor += 0x10000
        else:
            start, mapped = mdl.buffer, mdl.buffer
            frames = [UNREADABLE_PFN] * ((0x80 + len(mdl.data) + PAGE - 1) // PAGE)
            flags = MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL
        struct.pack_into("<QHHHHQQQII", image, at, following, MDL_SIZE + 8 * len(frames), flags, 0, 0, 0,
                         mapped, start & ~(PAGE - 1), len(mdl.data), start & (PAGE - 1))
        struct.pack_into("<%dQ" % len(frames), image, at + MDL_SIZE, *frames)

    def _context_bytes(self, context: ContextDecl, context_va: int) -> bytes:
        image = bytearray(NBL_CONTEXT_HEADER + context.size)
        struct.pack_into("<QHH", image, 0, 0, context.size, context.offset)
        dot11 = context.dot11
        if dot11 is not None:
            at = NBL_CONTEXT_HEADER + context.offset
            array = context_va + at + 0x30
            tos = array + DOT11_ENTRY_SIZE * dot11.tos_index if dot11.tos_index is not None else \
                self.resolve(dot11.tos)
            struct.pack_into("<Q", image, at, self.resolve(dot11.velan))
            struct.pack_into("<Q", image, at + 0x28, tos)
            for i, entry in enumerate(dot11.entries):
                struct.pack_into("<QQQ", image, at + 0x30 + DOT11_ENTRY_SIZE * i, *(self.resolve(r) for r in entry))
        return bytes(image)
