"""Blame from weighed evidence: who is the culprit, how sure, and the chain of reasoning (DESIGN 6).

Each layer (stack, pool, NBL/DOT11, forensics) adds ``Evidence`` items naming a binary with a weight. The
weights say how directly a kind of evidence shows a driver did it, not how often it is right on average:
memory the driver owns holding the corruption (a pool overrun from its block, a completion entry in its
block) weighs as much as its code faulting; being merely present on the stack weighs less; a Microsoft
module only ever gets the blame when no third party is named. Confidence comes from the best score and
from whether *independent* sources agree, then drops a level for each gap in what the dump let us see.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

WEIGHTS = {
    "faulting-ip": 50,          # the driver's own instruction faulted
    "dot11": 50,                # a DOT11 completion entry in the driver's memory
    "pool-overrun": 45,         # the driver's block overran into the broken one
    "guard-page": 45,           # special pool: the driver's allocation ran into its guard page
    "stack-exhaustion": 30,     # the biggest third-party stack user when a double fault exhausted the stack
    "wfp-pattern": 25,          # a callout injecting an NBL that NETIO then finds dereferenced
    "first-third-party-frame": 30,
    "network-role": 10,
    "third-party-frame": 10,
    "pool-owner": 10,           # a register/parameter points into the driver's pool block
    "freed-block": 15,
    "forensics": 15,            # the faulting instruction's own access is explained by a bad value
    "microsoft-fallback": 20,   # no third party named: the module the crash surfaced in
}
STACK_SOURCES = frozenset(("first-third-party-frame", "third-party-frame", "network-role", "stack-exhaustion",
                           "wfp-pattern"))
LEVELS = ("low", "medium", "high")


@dataclass
class Evidence:
    binary: str
    source: str
    text: str
    weight: int = 0

    def __post_init__(self) -> None:
        if not self.weight:
            self.weight = WEIGHTS[self.source]

    def to_json(self) -> dict:
        return {"binary": self.binary, "source": self.source, "weight": self.weight, "text": self.text}


@dataclass(frozen=True)
class Gap:
    """Something the dump did not let us see. ``undermines``: the evidence sources it weakens (None: all);
    confidence drops a level when the culprit's evidence includes one of them."""
    text: str
    undermines: Optional[frozenset] = None
    all_if_microsoft: bool = False     # weakens any blame of a Windows module (a hidden third party may be behind it)


@dataclass
class Verdict:
    binary: Optional[str]
    score: int
    confidence: str
    evidence: List[Evidence] = field(default_factory=list)
    lowered_by: List[str] = field(default_factory=list)


def score(evidence: List[Evidence]) -> Dict[str, int]:
    """Per binary: the sum of its evidence, each source counted once (its strongest item)."""
    best: Dict[str, Dict[str, int]] = {}
    for item in evidence:
        sources = best.setdefault(item.binary, {})
        sources[item.source] = max(sources.get(item.source, 0), item.weight)
    return {binary: sum(sources.values()) for binary, sources in best.items()}


def decide(evidence: List[Evidence], third_party, gaps: List[Gap]) -> Verdict:
    """The culprit: the best-scored third-party binary, else the best Microsoft one. ``third_party(binary)``
    says which is which; ``gaps`` are what the dump could not show, each lowering confidence one level."""
    totals = score(evidence)
    if not totals:
        return Verdict(None, 0, "low", [], [g.text for g in gaps])
    order = list(dict.fromkeys(item.binary for item in evidence))       # first named first, on ties
    outside = [b for b in order if third_party(b)]
    pool = outside or order
    binary = max(pool, key=lambda b: (totals[b], -order.index(b)))
    mine = [item for item in evidence if item.binary == binary]
    independent = len({item.source for item in mine if item.source not in ("network-role", "third-party-frame")})
    level = 2 if totals[binary] >= 70 and independent >= 2 else 1 if totals[binary] >= 40 else 0
    if not outside:
        level = min(level, 1)          # blaming Windows itself: never "high"
    sources = {item.source for item in mine}
    lowered = [g.text for g in gaps if g.undermines is None or g.undermines & sources
               or g.all_if_microsoft and not outside]
    level = max(0, level - min(2, len(lowered)))
    return Verdict(binary, totals[binary], LEVELS[level], sorted(mine, key=lambda e: -e.weight), lowered)
