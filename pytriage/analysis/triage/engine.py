"""`!pytriage`: the whole triage of one crash, built on the stack, pool and NBL layers (DESIGN 6, 10).

The order is the order an escalation engineer works in, and each step reads only what the earlier ones
pointed at, so a live session stays far under its 256 KB budget:

1. the bugcheck and its parameters, explained (``bugcheck_kb``);
2. the crashing thread's stack (``Target.stack``), the frame where it failed, the trap frames;
3. pointer forensics on the parameters, the faulting IP and the failing frames' registers;
4. pool evidence for the addresses that are pool (``!pooltag``'s lookup: overruns, guard pages, owners);
5. the network path: each third-party driver's role from the stack's shape, the stack each module used,
   NBLs found in the failing frames' registers walked with their DOT11 completion stacks (``!nblwalk``),
   and the WFP inject-after-reference pattern;
6. blame from the weighed evidence, confidence, the two buckets, next commands and remedies.

The result is a plain dict (schema ``pytriage.analyze/1``, docs/json-schema.md) so that the text view, the
JSON view and batch mode share one source.
"""

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from pytriage import __version__
from pytriage.analysis.bugcheck_kb import bugcheck_name, explain_parameters, lookup, next_steps_for
from pytriage.analysis.function_table import UnwindCatalog
from pytriage.analysis.memory_owner import MemoryOwnerFinder
from pytriage.analysis.nbl.layouts import NblLayouts
from pytriage.analysis.nbl.walk import NblWalker, WalkOptions
from pytriage.analysis.stack_walk import WalkLimits
from pytriage.analysis.triage.buckets import AV_CODES, analyze_bucket, followup_name, network_bucket
from pytriage.analysis.triage.evidence import STACK_SOURCES, Evidence, Gap, decide
from pytriage.analysis.triage.forensics import Clue, PointerForensics
from pytriage.analysis.triage.modules import ModuleClassifier
from pytriage.analysis.triage.roles import CALLOUT, module_roles
from pytriage.commands.nblwalk import walk_to_json
from pytriage.commands.pooltag import PoolTagContext, PoolTagOptions, pool_address
from pytriage.commands.render import hex64, windbg_address
from pytriage.commands.stack import to_json as stack_json
from pytriage.errors import PytriageError, UnsupportedDumpError, format_address

SCHEMA = "pytriage.analyze/1"
KERNEL_STACK_SIZE = 0x6000
STACK_NEARLY_FULL = 0x5800            # a thread that used this much of 0x6000 bytes ran out of stack
MAX_POOL_LOOKUPS = 8
MAX_NBL_CANDIDATES = 6
EXAMINED_FRAMES = 16                  # frames whose registers forensics looks at (beyond the failing one)
NONVOLATILE = ("rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15")
VOLATILE = ("rax", "rcx", "rdx", "r8", "r9", "r10", "r11")
POOL_CODES = frozenset((0x19, 0xC2, 0xC5, 0x13A, 0xD6, 0xD5, 0xC1, 0xCC, 0xCD))
# nt's bugcheck, trap and exception-dispatch code: never the failing frame, never the bucket's follow-up.
_MACHINERY = re.compile(
    r"^(nt|hal)!(kebugcheck\w*|kibugcheck\w*|ki\w*(fault|trap|abort|interrupt)\w*|kiexceptiondispatch|"
    r"kidispatchexception|rtl(p)?dispatchexception|rtlpexecutehandlerfor\w+|_*c_specific_handler\w*|"
    r"kecheckstackandtargetaddress|kifatalfilter|\w*\$filt\$\d+|rtlraisestatus|kiraiseexception)$")
# nt's pool code: where pool corruption is *found*; with no faulting IP the bucket names its caller instead.
_POOL_ALLOCATORS = re.compile(r"^nt!(ex(allocate|free)pool\w*|exp\w*pool\w*|vrf\w*)$")
_NBL_FUNCTIONS = re.compile(r"^netio!netio\w*netbufferlist\w*$|^tcpip!\w*netbufferlist\w*$")


@dataclass
class TriageOptions:
    scan: str = "auto"
    pooltag_file: Optional[str] = None
    max_frames: int = 64
    nbls: bool = True


def _function_key(call_site: str) -> str:
    return call_site.split("+", 1)[0].lower()


