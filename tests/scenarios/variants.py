"""A generic scenario-spec mutator: the same crash with different driver names, tags, addresses and offsets.

Why: issue 8 asks that the triage give the corresponding answer when a seed scenario's third-party driver
is renamed, its pool tags replaced and everything moved, so that nothing in the engine can be keyed to the
seed's names or numbers. ``mutate(spec, rng)`` works on the parsed JSON of *any* scenario (it knows no
scenario by name) and returns the variant spec and a ``VariantMap`` (old -> new for names, tags, bases,
addresses) from which a test computes the expected answer.

The rules, all decided from the spec itself:

- Third-party modules are the ones ``default_classifier().is_third_party`` says are. Each gets a random
  name of the *same length* (lower-case letters and digits, never an existing module name, never matched
  by any of the classifier's lists). Same length matters: the builder allocates the module list's
  UNICODE_STRINGs, then the kernel stacks, from ``pool_base``; a longer name could push a stack across a
  page and detach bugcheck parameters that point into it. The old name is rewritten everywhere: module
  objects, stack frames, ``module!symbol`` references, paths, free text, and ASCII / UTF-16 text in data.
- Their functions and data symbols (not ``__imp_`` import slots) get random names of the same length.
  The WDK naming words the analysis reads as weak role evidence (``roles.NAME_HINTS``: filter, classify...)
  are kept in place, since they are a naming convention, not a seed's name.
- Owned pool tags: a printable imm32 loaded by ``mov r8d, imm32`` (41 b8: the Tag argument of the pool
  allocators) in a third-party function, or any printable imm32 there that the spec uses as a tag. Each is
  replaced by a fresh 4-letter tag that neither pooltag.txt (exactly or by its 2-3 letter family
  prefix) nor pytriage's network tag table knows, and whose bytes occur nowhere in the spec: in tag
  fields, wherever its bytes occur in code (immediates, and a decoy's displacement) and data, as a word in
  text, and as an integer register/parameter value equal to the tag.
- Relocation, as "regions moved by a delta": each third-party module moves to another page-aligned base
  (no overlap, within 512 MB and the same 512 GB slot, so rel32 calls still reach) and its functions move
  together by a multiple of 0x10, up or down, inside .text (the page count of .text, hence the RVA of
  .data, stays the same). Data areas (``pool_base`` and the builder's structures after it, pool pages,
  big and special pool, the NBL area, free-form memory) are grouped with a 16 MB margin into clusters, and
  each cluster moves by a random page-aligned delta. Every number anywhere in the spec that lies in a
  moved region is mapped: ints and numeric strings (registers, bugcheck parameters, addresses),
  little-endian qwords in data bytes, and in code (decoded with capstone) rel32 call/jmp/jcc targets,
  rip-relative displacements and movabs immediates that reach a module or a data area, so that direct
  calls keep reaching their callees (the builder only asks for a call ending at each return address;
  pytriage's stack scan also checks a direct call's target, and its tag scan names the allocator called
  through the import slot after ``mov r8d, tag``). A displacement that reaches nothing is left as bytes.
- A draw that cannot work (a module moved out of a rel32's reach) is redrawn, up to ``MAX_ATTEMPTS``
  times; the variant is checked with the spec parser before it is returned.
"""

import copy
import fnmatch
import functools
import json
import os
import re
import string
import struct
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import capstone

from pytriage.analysis.pool.network_tags import NETWORK_TAGS
from pytriage.analysis.pool.pooltag_file import ENV_FILE, PoolTagFile
from pytriage.analysis.triage.modules import default_classifier
from pytriage.analysis.triage.roles import NAME_HINTS
from pytriage.scenarios.builder import KUSER_SHARED_DATA
from pytriage.scenarios.spec import PAGE, ScenarioSpec, debugger_name, parse_data, parse_int, parse_spec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS_POOLTAG = os.path.join(os.path.dirname(REPO), "shared", "corpus", "pooltag.txt")
MASK64 = (1 << 64) - 1
KERNEL_MIN = 0xFFFF800000000000
CODE_RVA = 0x1000                       # where the builder starts .text
MARGIN = 0x1000000                      # numbers this close to a data area move with it
POOL_BASE_EXTENT = 0x400000             # the builder's structures after pool_base: module list, stacks (<= 1 MB)
NBL_AREA_EXTENT = 0x5000000             # NBL pool pages, then never-mapped buffers at area + 0x4000000
MODULE_MOVE = (0x100000, 0x20000000)    # how far a module moves (rel32 reach stays far below 2 GB)
CLUSTER_MOVE = (0x10000000, 0x400000000)
MAX_ATTEMPTS = 20
BYTE_KEYS = frozenset(("hex", "fill", "ascii", "utf16"))
NO_TEXT_KEYS = frozenset(("unwind", "pdb_guid", "tag", "data_tag"))
_NUMBER = re.compile(r"^\s*(?:0[xX][0-9a-fA-F`]+|[0-9]+)\s*$")
_IDENT_START = string.ascii_letters
_IDENT = string.ascii_letters + string.digits
_STEM = string.ascii_lowercase + string.digits


