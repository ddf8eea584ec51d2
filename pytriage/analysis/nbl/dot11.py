"""nwifi's DOT11 completion stack of an NBL, decoded and validated (DESIGN 8, seed 004).

nwifi keeps a ``DOT11_PACKET_CONTEXT`` in the NBL's context area (``NET_BUFFER_LIST_CONTEXT_DATA_START``:
``Context + 0x10 + Offset``). Its ``CmplArray`` is a stack of ``{pRoutine, pCtxt, pCtxt2}`` entries, one
pushed by each layer that wants the send completion back: a push stores at ``pTOS`` and adds 0x18, so
``pBOS = &CmplArray[0]``, the live entries are ``[pBOS, pTOS)`` and ``pTOS == pBOS`` is an empty stack.
``Dot11SendCompletion`` pops by loading the entry below ``pTOS``, calling its ``pRoutine`` and
subtracting 0x18 (``sub rbx,18h``, seed 004): whatever ``pTOS - 0x18`` holds is executed.

The checks follow the three failure shapes seen in real dumps: (a) ``pTOS`` outside ``CmplArray``, in
another driver's pool block, where ``pRoutine`` is text (UTF-16 "562") -> 0x1E on a non-canonical jump;
(b) ``pTOS`` on a kernel stack, ``pRoutine`` a data symbol -> 0xFC; (c) ``pTOS`` NULL or equal to
``pBOS`` (completed more often than pushed) -> a read at NULL - 0x18 -> 0xD1/0x50. Every bad pointer is
named with whose memory it is (``memory_owner``).
"""

from dataclasses import dataclass, field
from typing import List, Optional

from pytriage.analysis.memory_owner import MemoryOwner, MemoryOwnerFinder, is_canonical, is_third_party
from pytriage.analysis.nbl.layouts import NblLayouts
from pytriage.commands.render import hex64
from pytriage.errors import MemoryReadError, format_address

NWIFI_VERIFIER = "Driver Verifier with special pool on ndis.sys, nwifi.sys, wdiwifi.sys, tcpip.sys"


@dataclass
class RoutineCheck:
    kind: str                      # code, data, null, text, non-canonical, user, not-code
    text: str                      # module!symbol or the finding
    ok: bool
    bugcheck: str = ""             # what executing it leads to


@dataclass
class StackEntry:
    index: Optional[int]           # CmplArray index; None for an entry outside the array
    address: int
    routine: int
    ctxt: int
    ctxt2: int
    check: RoutineCheck
    owner: Optional[MemoryOwner] = None      # whose memory the entry itself is in (entries outside CmplArray)

    def to_json(self) -> dict:
        return {"index": self.index, "address": hex64(self.address), "pRoutine": hex64(self.routine),
                "pCtxt": hex64(self.ctxt), "pCtxt2": hex64(self.ctxt2), "routine_kind": self.check.kind,
                "routine": self.check.text, "ok": self.check.ok, "bugcheck": self.check.bugcheck,
                "memory": self.owner.to_json() if self.owner else None}


@dataclass
class Dot11Report:
    context: int                   # the NET_BUFFER_LIST_CONTEXT
    packet_context: int            # the DOT11_PACKET_CONTEXT
    pbos: int
    ptos: int
    velan: int
    layout_source: str
    depth: Optional[int] = None    # live entries when pTOS is inside CmplArray on an entry boundary
    entries: List[StackEntry] = field(default_factory=list)    # live entries bottom first; or the one pTOS - 0x18
    findings: List[str] = field(default_factory=list)
    ptos_owner: Optional[MemoryOwner] = None
    context_owner: Optional[MemoryOwner] = None
    suspects: List[str] = field(default_factory=list)
    verdict: str = ""
    error: str = ""

    @property
    def healthy(self) -> bool:
        return not self.findings and not self.error

    def to_json(self) -> dict:
        return {"context": hex64(self.context), "packet_context": hex64(self.packet_context),
                "pBOS": hex64(self.pbos), "pTOS": hex64(self.ptos), "pVElan": hex64(self.velan),
                "layout": self.layout_source, "depth": self.depth, "healthy": self.healthy,
                "entries": [e.to_json() for e in self.entries], "findings": list(self.findings),
                "pTOS_memory": self.ptos_owner.to_json() if self.ptos_owner else None,
                "context_memory": self.context_owner.to_json() if self.context_owner else None,
                "suspects": list(self.suspects), "verdict": self.verdict, "error": self.error}


