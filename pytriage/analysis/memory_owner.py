"""Whose memory is this address? One line of evidence for any kernel pointer a finding names.

Network corruption is diagnosed by where a bad pointer points: into another driver's pool block (its
tag names the driver), onto a kernel stack, into a module's code or data, or nowhere. Commands ask this
for every pointer they flag (a foreign ``pTOS``, an NBL's context block, a pool handle), so answers are
cached by address and pool lookups by page, and the cheapest test runs first: the module list costs no
reads, the stack test compares with stack pointers already known, and only then the pool layer reads
the page (usually already in the target's cache, since the caller just read the pointer's neighbour).
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from pytriage.analysis.pool.locate import PoolReport, find_allocation
from pytriage.analysis.pool.owners import OwnerCandidate
from pytriage.analysis.triage.modules import default_classifier
from pytriage.commands.render import hex64
from pytriage.errors import PytriageError, UnsupportedDumpError, format_address

KERNEL_STACK_SIZE = 0x6000          # x64 KERNEL_STACK_SIZE; an expanded stack (KeExpandKernelStackAndCallout) is
#                                     larger, so "near rsp" is evidence, not proof, and is worded so


@dataclass
class MemoryOwner:
    """What an address is: ``kind`` is module, stack, pool, unmapped, user or unknown."""
    address: int
    kind: str
    text: str                                   # one line, WinDbg-style addresses
    symbol: Optional[str] = None                # module!symbol+0xoff (module memory)
    executable: Optional[bool] = None           # module memory: in an executable section
    tag: Optional[str] = None                   # pool memory
    block: Optional[int] = None                 # pool block header address
    block_size: int = 0
    state: str = ""
    owners: List[OwnerCandidate] = field(default_factory=list)

    @property
    def binaries(self) -> List[str]:
        """Loaded binaries named by the evidence, strongest first, each once."""
        seen: List[str] = []
        for owner in self.owners:
            if owner.loaded is not False and owner.binary not in seen and not owner.binary.startswith("<"):
                seen.append(owner.binary)
        return seen

    def to_json(self) -> dict:
        return {"address": hex64(self.address), "kind": self.kind, "text": self.text, "symbol": self.symbol,
                "executable": self.executable, "tag": self.tag,
                "block": hex64(self.block) if self.block is not None else None, "block_size": self.block_size,
                "state": self.state, "owners": [o.to_json() for o in self.owners]}


def is_canonical(address: int) -> bool:
    top = address >> 47
    return top in (0, 0x1FFFF)


def is_third_party(binary: str) -> bool:
    """Not one of Windows' modules by the shipped triage list (pytriage/analysis/triage/triage.ini)."""
    return default_classifier().is_third_party(binary)


class MemoryOwnerFinder:
    """Answers ``describe(address)`` for one command run.

    ``owners_of_tag(tag) -> [OwnerCandidate]`` comes from the command (pooltag.txt, network table, image
    scan, with its own scan policy); ``catalog`` is an ``UnwindCatalog`` for section lookups.
    """

    def __init__(self, target, symbolizer, owners_of_tag: Callable[[int], List[OwnerCandidate]], catalog) -> None:
        self.target = target
        self.symbolizer = symbolizer
        self.owners_of_tag = owners_of_tag
        self.catalog = catalog
        self._cache: Dict[int, MemoryOwner] = {}
        self._blocks: Dict[int, List[Tuple[int, int, PoolReport]]] = {}    # page -> (start, end, report) per block
        self._stacks: Optional[List[Tuple[str, int]]] = None

    def describe(self, address: int) -> MemoryOwner:
        address &= 0xFFFFFFFFFFFFFFFF
        found = self._cache.get(address)
        if found is None:
            found = self._cache[address] = self._describe(address)
        return found

    def _describe(self, address: int) -> MemoryOwner:
        shown = format_address(address)
        if address == 0:
            return MemoryOwner(address, "unmapped", "NULL")
        if not is_canonical(address):
            return MemoryOwner(address, "unmapped", "%s is not a canonical address" % shown)
        if address >> 47 == 0:
            return MemoryOwner(address, "user", "%s is a user-mode address" % shown)
        module = self.target.module_at(address)
        if module is not None:
            return self._module(address, module)
        stack = self._stack(address)
        if stack is not None:
            return stack
        return self._pool(address)

    def _module(self, address: int, module) -> MemoryOwner:
        symbol = self.symbolizer.format(address)
        executable = self.catalog.image(module).is_executable(address - module.base)
        where = {True: "code", False: "data (not in an executable section)", None: "(no section headers)"}[executable]
        return MemoryOwner(address, "module", "%s: %s %s" % (format_address(address), symbol, where), symbol,
                           executable, owners=[OwnerCandidate("module list", module.name, "loaded image", True)])

    def _stack_pointers(self) -> List[Tuple[str, int]]:
        if self._stacks is None:
            self._stacks = []
            try:
                self._stacks.append(("the crash context", self.target.context_record()["rsp"]))
            except (PytriageError, KeyError):
                pass
            try:
                for context in self.target.processor_contexts():
                    if context.registers and "rsp" in context.registers:
                        self._stacks.append(("processor %d" % context.number, context.registers["rsp"]))
            except (UnsupportedDumpError, PytriageError):
                pass
        return self._stacks

    def _stack(self, address: int) -> Optional[MemoryOwner]:
        for who, rsp in self._stack_pointers():
            if rsp <= address < rsp + KERNEL_STACK_SIZE:
                return MemoryOwner(address, "stack", "%s is on a kernel stack: rsp+0x%x of %s's stack pointer %s"
                                   % (format_address(address), address - rsp, who, format_address(rsp)))
        return None

    def _pool(self, address: int) -> MemoryOwner:
        shown = format_address(address)
        page = address & ~0xFFF
        blocks = self._blocks.setdefault(page, [])
        report = next((r for start, end, r in blocks if start <= address < end), None)
        if report is None:          # blocks already decoded on this page answer for any address inside them
            try:
                report = find_allocation(self.target, self.symbolizer, address, big_pool=True)
            except PytriageError as exc:
                return MemoryOwner(address, "unknown", "%s: %s" % (shown, exc))
            if report.allocation is not None and report.kind == "classic":
                start = report.allocation.start
                blocks.append((start, start + report.allocation.size, report))
        allocation = report.allocation
        if allocation is None:
            if not self.target.is_valid(address, 1):
                return MemoryOwner(address, "unmapped", "%s is not in the dump (%s)" % (
                    shown, report.notes[0] if report.notes else "no page"))
            return MemoryOwner(address, "unknown", "%s: %s" % (shown, report.notes[0] if report.notes else
                                                               "not pool, not a module, not a known stack"))
        owners = self.owners_of_tag(allocation.tag)
        names = ", ".join(dict.fromkeys(o.binary for o in owners if o.loaded is not False)) or "owner unknown"
        offset = address - allocation.data_va
        guess = " (nearest header, best effort)" if allocation.best_effort else ""
        return MemoryOwner(address, "pool", "%s is +0x%x into pool block %s tag %s (0x%x bytes, %s)%s: %s" % (
            shown, offset, format_address(allocation.start), allocation.tag_text, allocation.size, allocation.state,
            guess, names), tag=allocation.tag_text, block=allocation.start, block_size=allocation.size,
            state=allocation.state, owners=owners)