class MutationError(Exception):
    """The spec cannot be mutated as asked (say, a rel8 jump would have to cross a moved region)."""


# -- the answer key ------------------------------------------------------------------------------------------

class VariantMap(Mapping):
    """Old -> new for everything the mutation changed; a read-only mapping of its categories
    (``modules``, ``stems``, ``functions``, ``tags``, ``bases``, ``function_shifts``, ``regions``) with helpers
    that map the strings and numbers of an answer."""

    def __init__(self) -> None:
        self.modules: Dict[str, str] = {}           # old image name -> new
        self.stems: Dict[str, str] = {}             # old debugger name (image stem) -> new
        self.functions: Dict[str, Dict[str, str]] = {}    # old image name -> {old symbol: new symbol}
        self.tags: Dict[str, str] = {}              # old tag text (no padding) -> new
        self.bases: Dict[str, Tuple[int, int]] = {}       # old image name -> (old base, new base)
        self.function_shifts: Dict[str, int] = {}   # old image name -> RVA shift of its functions
        self.regions: List[Tuple[int, int, int]] = []     # data clusters: (lo, hi, delta)
        self.tag_values: Dict[int, int] = {}        # old tag as the u32 a register holds -> new
        self._moves: Dict[str, Tuple[int, int, int, int, int, int]] = {}   # old image -> (base, size, new base,
        #                                             code lo, code hi (RVAs the functions cover), shift)

    def _table(self) -> Dict[str, Any]:
        return {"modules": self.modules, "stems": self.stems, "functions": self.functions, "tags": self.tags,
                "bases": self.bases, "function_shifts": self.function_shifts, "regions": self.regions}

    def __getitem__(self, key: str) -> Any:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return "VariantMap(%r)" % self._table()

    def address(self, value: int) -> int:
        """Where an address of the original spec is in the variant."""
        value &= MASK64
        for base, size, new_base, lo, hi, shift in self._moves.values():
            if base <= value < base + size:
                rva = value - base
                return new_base + rva + (shift if lo <= rva < hi else 0)
        for lo, hi, delta in self.regions:
            if lo <= value < hi:
                return (value + delta) & MASK64
        return value

    def value(self, value: int) -> int:
        """A number as a register or parameter holds it: an address mapped, or a replaced tag."""
        moved = self.address(value)
        if moved != value & MASK64:
            return moved
        return self.tag_values.get(value, value)

    def call_site(self, text: str) -> str:
        """A frame's name as `k` shows it: ``module!function+0x..`` (the offset stays: functions move whole)
        or ``module+0xrva`` (a module without symbols: the RVA moves with its functions)."""
        if "!" in text or "+" not in text:
            return self.symbol(text) or text
        module, _, offset = text.partition("+")
        for old, new in self.modules.items():
            if module.lower() in (old.lower(), _stem(old).lower()):
                _base, _size, _new, lo, hi, shift = self._moves.get(old, (0, 0, 0, 0, 0, 0))
                rva = int(offset, 16)
                return "%s+0x%x" % (new if module.lower() == old.lower() else _stem(new),
                                    rva + (shift if lo <= rva < hi else 0))
        return text

    def binary(self, name: Optional[str]) -> Optional[str]:
        """An image name of the original (any case) -> the variant's; unchanged when it was not renamed."""
        if name is None:
            return None
        return next((new for old, new in self.modules.items() if old.lower() == name.lower()), name)

    def module(self, name: Optional[str]) -> Optional[str]:
        """A debugger module name (image stem) -> the variant's."""
        if name is None:
            return None
        return next((new for old, new in self.stems.items() if old.lower() == name.lower()), name)

    def symbol(self, text: Optional[str]) -> Optional[str]:
        """``module!function[+0x..]`` -> the variant's module and function name (the offset is kept: functions
        move as a whole)."""
        if text is None or "!" not in text:
            return text
        module, _, rest = text.partition("!")
        function, sep, offset = rest.partition("+")
        for old, new in self.modules.items():
            if module.lower() in (old.lower(), _stem(old).lower()):
                function = self.functions.get(old, {}).get(function, function)
                module = new if module.lower() == old.lower() else _stem(new)
                break
        return "%s!%s%s%s" % (module, function, sep, offset)

    def tag(self, text: Optional[str]) -> Optional[str]:
        if text is None:
            return None
        return self.tags.get(text.rstrip(), text)

    def bucket(self, bucket: str, binary: Optional[str]) -> str:
        """A ``PROBLEM_binary`` network bucket with the binary renamed."""
        if binary and bucket.endswith("_" + binary):
            return bucket[:len(bucket) - len(binary)] + (self.binary(binary) or binary)
        return bucket


