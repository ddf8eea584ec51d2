"""Tag -> owner candidates, each with the evidence it rests on.

Three independent sources: the image scan (a loaded driver whose code uses the tag as an instruction
immediate), the user's ``pooltag.txt`` and our network-stack tag table; commands show scan hits first.
A scan hit is the strongest evidence because it comes from this machine's own binaries; a pooltag.txt
line names a binary that may not even be loaded, which the candidate says. The listed sources cost no
reads, so the command asks them first and scans only when they name no loaded binary.
"""

from dataclasses import dataclass
from typing import List, Optional

from pytriage.analysis.pool.image_scan import TagScan
from pytriage.analysis.pool.network_tags import network_tag
from pytriage.analysis.pool.pooltag_file import PoolTagFile


@dataclass
class OwnerCandidate:
    source: str                      # "image scan", "pooltag.txt", "network table"
    binary: str
    detail: str
    loaded: Optional[bool] = None    # is that binary loaded in the target (None: cannot tell)

    def to_json(self) -> dict:
        return {"source": self.source, "binary": self.binary, "detail": self.detail, "loaded": self.loaded}


def _loaded(target, binary: str) -> Optional[bool]:
    name = binary.strip().lower()
    if not name or name.startswith("<") or "!" in name or not name.endswith((".sys", ".dll", ".exe")):
        return None
    return any(m.name.lower() == name for m in target.modules())


def scan_owners(scan: TagScan) -> List[OwnerCandidate]:
    """One candidate per instruction the image scan kept (loaded by definition: it is in the target)."""
    owners = []
    for use in scan.uses:
        detail = "%s: %s [%s], %s" % (use.symbol, use.instruction, use.encoding, use.role)
        if use.call:
            detail += "; then calls %s" % use.call
        if not use.confirmed:
            detail += " (no unwind data covers this code: decoded without a known function start)"
        owners.append(OwnerCandidate("image scan", use.image, detail, True))
    return owners


def listed_owners(target, tag: int, pooltag: Optional[PoolTagFile]) -> List[OwnerCandidate]:
    """What pooltag.txt and our network table say of the tag (no target reads beyond the module list)."""
    owners: List[OwnerCandidate] = []
    if pooltag is not None:
        exact = pooltag.lookup(tag)
        for entry in exact or pooltag.lookup_prefix(tag):
            prefix = "" if exact else "prefix %r only: " % entry.tag.rstrip()
            owners.append(OwnerCandidate("pooltag.txt", entry.binary or "<unknown>",
                                         "%s%s (%s line %d)" % (prefix, entry.description, pooltag.path, entry.line),
                                         _loaded(target, entry.binary) if exact else None))
    known = network_tag(tag)
    if known is not None:
        owners.append(OwnerCandidate("network table", known.binary, known.role, _loaded(target, known.binary)))
    return owners