class Triage:
    """One triage run; ``run()`` returns the record."""

    def __init__(self, target, symbolizer, classifier: ModuleClassifier, options: TriageOptions,
                 progress_stream=None) -> None:
        self.target = target
        self.symbolizer = symbolizer
        self.classifier = classifier
        self.options = options
        self.pool_ctx = PoolTagContext(target, symbolizer, PoolTagOptions(scan=options.scan,
                                                                          pooltag_file=options.pooltag_file),
                                       progress_stream)
        self.finder = MemoryOwnerFinder(target, symbolizer, lambda tag: list(self.pool_ctx.owners(tag)[0]),
                                        UnwindCatalog(target, getattr(symbolizer, "store", None)))
        self.evidence: List[Evidence] = []
        self.reasoning: List[str] = []
        self.gaps: List[Gap] = []             # what was unavailable, with the evidence it weakens
        self.unavailable: List[str] = []      # everything that was unavailable (gaps included)
        self.next_commands: List[str] = []
        self.problem: Optional[Tuple[str, str]] = None      # (network bucket problem, binary)
        self.walk = None
        self.frames: List[dict] = []
        self.explained_fault = ""             # the crash's address parameter, when forensics explains it
        self.faulting_ip: Optional[int] = None
        self.registers: List[Tuple[int, str]] = []    # kernel values in the examined registers, first subject
        self.values: List[Tuple[int, str]] = []       # every non-trivial parameter and register value examined
        self.roles: Dict[str, str] = {}               # third-party binary -> its network role, from the stack

    # -- helpers -----------------------------------------------------------------------------------------------
    def image_of(self, debugger_name: Optional[str]) -> Optional[str]:
        if debugger_name is None:
            return None
        module = self.target.module_by_name(debugger_name)
        return module.name if module is not None else debugger_name

    def reason(self, text: str) -> None:
        if text not in self.reasoning:
            self.reasoning.append(text)

    def add(self, binary: Optional[str], source: str, text: str, weight: int = 0) -> None:
        if binary and not any(e.binary == binary and e.source == source and e.text == text for e in self.evidence):
            self.evidence.append(Evidence(binary, source, text, weight))

    def command(self, text: str) -> None:
        if text not in self.next_commands:
            self.next_commands.append(text)

    def missing(self, text: str, undermines=frozenset(), all_if_microsoft: bool = False) -> None:
        """Record what was unavailable; ``undermines``: evidence sources it weakens (None: all of them)."""
        if text not in self.unavailable:
            self.unavailable.append(text)
            if undermines is None or undermines or all_if_microsoft:
                self.gaps.append(Gap(text, undermines, all_if_microsoft))

    # -- 1. bugcheck -------------------------------------------------------------------------------------------
    def run(self) -> dict:
        code, params = self.target.bugcheck()
        params = tuple(params)
        info = lookup(code)
        explained = explain_parameters(code, params)
        irql = next((p.value for p in explained if p.kind == "irql" and p.value <= 31), None)
        record = {"schema": SCHEMA, "version": __version__, "dump": self._dump_facts(),
                  "bugcheck": {"code": "0x%X" % code, "name": bugcheck_name(code),
                               "known": info is not None, "summary": info.summary if info else
                               "pytriage's knowledge base has no entry for this code",
                               "family": info.family if info else "other",
                               "parameters": [{"index": p.index + 1, "name": p.name, "value": hex64(p.value),
                                               "kind": p.kind, "text": p.text, "detail": p.detail}
                                              for p in explained],
                               "next_steps": list(next_steps_for(code, params)) if info else []}}
        self.reasoning.append("Bugcheck 0x%X %s%s." % (code, record["bugcheck"]["name"], "".join(
            "; Arg%d %s = %s" % (p.index + 1, p.name, p.detail) for p in explained if p.detail)))
        self._stack()
        failing, faulting_ip = self._failure(info, params)
        self.faulting_ip = faulting_ip
        forensics = PointerForensics(self.finder, irql)
        clues = self._forensics(forensics, explained, info, failing, faulting_ip)
        pool = self._pool(code, info, explained, clues)
        network = self._network(code, info, params, failing, clues)
        self._stack_blame(failing, faulting_ip)
        self._availability(failing)
        verdict = decide(self.evidence, self.classifier.is_third_party, self.gaps)
        record.update(self._failure_json(failing, faulting_ip))
        record["stack"] = self._stack_record()
        record["forensics"] = [c.to_json() for c in clues]
        record["pool"] = pool
        record["network"] = network
        record["culprit"] = self._culprit_json(verdict)
        record["candidates"] = self._candidates()
        record["evidence"] = [e.to_json() for e in self.evidence]
        record["buckets"] = self._buckets(code, params, info, failing, verdict)
        record["reasoning"] = self.reasoning + [self._conclusion(verdict, record["buckets"])]
        record["unavailable"] = list(self.unavailable)
        record["next_commands"] = self._next_commands(record["bugcheck"]["next_steps"], verdict)
        record["remedies"] = self._remedies(verdict)
        return record

    def _dump_facts(self) -> dict:
        return {"machine": getattr(self.target, "machine", "AMD64"), "triage": self._dump_is_triage(),
                "crash_time": getattr(self.target, "crash_time", None), "modules": len(self.target.modules())}

    # -- 2. stack ------------------------------------------------------------------------------------------------
    def _stack(self) -> None:
        try:
            self.walk = self.target.stack(None, symbolizer=self.symbolizer,
                                          limits=WalkLimits(max_frames=self.options.max_frames))
        except (PytriageError, UnsupportedDumpError) as exc:
            self.missing("call stack: %s" % exc, None)
            return
        for frame in self.walk.frames:
            module = self.target.module_at(frame.instruction_pointer)
            image = module.name if module is not None else None
            self.frames.append({"frame": frame, "module": module, "image": image, "key": _function_key(frame.call_site),
                                "class": self.classifier.classify(image) if image else "none"})
        if not self.walk.complete:
            self.missing("the stack walk stopped early: %s" % (self.walk.stop_text or self.walk.stop_reason))
        scanned = [f["frame"].number for f in self.frames if f["frame"].found_by in ("scan", "scanned")]
        if scanned:
            self.missing("%d frame(s) found by scanning the stack, not by unwind data: frames %s" % (
                len(scanned), ", ".join("%02x" % n for n in scanned)), STACK_SOURCES)

    def _is_machinery(self, entry: dict) -> bool:
        return entry["image"] is None or bool(_MACHINERY.match(entry["key"]))

    def _failure(self, info, params) -> Tuple[Optional[int], Optional[int]]:
        """(index into self.frames of the frame where the crash happened, the faulting IP)."""
        faulting_ip = None
        if info is not None and info.faulting_ip_param is not None:
            candidate = params[info.faulting_ip_param]
            if self.target.module_at(candidate) is not None:
                faulting_ip = candidate
        interrupted = [i + 1 for i, e in enumerate(self.frames)
                       if e["frame"].trap_frame is not None and i + 1 < len(self.frames)]
        if faulting_ip is not None:
            for i, entry in enumerate(self.frames):
                if entry["frame"].instruction_pointer == faulting_ip and not self._is_machinery(entry):
                    return i, faulting_ip
        for i in interrupted:
            if not self._is_machinery(self.frames[i]):
                return i, faulting_ip if faulting_ip is not None else self.frames[i]["frame"].instruction_pointer
        for i, entry in enumerate(self.frames):
            if not self._is_machinery(entry):
                return i, faulting_ip
        return None, faulting_ip

    # -- 3. forensics --------------------------------------------------------------------------------------------
    def _forensics(self, forensics: PointerForensics, explained, info, failing, faulting_ip) -> List[Clue]:
        clues: List[Clue] = []
        seen = set()

        def look(value: int, subject: str, role: str) -> None:
            if value > 0xFFFF and all(v != value for v, _ in self.values):
                self.values.append((value, subject))
            if role == "register" and value >> 47 == 0x1FFFF and all(v != value for v, _ in self.registers):
                self.registers.append((value, subject))
            key = (value, role == "register")
            if key in seen or (role == "register" and (value, False) in seen):
                return
            seen.add(key)
            clues.extend(forensics.examine(value, subject, role))

        executed = info is not None and info.code == 0xFC
        for p in explained:
            role = {"address": "ip" if executed else "address", "ip": "ip", "pointer": "pointer"}.get(p.kind)
            if role is not None:
                look(p.value, "Arg%d (%s)" % (p.index + 1, p.name), role)
        if faulting_ip is not None:
            look(faulting_ip, "faulting IP", "ip")
        # The failing frame and the interrupted ones first: a value carried up unchanged is named after the
        # frame that used it, not after frame 0 which only inherited it.
        first = [i for i in range(len(self.frames)) if failing is not None and failing <= i <= failing + 3]
        first += [i + 1 for i, e in enumerate(self.frames[:-1]) if e["frame"].trap_frame is not None]
        order = list(dict.fromkeys(first + list(range(len(self.frames)))))
        for i in order:
            entry = self.frames[i]
            frame = entry["frame"]
            after_trap = i > 0 and self.frames[i - 1]["frame"].trap_frame is not None
            if i == 0 or after_trap:
                if entry["image"] is None:
                    look(frame.instruction_pointer, "rip of frame %02x (interrupted)" % frame.number, "ip")
            near = failing is not None and i <= failing + 3
            if not (after_trap or near or i == 0 or i < EXAMINED_FRAMES and entry["class"] == "third-party"):
                continue
            names = (VOLATILE + NONVOLATILE) if after_trap or i == 0 else NONVOLATILE     # trusted values
            for name in names:
                value = frame.registers.get(name)
                if value is None:
                    continue
                look(value, "%s in frame %02x (%s)" % (name, frame.number, frame.call_site), "register")
        for clue in clues:
            if clue.severity == "bad":
                self.reasoning.append("Forensics: %s: %s." % (clue.subject, clue.text))
                if clue.subject.startswith("Arg") and not self.explained_fault and clue.kind in (
                        "null", "null-offset", "null-minus", "fill-pattern", "text", "non-canonical",
                        "user-at-raised-irql", "pool-free"):
                    self.explained_fault = "%s (%s)" % (format_address(clue.value), clue.kind)
        return clues

    # -- 4. pool ---------------------------------------------------------------------------------------------------
    def _pool(self, code: int, info, explained, clues: List[Clue]) -> List[dict]:
        family = info.family if info else ""
        pool_crash = code in POOL_CODES or family == "pool-corruption"
        addresses: List[Tuple[int, str]] = []
        if pool_crash:
            addresses.extend((p.value, "Arg%d (%s)" % (p.index + 1, p.name)) for p in explained
                             if p.kind in ("address", "pointer") and p.value >> 47 == 0x1FFFF
                             and self.target.module_at(p.value) is None)
        addresses.extend((c.value, c.subject) for c in clues if c.kind in ("pool", "pool-free")
                         and (pool_crash or c.severity != "info"))
        if pool_crash:             # a register into a damaged page: the finder found no block there, the walk will
            addresses.extend((value, subject) for value, subject in self.registers
                             if self.finder.describe(value).kind in ("pool", "unknown"))
        results = []
        done = set()
        blocks = set()
        for address, subject in addresses:
            if address in done or len(done) >= MAX_POOL_LOOKUPS:
                continue
            done.add(address)
            memory = self.finder.describe(address)
            if memory.kind == "pool" and memory.block in blocks:
                continue                  # a second pointer into a block already reported adds nothing
            if memory.block is not None:
                blocks.add(memory.block)
            try:
                record = pool_address(self.pool_ctx, address)
            except PytriageError as exc:
                results.append({"address": hex64(address), "subject": subject, "error": str(exc)})
                continue
            record.pop("_report", None)
            if not subject.startswith("Arg") and record["allocation"] is None and not record["culprit_owners"]:
                continue                  # a register into memory that is not pool (a list head, a stack): noise
            summary = self._pool_evidence(address, subject, record)
            results.append({"address": hex64(address), "subject": subject, "summary": summary,
                            "kind": record["kind"], "allocation": record["allocation"],
                            "findings": record["findings"], "owners": record["owners"],
                            "culprit_owners": record["culprit_owners"], "notes": record["notes"]})
            self.command("!pooltag %s" % format_address(address))
            self._overwritten_bytes(record)
        return results

    def _overwritten_bytes(self, record: dict) -> None:
        """A register holding exactly the bytes that overwrote a broken pool header ties the overrun to the code
        that was writing them."""
        for finding in record["findings"]:
            if finding["kind"] != "overrun" or not finding["address"] or not finding["culprit_tag"]:
                continue
            try:
                raw = self.target.read(int(finding["address"], 16), 8)
            except PytriageError:
                continue
            owners = next((c["owners"] for c in record["culprit_owners"] if c["tag"] == finding["culprit_tag"]),
                          record["owners"])
            for value, subject in self.values:
                if value.to_bytes(8, "little") == raw:
                    for binary in self._third_party(owners):
                        self.add(binary, "forensics", "%s holds %s, the very bytes that overwrote the pool header "
                                 "at %s" % (subject, format_address(value), windbg_address(finding["address"])),
                                 weight=25)          # ties the crash's own value to the damage: more than a clue
                    self.reason("Forensics: %s holds %s, the bytes written over the pool header at %s by the "
                                "overrun of the %s block." % (subject, format_address(value), windbg_address(
                                    finding["address"]), finding["culprit_tag"]))

    def _third_party(self, owners: List[dict]) -> List[str]:
        return list(dict.fromkeys(o["binary"] for o in owners if o.get("loaded") is not False
                                  and self.classifier.is_third_party(o["binary"])))

    def _pool_evidence(self, address: int, subject: str, record: dict) -> str:
        allocation = record["allocation"]
        where = "%s %s" % (subject, format_address(address))
        if allocation is None:            # damaged bytes: no block holds them, but the page walk names who overran
            tag = None
            text = "%s: no pool allocation found (%s)" % (where, "; ".join(record["notes"][:1]) or record["kind"])
            if not record["culprit_owners"]:
                return text
        else:
            tag = allocation["tag"]
            text = "%s is in pool block %s tag %s (%s, 0x%x bytes)" % (where, windbg_address(allocation["start"]), tag,
                                                                        allocation["state"], allocation["size"])
        overran = {culprit["tag"]: culprit["owners"] for culprit in record["culprit_owners"]}
        for finding in record["findings"]:       # the block at the address may be the one that overran
            if finding["kind"] == "overrun" and finding["culprit_tag"] == tag:
                overran.setdefault(tag, record["owners"])
        for culprit_tag, owners in overran.items():
            for binary in self._third_party(owners):
                self.add(binary, "pool-overrun", "pool block tagged %s, allocated by %s, overran into the next "
                         "block's header (%s)" % (culprit_tag, binary, where))
                self.problem = self.problem or ("POOL_OVERRUN", binary)
            self.reason("Pool: %s; the block that overran is tagged %s (owners: %s)." % (
                text, culprit_tag, ", ".join(dict.fromkeys(o["binary"] for o in owners)) or "unknown"))
        if allocation is None:
            return text
        kinds = {f["kind"] for f in record["findings"]}
        owners = self._third_party(record["owners"])
        if "guard-page" in kinds:
            for binary in owners:
                self.add(binary, "guard-page", "the access hit the guard page after a special-pool allocation "
                         "tagged %s, allocated by %s" % (tag, binary))
                self.problem = self.problem or ("SPECIAL_POOL_OVERRUN", binary)
            self.reason("Pool: %s touches the guard page after special-pool allocation tag %s (owners: "
                                  "%s): an overrun of that allocation." % (where, tag, ", ".join(owners) or
                                                                           "no third party"))
        elif allocation["state"] == "free":
            for binary in owners:
                self.add(binary, "freed-block", "%s points into a freed block tagged %s (last owner %s)" % (
                    where, tag, binary))
        else:
            for binary in owners:
                self.add(binary, "pool-owner", "%s points into %s's pool block tagged %s" % (where, binary, tag))
        if record["findings"] and not overran and "guard-page" not in kinds:
            self.reason("Pool: %s: %s." % (text, record["findings"][0]["text"]))
        return text

    # -- 5. network path --------------------------------------------------------------------------------------
    def _network(self, code: int, info, params, failing, clues: List[Clue]) -> dict:
        names = [e["frame"].call_site for e in self.frames]
        modules = [e["frame"].module if e["class"] == "third-party" else None for e in self.frames]
        roles = module_roles(names, modules, self.image_of) if self.frames else []
        for binary, role in roles:
            self.roles[binary] = role.role
            self.add(binary, "network-role", "%s: %s" % (role.role, role.text))
        network = {"on_network_path": any(e["class"] == "network" for e in self.frames),
                   "roles": [{"binary": b, "role": r.role, "evidence": r.text, "strength": r.strength}
                             for b, r in roles],
                   "stack_usage": self._stack_usage(code, params, failing), "nbls": [], "patterns": []}
        if self.options.nbls and (network["on_network_path"] or self.target.module_by_name("nwifi") is not None):
            network["nbls"] = self._nbls(clues, failing)
        pattern = self._wfp_pattern(code, info, params, failing, roles)
        if pattern:
            network["patterns"].append(pattern)
        return network

    def _stack_usage(self, code: int, params, failing) -> Optional[dict]:
        if not self.frames or failing is None:
            return None
        initial = self._initial_stack()
        frames = [e["frame"] for e in self.frames]
        deepest = frames[failing].child_sp
        per_module: Dict[str, int] = {}
        for i in range(failing, len(frames) - 1):
            size = frames[i + 1].child_sp - frames[i].child_sp
            image = self.frames[i]["image"] or "?"
            if 0 < size < 0x100000:
                per_module[image] = per_module.get(image, 0) + size
        largest = sorted(per_module.items(), key=lambda kv: -kv[1])
        usage = {"initial_stack": hex64(initial) if initial else None, "deepest_sp": hex64(deepest),
                 "used": (initial - deepest) if initial and initial > deepest else None, "size": KERNEL_STACK_SIZE,
                 "by_module": [{"binary": b, "bytes": n} for b, n in largest]}
        double_fault = code == 0x7F and params[0] == 8
        if double_fault:
            used = usage["used"]
            if used is None:
                self.missing("the thread's InitialStack (how much stack was used) is not in the dump")
            exhausted = used is not None and used >= STACK_NEARLY_FULL
            usage["exhausted"] = exhausted
            shares = ", ".join("%s 0x%x" % (b, n) for b, n in largest[:4])
            if exhausted:
                self.reasoning.append("Stack: the thread used 0x%x of its 0x%x-byte kernel stack when it "
                                      "double-faulted: the stack ran out; bytes per module: %s." % (
                                          used, KERNEL_STACK_SIZE, shares))
                outside = [(b, n) for b, n in largest if self.classifier.is_third_party(b)]
                if outside:
                    binary, size = outside[0]
                    self.add(binary, "stack-exhaustion", "%s's frames took 0x%x bytes of the exhausted kernel "
                             "stack, the most of any third-party driver" % (binary, size))
                    self.problem = self.problem or ("KERNEL_STACK_OVERFLOW", binary)
            elif used is not None:
                self.reasoning.append("Stack: 0x%x of 0x%x bytes used: not exhausted, so the double fault has another "
                                      "cause (a corrupted stack pointer?)." % (used, KERNEL_STACK_SIZE))
        return usage

    def _initial_stack(self) -> Optional[int]:
        try:
            contexts = self.target.processor_contexts()
        except (PytriageError, UnsupportedDumpError):
            return None
        rsp = self.frames[0]["frame"].child_sp if self.frames else None
        for ctx in contexts:
            if not ctx.current_thread:
                continue
            try:
                start = self.target.thread_start(ctx.current_thread)
            except (PytriageError, UnsupportedDumpError):
                continue
            top = start.initial_stack
            if top and rsp is not None and top - 0x100000 <= rsp < top:
                return top
        return None

    def _nbls(self, clues: List[Clue], failing) -> List[dict]:
        """NBLs among the values the failing frames hold: a value at the start of a pool block's data that
        reads as an NBL with a NET_BUFFER and an MDL chain. Not by tag: the NBL that crashed nwifi in seed 004
        was allocated by the third-party filter, in its own "Filt" block."""
        candidates = []
        for clue in clues:
            memory = clue.memory
            if memory is None or memory.kind != "pool" or memory.block is None or memory.state == "free":
                continue
            if clue.value == memory.block + 0x10 and clue.value not in [c[0] for c in candidates]:
                candidates.append((clue.value, clue.subject))
        results = []
        layouts = NblLayouts(self.symbolizer)
        walker = NblWalker(self.target, layouts, self.finder,
                           WalkOptions(max_nbls=1, owners=True, dot11="auto", packets=True))
        probe = NblWalker(self.target, layouts, self.finder,
                          WalkOptions(max_nbls=1, owners=False, dot11="never", packets=False))
        for address, subject in candidates[:MAX_NBL_CANDIDATES]:
            shape = probe.read_nbl(0, address)
            if shape.error or not shape.net_buffers or shape.net_buffers[0].error or \
                    not shape.net_buffers[0].mdl_chain or shape.notes:
                continue                  # not an NBL: most pool pointers are something else
            walk = walker.walk(address)
            record = walk_to_json(walk)
            nbl = walk.nbls[0] if walk.nbls else None
            entry = {"address": hex64(address), "subject": subject, "walk": record, "verdict": ""}
            self.command("!nblwalk %s" % format_address(address))
            if nbl is not None and nbl.dot11 is not None and not nbl.dot11.healthy:
                report = nbl.dot11
                entry["verdict"] = report.verdict
                bad = next((e for e in report.entries if not e.check.ok), None)
                self.reasoning.append("NBL %s (%s) carries a corrupt DOT11 completion stack: %s%s" % (
                    format_address(address), subject, "; ".join(report.findings),
                    ". The entry nwifi would call, at %s, holds pRoutine %s: %s" % (
                        format_address(bad.address), format_address(bad.routine), bad.check.text) if bad else ""))
                for binary in report.suspects:
                    self.add(binary, "dot11", "the DOT11 completion stack of NBL %s points into %s's memory (%s)" % (
                        format_address(address), binary, report.ptos_owner.text if report.ptos_owner else
                        "; ".join(report.findings)))
                    self.problem = ("NBL_COMPLETION_STACK_CORRUPT", binary)
            elif nbl is not None and nbl.notes:
                entry["verdict"] = "; ".join(nbl.notes)
            results.append(entry)
        return results

    def _wfp_pattern(self, code: int, info, params, failing, roles) -> Optional[dict]:
        """0xD1/AV on a NULL NBL inside NETIO's NBL dereference while a callout injects from its own thread:
        the classifyFn referenced the NBL and a worker cloned and injected it later (seed 002)."""
        if failing is None or not self.frames:
            return None
        av = info is not None and (info.family == "access-violation" or code in AV_CODES)
        if not av or not _NBL_FUNCTIONS.match(self.frames[failing]["key"]):
            return None
        injectors = []
        for i, entry in enumerate(self.frames[1:], 1):
            if entry["class"] != "third-party":
                continue
            callee = self.frames[i - 1]["key"]
            if callee.startswith("fwpkclnt!fwpsinject"):
                injectors.append((self.frames[i]["image"], self.frames[i - 1]["frame"].call_site.split("+")[0],
                                  entry["frame"].call_site))
        if not injectors:
            return None
        binary, api, site = injectors[0]
        worker = any(e["key"] in ("nt!pspsystemthreadstartup", "nt!kistartsystemthread")
                     for e in self.frames[-3:])
        classify = any("classify" in e["key"] for e in self.frames if e["image"] == binary)
        text = ("%s (%s) injected an NBL with %s%s, and NETIO then dereferenced a NULL NBL at %s: the callout "
                "referenced the NBL in its classifyFn (FwpsReferenceNetBufferList) and cloned and injected it later; "
                "clone inside classifyFn instead, or inject a fresh NBL (the fix for the WDK inspect sample)" % (
                    binary, site, api, " from its own worker thread, outside classifyFn" if worker and not classify
                    else "", self.frames[failing]["frame"].call_site))
        self.add(binary, "wfp-pattern", text)
        self.reasoning.append("WFP: " + text + ".")
        self.problem = self.problem or ("WFP_NBL_REFERENCE_MISUSE", binary)
        return {"name": "wfp-inject-after-reference", "binary": binary, "role": CALLOUT, "text": text}

    # -- stack-based blame -------------------------------------------------------------------------------------
    def _stack_blame(self, failing, faulting_ip) -> None:
        if faulting_ip is not None:
            module = self.target.module_at(faulting_ip)
            if module is not None:
                site = self.symbolizer.format(faulting_ip) if self.symbolizer else format_address(faulting_ip)
                if self.classifier.classify(module.name) != "core":
                    self.add(module.name, "faulting-ip", "the faulting instruction is in %s%s: %s" % (
                        module.name, "" if self.classifier.is_third_party(module.name) else " (a Microsoft module)",
                        site))
                    if self.explained_fault:
                        self.add(module.name, "forensics", "its instruction accessed %s" % self.explained_fault)
        if failing is None:
            return
        failing_entry = self.frames[failing]
        first = True
        for entry in self.frames[failing:]:
            image = entry["image"]
            if image is None or entry["class"] != "third-party":
                continue
            if entry["frame"].instruction_pointer == faulting_ip:
                first = False
                continue
            if first:
                below = "" if entry is failing_entry else " (below the failing frame %s)" % (
                    failing_entry["frame"].call_site)
                self.add(image, "first-third-party-frame", "first third-party frame on the stack: %s%s" % (
                    entry["frame"].call_site, below))
                self.reasoning.append("Stack: the first third-party frame is %s%s." % (entry["frame"].call_site,
                                                                                       below))
                first = False
            else:
                self.add(image, "third-party-frame", "also on the stack: %s" % entry["frame"].call_site)
        if not any(e.source in ("faulting-ip", "first-third-party-frame", "pool-overrun", "guard-page", "dot11")
                   for e in self.evidence):
            if failing_entry["class"] != "core" and failing_entry["image"]:
                self.add(failing_entry["image"], "microsoft-fallback", "the crash surfaced in %s" %
                         failing_entry["frame"].call_site)

    # -- availability -------------------------------------------------------------------------------------------
    def _availability(self, failing) -> None:
        if self.symbolizer is None:
            self.missing("no symbols at all: frames are module+offset and roles cannot be recognised", lowers=True)
            return
        checked = set()
        windows_without_pdb = []
        for entry in self.frames[:EXAMINED_FRAMES + (failing or 0)]:
            image = entry["image"]
            if image is None or image in checked:
                continue
            checked.add(image)
            module = entry["module"]
            kind = self.symbolizer.module_symbols(module).kind
            microsoft = entry["class"] != "third-party"
            if kind == "none":
                self.missing("no symbols for %s (%s): its frames show as %s+0x..." % (
                    image, "Microsoft" if microsoft else "third party", module.debugger_name))
            elif kind == "export":
                self.missing("only export names for %s (no PDB): internal functions are named after the nearest "
                             "export" % image)
            if microsoft and kind in ("none", "export"):
                windows_without_pdb.append(image)
        if windows_without_pdb:            # one gap, however many modules: they weaken the same evidence
            self.gaps.append(Gap("no PDB for the Windows modules %s: NDIS/WFP entry points and nt's trap and "
                                 "exception code are recognised by name" % ", ".join(windows_without_pdb),
                                 STACK_SOURCES))
        if self.walk is not None:
            for note in self.walk.notes:
                if "has no unwind data" in note:       # neither the dump nor the symbol store has the image
                    self.missing("image unavailable: %s" % note, STACK_SOURCES)
        if self._dump_is_triage():
            self.missing("a triage dump: it saves the crash's stack and a few small blocks, so pool pages, NBLs and "
                         "other threads are mostly absent; a driver that corrupted memory without being on the stack "
                         "cannot be seen", frozenset(("microsoft-fallback", "first-third-party-frame",
                                                      "third-party-frame", "network-role")), all_if_microsoft=True)

    def _dump_is_triage(self) -> bool:
        try:
            return self.target.saved_ranges() is not None
        except PytriageError:
            return False

    # -- record pieces ------------------------------------------------------------------------------------------
    def _failure_json(self, failing, faulting_ip) -> dict:
        entry = self.frames[failing] if failing is not None else None
        frame = entry["frame"] if entry else None
        trap = None
        if failing:
            previous = self.frames[failing - 1]["frame"]
            trap = previous.trap_frame
        symbol = frame.symbol or {} if frame else {}
        return {"failure": {
            "frame": frame.number if frame else None,
            "call_site": frame.call_site if frame else None,
            "module": frame.module if frame else None,
            "image": entry["image"] if entry else None,
            "class": entry["class"] if entry else None,
            "function": symbol.get("symbol") if frame else None,
            "faulting_ip": hex64(faulting_ip) if faulting_ip is not None else None,
            "faulting_symbol": (self.symbolizer.format(faulting_ip) if faulting_ip is not None and self.symbolizer
                                else None),
            "trap_frame": hex64(trap) if trap is not None else None}}

    def _stack_record(self) -> Optional[dict]:
        if self.walk is None:
            return None
        record = stack_json(self.walk)
        for frame_json, entry in zip(record["frames"], self.frames):
            frame_json["image"] = entry["image"]
            frame_json["class"] = entry["class"]
        return record

    def _candidates(self) -> List[dict]:
        from pytriage.analysis.triage.evidence import score
        totals = score(self.evidence)
        return [{"binary": b, "score": s, "class": self.classifier.classify(b)}
                for b, s in sorted(totals.items(), key=lambda kv: -kv[1])]

    def _culprit_json(self, verdict) -> Optional[dict]:
        if verdict.binary is None:
            return None
        module = self.target.module_by_name(verdict.binary)
        role = self.roles.get(verdict.binary)
        if role is None and any(e.source == "wfp-pattern" for e in verdict.evidence):
            role = CALLOUT
        return {"binary": verdict.binary, "module": module.debugger_name if module else None,
                "class": self.classifier.classify(verdict.binary), "role": role,
                "confidence": verdict.confidence, "score": verdict.score,
                "timestamp": "0x%08x" % module.timestamp if module is not None and module.timestamp else None,
                "base": hex64(module.base) if module is not None else None,
                "evidence": [e.to_json() for e in verdict.evidence],
                "confidence_lowered_by": verdict.lowered_by}

    def _followup(self, failing, faulting_ip) -> Tuple[Optional[str], Optional[str], Optional[dict]]:
        """(module, function, frame entry) of ``!analyze``'s follow-up frame: the failing frame, or, when no
        instruction faulted (0x19: the pool code found the damage), the first caller outside nt's pool code."""
        if failing is None:
            return None, None, None
        for entry in self.frames[failing:]:
            if entry["image"] is None or faulting_ip is None and _POOL_ALLOCATORS.match(entry["key"]):
                continue
            symbol = entry["frame"].symbol or {}
            return entry["frame"].module, symbol.get("symbol"), entry
        return None, None, None

    def _buckets(self, code: int, params, info, failing, verdict) -> dict:
        module, function, entry = self._followup(failing, self.faulting_ip)
        followup = followup_name(module, function)
        bucket = analyze_bucket(code, params, info.family if info else "other",
                                info.subcode_param if info else None, info.exception_param if info else None,
                                followup)
        if verdict.binary is None:
            problem, binary = ("UNKNOWN", None)
        elif self.problem is not None and self.problem[1] == verdict.binary:
            problem, binary = self.problem
        else:
            problem, binary = self._generic_problem(info, verdict, bucket), verdict.binary
        return {"failure_bucket_id": bucket, "network_bucket_id": network_bucket(problem, binary),
                "followup": followup, "followup_frame": entry["frame"].number if entry else None}

    def _generic_problem(self, info, verdict, bucket: str) -> str:
        families = {"access-violation": "AV", "exception": "EXCEPTION", "pool-corruption": "POOL_CORRUPTION",
                    "trap": "TRAP", "irql": "IRQL", "verifier": "VERIFIER", "timeout": "TIMEOUT",
                    "memory-management": "MEMORY", "security-check": "SECURITY_CHECK"}
        family = "AV" if bucket.startswith("AV_") else families.get(info.family if info else "", "CRASH")
        role = self.roles.get(verdict.binary)
        prefix = {"NDIS lightweight filter (LWF)": "LWF", "NDIS miniport": "MINIPORT",
                  "NDIS protocol driver": "PROTOCOL", "WFP callout driver": "CALLOUT"}.get(role or "", "DRIVER")
        return "%s_%s" % (prefix, family)

    def _conclusion(self, verdict, buckets: dict) -> str:
        if verdict.binary is None:
            return "Conclusion: no module could be blamed from what this dump holds."
        return "Conclusion: %s (%s), confidence %s (score %d from %s). Network bucket %s." % (
            verdict.binary, self.classifier.classify(verdict.binary), verdict.confidence, verdict.score,
            ", ".join(dict.fromkeys(e.source for e in verdict.evidence)), buckets["network_bucket_id"])

    def _next_commands(self, next_steps: List[str], verdict) -> List[str]:
        commands = []
        if self.frames:
            for entry in self.frames:
                if entry["frame"].trap_frame is not None:
                    commands.append(".trap %s" % format_address(entry["frame"].trap_frame))
                    break
        commands.append("kn")
        if verdict.binary:
            module = self.target.module_by_name(verdict.binary)
            if module is not None:
                commands.append("lmvm %s" % module.debugger_name)
        commands.extend(self.next_commands)
        commands.extend(next_steps)
        return list(dict.fromkeys(commands))

    def _remedies(self, verdict) -> List[str]:
        if verdict.binary is None:
            return ["Collect a kernel or full memory dump (not a triage dump) with Driver Verifier enabled on the "
                    "suspect drivers, and run `!pytriage -v` on it."]
        suspect = verdict.binary
        network = [e["image"] for e in self.frames if e["class"] == "network" and e["image"]]
        inbox = list(dict.fromkeys(n for n in ("ndis.sys", "tcpip.sys", "netio.sys", "nwifi.sys", "wdiwifi.sys",
                                               "fwpkclnt.sys") if any(n == x.lower() for x in network)))
        problem = self.problem[0] if self.problem else ""
        drivers = " ".join(inbox + [suspect]) if inbox else suspect
        remedies = []
        if problem in ("POOL_OVERRUN", "SPECIAL_POOL_OVERRUN") or "pool" in problem.lower() or \
                problem == "NBL_COMPLETION_STACK_CORRUPT":
            remedies.append("Enable Driver Verifier with special pool on %s: `verifier /flags 0x1 /driver %s`, reboot "
                            "and reproduce; the next crash stops at the first bad write (0xD6/0xC1) inside the "
                            "guilty code." % (", ".join(inbox + [suspect]), drivers))
        else:
            remedies.append("Enable Driver Verifier standard checks on %s: `verifier /standard /driver %s`, reboot "
                            "and reproduce." % (suspect, suspect))
        if self.classifier.is_third_party(suspect):
            remedies.append("Update or remove %s (its vendor's latest version), or disable the component that "
                            "installs it, and send this analysis (`pytriage analyze DUMP --json`) to its vendor."
                            % suspect)
        else:
            remedies.append("%s is a Microsoft module: install the latest Windows cumulative update and firmware, "
                            "then check the third-party drivers that call into it." % suspect)
        return remedies


def triage(target, symbolizer, classifier: ModuleClassifier, options: Optional[TriageOptions] = None,
           progress_stream=None) -> dict:
    return Triage(target, symbolizer, classifier, options or TriageOptions(), progress_stream).run()