def _stem(image: str) -> str:
    return image.rsplit(".", 1)[0] if "." in image else image


# -- helpers ---------------------------------------------------------------------------------------------

def _pooltag_entries() -> Set[str]:
    """Every tag the pooltag.txt files we can see list (the corpus copy and the user's ``PYTRIAGE_POOLTAG``)."""
    entries: Set[str] = set()
    for path in (CORPUS_POOLTAG, os.environ.get(ENV_FILE, "")):
        if path and os.path.isfile(path):
            entries.update(_pooltag_file(os.path.abspath(path)))
    return entries


@functools.lru_cache(maxsize=4)
def _pooltag_file(path: str) -> frozenset:
    return frozenset(PoolTagFile.load(path).entries)


def _disassembler() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md


def _instructions(md: capstone.Cs, code: bytes, address: int) -> Iterator[Any]:
    """A linear sweep that steps over undecodable bytes instead of stopping at them."""
    offset = 0
    while offset < len(code):
        decoded = False
        for insn in md.disasm(code[offset:], address + offset):
            decoded = True
            offset += insn.size
            yield insn
        if not decoded:
            offset += 1


def _printable_tag(raw: bytes) -> bool:
    return len(raw) == 4 and all(0x20 <= b < 0x7F for b in raw) and raw[0] != 0x20


def _is_rip_relative(insn: Any) -> bool:
    return any(op.type == capstone.x86.X86_OP_MEM and op.mem.base == capstone.x86.X86_REG_RIP
               for op in insn.operands)


def _rehex(original: str, data: bytes) -> str:
    """``data`` as hex laid out like ``original`` (same spacing, same digit case): a diff shows only the
    changed bytes."""
    digits = data.hex()
    if len(digits) != sum(1 for c in original if not c.isspace()):
        return digits
    out, i = [], 0
    for c in original:
        if c.isspace():
            out.append(c)
        else:
            out.append(digits[i].upper() if c.isupper() else digits[i])
            i += 1
    return "".join(out)