def text_of(value: int) -> Optional[str]:
    """The 8 bytes of ``value`` as UTF-16 or ASCII text when they read as such ("562" for 0x3200360035)."""
    raw = value.to_bytes(8, "little")
    try:
        wide = raw.decode("utf-16-le").split("\0", 1)
    except UnicodeDecodeError:
        wide = []
    if wide and wide[0] and all(0x20 <= ord(c) < 0x7F for c in wide[0]) and \
            (len(wide) == 1 or not raw[2 * len(wide[0]):].strip(b"\0")):
        return 'UTF-16 "%s"' % wide[0]
    narrow = raw.split(b"\0", 1)
    if len(narrow[0]) >= 3 and all(0x20 <= b < 0x7F for b in narrow[0]) and \
            (len(narrow) == 1 or not narrow[1].strip(b"\0")):
        return 'ASCII "%s"' % narrow[0].decode("ascii")
    return None


def check_routine(finder: MemoryOwnerFinder, routine: int) -> RoutineCheck:
    if routine == 0:
        return RoutineCheck("null", "NULL routine", False, "a call to NULL: 0xD1 / 0x50 / 0x1E")
    if routine >> 47 != 0x1FFFF:                   # not a kernel address: text is the telling case (seed 004)
        text = text_of(routine)
        if text is not None:
            return RoutineCheck("text", "%s is not an address: it is %s" % (format_address(routine), text), False,
                                "executing text: 0x1E (0x80000003 / 0xC0000005), or 0xFC / 0x50 by the bytes")
        if not is_canonical(routine):
            return RoutineCheck("non-canonical", "%s is not a canonical address" % format_address(routine), False,
                                "a jump to a non-canonical address: 0x1E (0xC0000005)")
    owner = finder.describe(routine)
    if owner.kind == "module":
        if owner.executable is False:
            return RoutineCheck("data", "%s is data, not code" % owner.symbol, False,
                                "executing non-executable memory: 0xFC ATTEMPTED_EXECUTE_OF_NOEXECUTE_MEMORY")
        return RoutineCheck("code", owner.symbol or format_address(routine), True)
    if owner.kind == "user":
        return RoutineCheck("user", owner.text, False, "kernel code calling a user address: 0xFC / 0x50")
    return RoutineCheck("not-code", "not code in a loaded module: %s" % owner.text, False,
                        "executing pool or stack memory: 0xFC, or 0x50/0xD1 when unmapped")


