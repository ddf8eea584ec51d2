"""What part a driver plays on the network path, read from the stack's shape (DESIGN 6).

A driver's role decides how to read a crash: an NDIS lightweight filter (LWF) sits *inside* the send and
receive paths and can corrupt what Microsoft code below it later trips over; a miniport owns the packets it
completes; a WFP callout owns the NBLs it references, clones and injects. The stack says which one a
third-party frame is, without its symbols: the NDIS or WFP function it called (its callee, one frame
inner) and the function that called it (one frame outer) are entry points with a fixed meaning. Function
names of the WDK samples (FilterSend..., MiniportSend..., ClassifyFn) are weaker evidence, used last.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

LWF = "NDIS lightweight filter (LWF)"
MINIPORT = "NDIS miniport"
PROTOCOL = "NDIS protocol driver"
CALLOUT = "WFP callout driver"

# Functions a driver calls, and the role only that kind of driver calls them in.
CALLEE_ROLES = {
    "ndis!ndisfsendnetbufferlists": LWF,
    "ndis!ndisfsendnetbufferlistscomplete": LWF,
    "ndis!ndisfindicatereceivenetbufferlists": LWF,
    "ndis!ndisfreturnnetbufferlists": LWF,
    "ndis!ndisfoidrequest": LWF,
    "ndis!ndismsendnetbufferlistscomplete": MINIPORT,
    "ndis!ndismindicatereceivenetbufferlists": MINIPORT,
    "ndis!ndismindicatestatusex": MINIPORT,
    "ndis!ndissendnetbufferlists": PROTOCOL,
    "ndis!ndisreturnnetbufferlists": PROTOCOL,
    "ndis!ndisoidrequest": PROTOCOL,
}
CALLEE_PREFIXES = (("fwpkclnt!fwps", CALLOUT), ("netio!fwps", CALLOUT))

# Functions that call a driver's handler, and the role of a driver they call. ndis!ndisCallReceiveHandler and
# ndis!ndisCallSendCompleteHandler are left out: they call whichever filter or protocol sits above.
CALLER_ROLES = {
    "ndis!ndismsendnbltominiport": MINIPORT,
    "ndis!ndismsendnbltominiportfast": MINIPORT,
    "ndis!ndismdispatchreceivenetbufferlists": MINIPORT,
    "ndis!ndisfiltersendnetbufferlists": LWF,
    "ndis!ndisfilterreceivenetbufferlists": LWF,
    "ndis!ndisinvokenextsendhandler": LWF,
    "ndis!ndisinvokenextreceivehandler": LWF,
    "ndis!ndisinvokenextsendcompletehandler": LWF,
    "ndis!ndismindicatenetbufferliststoopen": PROTOCOL,
    "netio!processcallout": CALLOUT,
    "netio!arbitrateandenforcecallout": CALLOUT,
    "netio!kfdclassify": CALLOUT,
}
NAME_HINTS: Tuple[Tuple[str, str], ...] = (("filter", LWF), ("miniport", MINIPORT), ("protocol", PROTOCOL),
                                           ("classify", CALLOUT), ("callout", CALLOUT))


@dataclass
class RoleEvidence:
    role: str
    text: str
    strength: str              # "entry point" (an NDIS/WFP function's fixed meaning) or "name" (a naming habit)


def _key(call_site: str) -> str:
    """``ndis!NdisFSendNetBufferLists+0x2ed`` -> ``ndis!ndisfsendnetbufferlists``."""
    return call_site.split("+", 1)[0].lower()


def frame_role(names: Sequence[str], index: int) -> Optional[RoleEvidence]:
    """The role of the driver whose frame is ``names[index]``; ``names`` are call sites, frame 0 first."""
    callee = _key(names[index - 1]) if index > 0 else ""
    caller = _key(names[index + 1]) if index + 1 < len(names) else ""
    role = CALLEE_ROLES.get(callee)
    if role is None:
        role = next((r for prefix, r in CALLEE_PREFIXES if callee.startswith(prefix)), None)
    if role is not None:
        return RoleEvidence(role, "it called %s, which only a %s calls" % (names[index - 1].split("+", 1)[0],
                                                                           role), "entry point")
    role = CALLER_ROLES.get(caller)
    if role is not None:
        return RoleEvidence(role, "%s called it, which is how NDIS/WFP invoke a %s" % (
            names[index + 1].split("+", 1)[0], role), "entry point")
    function = _key(names[index]).split("!", 1)[-1]
    for hint, role in NAME_HINTS:
        if hint in function:
            return RoleEvidence(role, "its function name %s follows the WDK's naming for a %s" % (
                names[index].split("+", 1)[0], role), "name")
    return None


def module_roles(names: Sequence[str], modules: Sequence[Optional[str]], binary_of) -> List[Tuple[str, RoleEvidence]]:
    """(image name, evidence) for each third-party frame with a recognisable role, innermost first, one per
    module (its strongest). ``binary_of(debugger module name) -> image name``."""
    best = {}
    order: List[str] = []
    for index, module in enumerate(modules):
        if module is None:
            continue
        evidence = frame_role(names, index)
        if evidence is None:
            continue
        binary = binary_of(module)
        known = best.get(binary)
        if known is None:
            order.append(binary)
        if known is None or (known.strength == "name" and evidence.strength != "name"):
            best[binary] = evidence
    return [(binary, best[binary]) for binary in order]