def _intervals_overlap(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _same_case(template: str, text: str) -> str:
    return text.upper() if template.isupper() else text


# -- the mutation ------------------------------------------------------------------------------------------

class _Mutation:
    def __init__(self, doc: Dict[str, Any], rng, rename_functions: bool, move: bool, shift_functions: bool,
                 retag: bool) -> None:
        self.doc = copy.deepcopy(doc)
        self.rng = rng
        self.spec: ScenarioSpec = parse_spec(copy.deepcopy(doc), "variant source")
        self.classifier = default_classifier()
        self.map = VariantMap()
        self.md = _disassembler()
        self.options = (rename_functions, move, shift_functions, retag)
        self.all_modules = [self.spec.kernel] + self.spec.modules
        self.third = [m for m in self.spec.modules if self.classifier.is_third_party(m.name)]
        self.text = json.dumps(doc).lower()
        self.tag_bytes: List[Tuple[bytes, bytes]] = []
        self.name_patterns: List[Tuple[re.Pattern, re.Pattern, str]] = []   # (ascii, utf16, new stem)
        self.function_refs: List[Tuple[re.Pattern, Dict[str, str]]] = []

    # -- plan --------------------------------------------------------------------------------------------------
    def run(self) -> Tuple[Dict[str, Any], VariantMap]:
        rename_functions, move, shift_functions, retag = self.options
        self._plan_names()
        if rename_functions:
            self._plan_functions()
        if retag:
            self._plan_tags()
        if move or shift_functions:
            self._plan_relocation(move, shift_functions)
        self._rewrite()
        try:
            parse_spec(copy.deepcopy(self.doc), "variant")
        except Exception as exc:                 # the mutator broke the spec: say how, with the plan
            raise MutationError("the variant does not parse: %s (%r)" % (exc, self.map)) from exc
        return self.doc, self.map

    def _existing_names(self) -> Set[str]:
        names = set()
        for mod in self.all_modules:
            names.add(mod.name.lower())
            names.add(_stem(mod.name).lower())
        return names

    def _listed(self, image: str) -> bool:
        """Whether any section of the classifier's lists names ``image`` (new names must be unknown to it)."""
        return any(fnmatch.fnmatchcase(image.lower(), pattern)
                   for patterns in self.classifier.patterns.values() for pattern in patterns)

    def _plan_names(self) -> None:
        taken = self._existing_names()
        for mod in self.third:
            stem = _stem(mod.name)
            ext = mod.name[len(stem):]
            for _ in range(1000):
                new_stem = self.rng.choice(string.ascii_lowercase) + "".join(
                    self.rng.choice(_STEM) for _ in range(len(stem) - 1))
                new = new_stem + ext
                word = re.compile(r"(?<![a-z0-9])%s(?![a-z0-9])" % re.escape(new_stem))
                if new.lower() in taken or new_stem in taken or self._listed(new) or \
                        not self.classifier.is_third_party(new) or word.search(self.text):
                    continue
                break
            else:
                raise MutationError("no free name for %s" % mod.name)
            taken.update((new.lower(), new_stem))
            self.map.modules[mod.name] = new
            self.map.stems[debugger_name(mod, False)] = new_stem
            self.name_patterns.append((
                re.compile(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(stem), re.IGNORECASE),
                re.compile(re.escape(stem.encode("utf-16-le")), re.IGNORECASE), new_stem))

    def _new_identifier(self, old: str, taken: Set[str]) -> str:
        """A random name as long as ``old`` that keeps the WDK role words ``old`` has, where it has them."""
        hints = [h for h, _role in NAME_HINTS]
        keep = [False] * len(old)
        for hint in hints:
            for match in re.finditer(re.escape(hint), old, re.IGNORECASE):
                for i in range(match.start(), match.end()):
                    keep[i] = True
        wanted = {h for h in hints if h in old.lower()}
        for _ in range(1000):
            chars = [c if keep[i] else self.rng.choice(_IDENT_START if i == 0 else _IDENT) for i, c in enumerate(old)]
            new = "".join(chars)
            if new != old and new not in taken and {h for h in hints if h in new.lower()} == wanted:
                return new
        raise MutationError("no free name for function %s" % old)

    def _plan_functions(self) -> None:
        for mod in self.third:
            raw = self._module_doc(mod)
            names = [f.name for f in mod.functions] + [n for n in mod.data_symbols if not n.startswith("__imp_")]
            taken = set(names) | set(mod.data_symbols)
            renames: Dict[str, str] = {}
            for old in names:
                new = self._new_identifier(old, taken)
                taken.add(new)
                renames[old] = new
            self.map.functions[mod.name] = renames
            if renames and raw is not None:
                alternatives = "|".join(re.escape(n) for n in sorted(renames, key=len, reverse=True))
                new_stem = self.map.stems[debugger_name(mod, False)]
                module_names = "|".join(re.escape(n) for n in (new_stem, self.map.modules[mod.name]))
                self.function_refs.append((re.compile(      # module names in any case, symbols exactly
                    r"(?<![A-Za-z0-9_.-])((?i:%s)!)(%s)(?![A-Za-z0-9_$?@:])" % (module_names, alternatives)),
                    renames))

    def _spec_tags(self) -> Set[int]:
        tags: Set[int] = set()
        pool, nbl = self.spec.pool, self.spec.nbl
        if pool is not None:
            tags.update(b.tag for p in pool.pages for b in p.blocks)
            tags.update(b.tag for b in pool.big)
            tags.update(s.tag for s in pool.special)
            tags.update(t.tag for t in pool.track)
        if nbl is not None:
            tags.update(b.tag for b in nbl.blocks)
            for item in nbl.nbls:
                tags.update((item.tag, item.data_tag))
                if item.context is not None:
                    tags.add(item.context.tag)
        return tags

    def _plan_tags(self) -> None:
        used = self._spec_tags()
        owned: List[int] = []
        for mod in self.third:
            for f in mod.functions:
                for insn in _instructions(self.md, f.code, mod.base + f.rva):
                    if insn.imm_size != 4 or insn.group(capstone.CS_GRP_BRANCH_RELATIVE):
                        continue
                    raw = bytes(insn.bytes[insn.imm_offset:insn.imm_offset + 4])
                    value = struct.unpack("<I", raw)[0]
                    allocator_tag = insn.mnemonic == "mov" and insn.bytes[:2] == b"\x41\xb8"
                    if _printable_tag(raw) and (allocator_tag or value in used) and value not in owned:
                        owned.append(value)
        if not owned:
            return
        listed = _pooltag_entries()
        everything = b"".join(f.code for m in self.all_modules for f in m.functions) + \
            b"".join(r.data for r in self.spec.regions) + json.dumps(self.doc).encode("latin-1", "replace")
        fresh: Set[str] = set()
        for value in owned:
            old = struct.pack("<I", value)
            for _ in range(10000):
                text = "".join(self.rng.choice(string.ascii_letters) for _ in range(4))
                raw = text.encode("ascii")
                if text in listed or text[:3] + " " in listed or text[:2] + "  " in listed or \
                        text in NETWORK_TAGS or text in fresh or struct.unpack("<I", raw)[0] in used | set(owned) or \
                        raw in everything or raw.lower() == old.lower():
                    continue
                break
            else:
                raise MutationError("no fresh tag for %r" % old)
            fresh.add(text)
            self.map.tag_values[value] = struct.unpack("<I", raw)[0]
            self.tag_bytes.append((old, raw))
            self.map.tags[old.decode("latin-1").rstrip()] = text

    # -- relocation -------------------------------------------------------------------------------------------
    def _fixed(self) -> List[Tuple[int, int]]:
        spans = [(m.base, m.base + m.size) for m in self.all_modules]
        spans.append((KUSER_SHARED_DATA, KUSER_SHARED_DATA + PAGE))
        spans.append((self.spec.pfn_database, self.spec.pfn_database + PAGE))
        spans.extend((lp.va, lp.va + lp.size) for lp in self.spec.large_pages)
        return spans

    def _seeds(self) -> List[Tuple[int, int]]:
        seeds = [(self.spec.pool_base, self.spec.pool_base + POOL_BASE_EXTENT)]
        pool, nbl = self.spec.pool, self.spec.nbl
        if pool is not None:
            seeds.extend((p.va, p.va + PAGE) for p in pool.pages)
            seeds.extend((b.va, b.va + b.size) for b in pool.big)
            seeds.extend((s.va, s.va + 2 * PAGE) for s in pool.special)
        if nbl is not None:
            seeds.append((nbl.area, nbl.area + NBL_AREA_EXTENT))
        for region in self.spec.regions:
            lo = region.va & ~(PAGE - 1)
            seeds.append((lo, (region.va + max(len(region.data), 1) + PAGE - 1) & ~(PAGE - 1)))
        fixed = self._fixed()
        return [s for s in seeds if not any(_intervals_overlap(s, f) for f in fixed)]

    def _clusters(self) -> List[Tuple[int, int]]:
        """The data areas, each widened by ``MARGIN`` (never over a module or another fixed span), merged where
        they meet: each cluster moves as one."""
        fixed = self._fixed()
        expanded = []
        for seed_lo, seed_hi in self._seeds():
            lo, hi = max(KERNEL_MIN, seed_lo - MARGIN), min(MASK64 + 1, seed_hi + MARGIN)
            for flo, fhi in fixed:
                if fhi <= seed_lo:
                    lo = max(lo, fhi)
                elif flo >= seed_hi:
                    hi = min(hi, flo)
            expanded.append((lo, hi))
        expanded.sort()
        clusters: List[Tuple[int, int]] = []
        for lo, hi in expanded:
            if clusters and lo <= clusters[-1][1]:
                clusters[-1] = (clusters[-1][0], max(hi, clusters[-1][1]))
            else:
                clusters.append((lo, hi))
        return clusters

    def _place(self, lo: int, hi: int, span: Tuple[int, int], taken: List[Tuple[int, int]],
               align: int = PAGE) -> int:
        """A random delta (a multiple of ``align``, its size within ``span``) that puts [lo, hi) clear of
        ``taken`` (with a page of gap) in the same 512 GB slot (PML4 entry) of the kernel half: modules stay
        among modules, pool among pool."""
        for _ in range(2000):
            delta = self.rng.randrange(span[0] // align, span[1] // align) * align * self.rng.choice((-1, 1))
            new = (lo + delta, hi + delta)
            if new[0] < KERNEL_MIN or new[1] > MASK64 + 1 or new[0] >> 39 != lo >> 39 or \
                    (new[1] - 1) >> 39 != (hi - 1) >> 39:
                continue
            if any(_intervals_overlap((new[0] - PAGE, new[1] + PAGE), t) for t in taken):
                continue
            return delta
        raise MutationError("no room to move 0x%x..0x%x" % (lo, hi))

    def _function_shift(self, mod) -> Tuple[int, int, int]:
        """(lo, hi, shift): the RVAs the functions cover and a random shift (a multiple of 0x10, up or down)
        inside .text that keeps .text's page count, hence .data's RVA, and moves no function over a data
        symbol, a memory region or a ``module+rva`` stack frame outside the functions."""
        if not mod.functions:
            return 0, 0, 0
        lo = min(f.rva for f in mod.functions)
        hi = max(f.rva + len(f.code) for f in mod.functions)
        data_rva = CODE_RVA + (hi - CODE_RVA + PAGE - 1) // PAGE * PAGE
        lowest = max(CODE_RVA - lo, data_rva - PAGE - hi + 1)     # .text may not lose its last page either
        highest = data_rva - hi
        others = [rva for rva in mod.data_symbols.values() if not lo <= rva < hi]
        others += [r.va - mod.base for r in self.spec.regions if mod.base <= r.va < mod.base + mod.size]
        others += [f.rva for f in self.spec.stack if f.module is mod and not lo <= f.rva < hi]
        choices = [k * 0x10 for k in range(-(-lowest // 0x10), highest // 0x10 + 1)
                   if k and not any(lo + k * 0x10 <= rva < hi + k * 0x10 for rva in others)]
        return lo, hi, self.rng.choice(choices) if choices else 0

    def _plan_relocation(self, move: bool, shift_functions: bool) -> None:
        taken = [span for span in self._fixed()]
        clusters = self._clusters() if move else []
        taken.extend(clusters)
        for mod in self.third:
            lo, hi, shift = self._function_shift(mod) if shift_functions else (0, 0, 0)
            new_base = mod.base
            if move:
                new_base = mod.base + self._place(mod.base, mod.base + mod.size, MODULE_MOVE, taken)
                taken.append((new_base, new_base + mod.size))
            self.map.bases[mod.name] = (mod.base, new_base)
            self.map.function_shifts[mod.name] = shift
            self.map._moves[mod.name] = (mod.base, mod.size, new_base, lo, hi, shift)
        for lo, hi in clusters:
            delta = self._place(lo, hi, CLUSTER_MOVE, taken)
            taken.append((lo + delta, hi + delta))
            self.map.regions.append((lo, hi, delta))
        if self.map.address(self.spec.pool_base) != self.spec.pool_base and "pool_base" not in self.doc:
            self.doc["pool_base"] = "0x%x" % self.spec.pool_base     # the default, made explicit to move it

    # -- rewriting -------------------------------------------------------------------------------------------
    def _module_doc(self, mod) -> Optional[Dict[str, Any]]:
        if mod is self.spec.kernel:
            return self.doc.get("kernel")
        return self.doc["modules"][self.spec.modules.index(mod)]

    def _rewrite(self) -> None:
        for mod in self.all_modules:
            raw = self._module_doc(mod)
            if raw is not None:
                self._rewrite_module(mod, raw)
        for key in list(self.doc):
            if key in ("kernel", "modules"):
                continue
            if key == "stack":
                self._rewrite_stack(self.doc["stack"])
            self.doc[key] = self._value(self.doc[key], key)

    def _rewrite_module(self, mod, raw: Dict[str, Any]) -> None:
        third = mod.name in self.map.modules
        renames = self.map.functions.get(mod.name, {})
        shift = self.map.function_shifts.get(mod.name, 0)
        for f, fraw in zip(mod.functions, raw.get("functions", [])):
            code = self._code(mod, f)
            if code != f.code:
                if isinstance(fraw.get("hex"), str):
                    fraw["hex"] = _rehex(fraw["hex"], code)
                else:                              # code given as a fill: now explicit bytes
                    for key in BYTE_KEYS | {"size"}:
                        fraw.pop(key, None)
                    fraw["hex"] = code.hex()
            if third:
                fraw["rva"] = "0x%x" % (f.rva + shift)
                fraw["name"] = renames.get(f.name, f.name)
                if "chain" in fraw:
                    fraw["chain"] = renames.get(fraw["chain"], fraw["chain"])
        if not third:
            return
        _base, _size, _new, lo, hi, _shift = self.map._moves.get(mod.name, (0, 0, 0, 0, 0, 0))
        if "data_symbols" in raw:
            raw["data_symbols"] = {renames.get(name, name): "0x%x" % (rva + (shift if lo <= rva < hi else 0))
                                   for name, rva in mod.data_symbols.items()}
        raw["name"] = self.map.modules[mod.name]
        raw["base"] = "0x%x" % self.map.address(mod.base)
        for key in ("path", "pdb_name"):
            if key in raw:
                raw[key] = self._text(raw[key])

    def _rewrite_stack(self, frames: List[Any]) -> None:
        """``{"module": m, "offset": rva}`` frames: the RVA moves with m's functions."""
        for frame in frames:
            if not isinstance(frame, dict) or "module" not in frame:
                continue
            mod = next((m for m in self.third if frame["module"].lower() in (m.name.lower(), _stem(m.name).lower())),
                       None)
            if mod is None:
                continue
            _base, _size, _new, lo, hi, shift = self.map._moves.get(mod.name, (0, 0, 0, 0, 0, 0))
            rva = parse_int(frame.get("offset", 0), "offset")
            if lo <= rva < hi and shift:
                frame["offset"] = "0x%x" % (rva + shift)

    def _known(self, address: int) -> bool:
        """Whether ``address`` is somewhere the spec puts something (a module or a data cluster): a rel32 or
        rip-relative target there is a real reference and must follow the move; any other target (say a
        displacement whose bytes are a tag, as a decoy has) is just bytes."""
        return any(m.base <= address < m.base + m.size for m in self.all_modules) or \
            any(lo <= address < hi for lo, hi, _delta in self.map.regions)

    def _code(self, mod, f) -> bytes:
        """The function's bytes at its new place: owned tags replaced wherever their bytes occur, then rel32
        branch targets, rip-relative operands and movabs immediates that reach a module or data area mapped
        (instruction boundaries from the original bytes: replacing a tag never changes a length)."""
        code = bytearray(f.code)
        for old, new in self.tag_bytes:
            code = bytearray(bytes(code).replace(old, new))
        old_address = mod.base + f.rva
        new_address = self.map.address(old_address)
        for insn in _instructions(self.md, f.code, old_address):
            at = insn.address - old_address
            new_end = new_address + at + insn.size
            where = "%s!%s+0x%x" % (mod.name, f.name, at)
            if insn.group(capstone.CS_GRP_BRANCH_RELATIVE) and insn.imm_size in (1, 4):
                target = insn.operands[0].imm & MASK64
                if not self._known(target):
                    continue
                rel = self.map.address(target) - new_end
                if insn.imm_size == 1:
                    if rel != target - (insn.address + insn.size):
                        raise MutationError("%s: a rel8 jump would have to follow a move" % where)
                elif not -(1 << 31) <= rel < 1 << 31:
                    raise MutationError("%s: rel32 out of reach after the move" % where)
                else:
                    struct.pack_into("<i", code, at + insn.imm_offset, rel)
                continue
            if _is_rip_relative(insn) and insn.disp_size == 4:
                target = (insn.address + insn.size + struct.unpack_from("<i", f.code, at + insn.disp_offset)[0]) \
                    & MASK64
                if self._known(target):
                    rel = self.map.address(target) - new_end
                    if not -(1 << 31) <= rel < 1 << 31:
                        raise MutationError("%s: rip-relative operand out of reach after the move" % where)
                    struct.pack_into("<i", code, at + insn.disp_offset, rel)
            if insn.imm_size == 8:
                value = struct.unpack_from("<Q", f.code, at + insn.imm_offset)[0]
                struct.pack_into("<Q", code, at + insn.imm_offset, self.map.address(value))
        return bytes(code)

    def _bytes(self, data: bytes) -> bytes:
        """Data bytes: tags, the old names as ASCII or UTF-16 text, then pointers (little-endian qwords)."""
        for old, new in self.tag_bytes:
            data = data.replace(old, new)
        for ascii_word, utf16, new_stem in self.name_patterns:
            text = data.decode("latin-1")
            text = ascii_word.sub(lambda m, new=new_stem: _same_case(m.group(0), new), text)
            data = utf16.sub(lambda m, new=new_stem: _same_case(m.group(0).decode("utf-16-le"), new).encode(
                "utf-16-le"), text.encode("latin-1"))
        out = bytearray(data)
        i = 0
        while i + 8 <= len(out):
            value = struct.unpack_from("<Q", out, i)[0]
            moved = self.map.address(value)
            if moved != value:
                struct.pack_into("<Q", out, i, moved)
                i += 8
            else:
                i += 1
        return bytes(out)

    def _text(self, text: str) -> str:
        """Free text and references: the old module names, then ``module!function`` references (and a tag
        named as a word, as a comment or an ASCII block does)."""
        for old, new in self.tag_bytes:
            word = old.decode("latin-1").rstrip()
            text = re.sub(r"(?<![A-Za-z0-9])%s(?![A-Za-z0-9])" % re.escape(word), new.decode("latin-1"), text)
        for ascii_word, _utf16, new_stem in self.name_patterns:
            text = ascii_word.sub(lambda m, new=new_stem: _same_case(m.group(0), new), text)
        for pattern, renames in self.function_refs:
            text = pattern.sub(lambda m, names=renames: m.group(1) + names[m.group(2)], text)
        return text

    def _number(self, value: int) -> int:
        moved = self.map.address(value)
        if moved != value & MASK64:
            return moved
        if 0 <= value < 1 << 32 and value in self.map.tag_values:
            return self.map.tag_values[value]
        return value

    def _data_object(self, node: Dict[str, Any]) -> None:
        if "hex" in node:
            data = parse_data(node, "data")
            new = self._bytes(data)
            if new != data:
                node["hex"] = _rehex(node["hex"], new)
        elif "ascii" in node:
            text = str(node["ascii"])
            for old, new in self.tag_bytes:
                text = text.replace(old.decode("latin-1"), new.decode("latin-1"))
            node["ascii"] = self._text(text)     # same lengths throughout: the block's size still holds it
        elif "utf16" in node:
            node["utf16"] = self._text(str(node["utf16"]))
        elif "fill" in node:
            pattern = bytes.fromhex(re.sub(r"\s+", "", str(node["fill"])))
            new = self._bytes(pattern)
            if new != pattern:
                node["fill"] = _rehex(node["fill"], new)

    def _value(self, node: Any, key: str) -> Any:
        if isinstance(node, dict):
            if any(k in node for k in BYTE_KEYS):
                self._data_object(node)
            for k in list(node):
                if k in BYTE_KEYS:
                    continue
                if k in ("tag", "data_tag") and isinstance(node[k], str):
                    node[k] = self.map.tag(node[k]) if node[k].rstrip() in self.map.tags else node[k]
                    continue
                node[k] = self._value(node[k], k)
            return node
        if isinstance(node, list):
            return [self._value(item, key) for item in node]
        if isinstance(node, bool) or key in NO_TEXT_KEYS:
            return node
        if isinstance(node, int):
            return self._number(node)
        if isinstance(node, str):
            if _NUMBER.match(node):
                value = parse_int(node, key)
                moved = self._number(value)
                return node if moved == value else "0x%x" % moved
            return self._text(node)
        return node


def mutate(spec: Dict[str, Any], rng, rename_functions: bool = True, move: bool = True,
           shift_functions: bool = True, retag: bool = True) -> Tuple[Dict[str, Any], VariantMap]:
    """A variant of the scenario ``spec`` (parsed JSON; not modified) drawn with ``rng`` (``random.Random``):
    third-party modules renamed, moved and their functions shifted, their pool tags replaced, data areas
    moved. Returns the variant and the map from old to new. Raises ``MutationError`` when the spec cannot be
    mutated that way (the variant is checked with the spec parser before it is returned)."""
    failure = None
    for _attempt in range(MAX_ATTEMPTS):      # a draw can put a module out of a reference's reach: draw again
        try:
            return _Mutation(spec, rng, rename_functions, move, shift_functions, retag).run()
        except MutationError as exc:
            failure = exc
    raise MutationError("no variant in %d draws: %s" % (MAX_ATTEMPTS, failure))