class Dot11Analyzer:
    def __init__(self, target, layouts: NblLayouts, finder: MemoryOwnerFinder) -> None:
        self.target = target
        self.layouts = layouts
        self.finder = finder

    def analyze(self, context: int, data_start: int, related: List[MemoryOwner]) -> Dot11Report:
        """The stack of the DOT11_PACKET_CONTEXT at ``data_start`` (in the NBL context ``context``);
        ``related``: whose memory the NBL and its pool handle are, for the verdict's suspects."""
        layout = self.layouts["DOT11_PACKET_CONTEXT"]
        entry_layout = self.layouts["DOT11_COMPLETION_STACK_ENTRY"]
        entry_size = entry_layout.size
        cmpl = layout.fields["CmplArray"]
        pbos = data_start + cmpl.offset
        report = Dot11Report(context, data_start, pbos, 0, 0, layout.source)
        try:
            raw = self.target.read(data_start, layout.span)
        except MemoryReadError as exc:
            report.error = "the DOT11 packet context is not in the dump (%s)" % exc
            return report
        report.ptos = layout.value(raw, "pTOS")
        report.velan = layout.value(raw, "pVElan")
        report.context_owner = self.finder.describe(context)
        top = pbos + entry_size * cmpl.count
        ptos = report.ptos
        if ptos == 0:
            report.findings.append("pTOS is NULL: the next completion loads the entry at NULL - 0x%x = %s "
                                   "(0xD1 / 0x50): the NBL was completed after its stack was torn down, or by a "
                                   "driver that did not own it" % (entry_size,
                                                                   format_address((0 - entry_size) & (2**64 - 1))))
        elif pbos <= ptos <= top and (ptos - pbos) % entry_size == 0:
            report.depth = (ptos - pbos) // entry_size
            if report.depth == 0:
                report.findings.append("empty completion stack (pTOS == pBOS): completing this NBL again pops "
                                       "below CmplArray[0] - it was completed more times than nwifi pushed "
                                       "entries (a double or foreign completion)")
            for index in range(report.depth):
                entry = self._entry(pbos + index * entry_size, index, raw, data_start)
                report.entries.append(entry)
                if not entry.check.ok:
                    report.findings.append("CmplArray[%d] at %s: pRoutine %s (%s)" % (
                        index, format_address(entry.address), entry.check.text, entry.check.bugcheck))
        else:
            report.ptos_owner = self.finder.describe(ptos)
            where = "inside CmplArray but not on a 0x%x entry boundary" % entry_size if pbos <= ptos <= top else \
                "outside CmplArray [%s, %s]" % (format_address(pbos), format_address(top))
            report.findings.append("pTOS %s is %s; %s" % (format_address(ptos), where, report.ptos_owner.text))
            called = (ptos - entry_size) & 0xFFFFFFFFFFFFFFFF
            entry = self._entry(called, None, None, data_start)
            entry.owner = self.finder.describe(called)
            report.entries.append(entry)
            report.findings.append("the next completion calls the entry at pTOS - 0x%x = %s: pRoutine %s (%s)" % (
                entry_size, format_address(called), entry.check.text, entry.check.bugcheck or "code"))
        if report.context_owner is not None and report.context_owner.kind == "pool" and \
                any(is_third_party(b) for b in report.context_owner.binaries):
            report.findings.append("the NBL context block itself is in a pool block owned by %s, not ndis"
                                   % ", ".join(report.context_owner.binaries))
        self._verdict(report, related)
        return report

    def _entry(self, address: int, index: Optional[int], raw: Optional[bytes], data_start: int) -> StackEntry:
        layout = self.layouts["DOT11_COMPLETION_STACK_ENTRY"]
        try:
            if raw is not None and 0 <= address - data_start and address - data_start + layout.span <= len(raw):
                at = address - data_start
                chunk = raw[at:at + layout.span]
            else:
                chunk = self.target.read(address, layout.span)
        except MemoryReadError as exc:
            return StackEntry(index, address, 0, 0, 0, RoutineCheck("unreadable", "the entry is not in the dump (%s)"
                                                                    % exc, False))
        routine = layout.value(chunk, "pRoutine")
        return StackEntry(index, address, routine, layout.value(chunk, "pCtxt"), layout.value(chunk, "pCtxt2"),
                          check_routine(self.finder, routine))

    @staticmethod
    def _verdict(report: Dot11Report, related: List[MemoryOwner]) -> None:
        if report.healthy:
            report.verdict = "completion stack intact: %d entr%s, every routine is code in a loaded module" % (
                report.depth or 0, "y" if report.depth == 1 else "ies")
            return
        evidence = [report.ptos_owner] + [e.owner for e in report.entries] + [report.context_owner] + related
        suspects: List[str] = []
        for owner in evidence:
            if owner is None:
                continue
            for binary in owner.binaries:
                if is_third_party(binary) and binary not in suspects:
                    suspects.append(binary)
        report.suspects = suspects
        blame = ("the driver below nwifi (%s) completed or corrupted an NBL it did not own" % ", ".join(suspects)
                 if suspects else "a driver completed this NBL more often than nwifi pushed completions, or "
                 "overwrote its context; no third-party memory is named")
        report.verdict = "completion stack corrupt: %s. Next: %s%s." % (
            blame, NWIFI_VERIFIER, " and " + ", ".join(suspects) if suspects else " and the third-party filters "
            "and miniports bound to the adapter")
