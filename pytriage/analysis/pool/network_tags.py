"""Our own table of network-stack pool tags: which inbox binary allocates them and what role they play.

Why our own: ``pooltag.txt`` is the user's file and may be missing (air-gapped sites, CI); network
triage still has to recognise the inbox stack's own blocks (an NBL pool, an LWF's filter block, a WFP
injection context) to tell them apart from a third-party driver's. Tag -> binary facts match the
public tag lists; the role text is ours. ``nbl_pool`` marks tags whose blocks hold NET_BUFFER_LISTs,
which ``!nblwalk -l`` scans for.
"""

from dataclasses import dataclass
from typing import Dict, Optional

from pytriage.analysis.pool.header import tag_text


@dataclass(frozen=True)
class NetworkTag:
    tag: str
    binary: str
    role: str
    nbl_pool: bool = False


_TABLE = (
    ("NDnd", "ndis.sys", "NDIS pool (NBL/NB pools allocated through NdisAllocateNetBufferListPool)", True),
    ("NDnc", "ndis.sys", "NDIS NBL context area", False),
    ("NDtk", "ndis.sys", "NDIS NBL tracker (lost-packet diagnostics)", False),
    ("NDrt", "ndis.sys", "NDIS receive-side NBL", True),
    ("NDfb", "ndis.sys", "NDIS lightweight filter (LWF) module block", False),
    ("NDfv", "ndis.sys", "NDIS lightweight filter driver block", False),
    ("NDpf", "ndis.sys", "NDIS filter object", False),
    ("NDmo", "ndis.sys", "NDIS miniport open block", False),
    ("NDob", "ndis.sys", "NDIS protocol open block", False),
    ("NDpb", "ndis.sys", "NDIS protocol block", False),
    ("NDMb", "ndis.sys", "NDIS miniport block", False),
    ("NDre", "ndis.sys", "NDIS OID request", False),
    ("NDrw", "ndis.sys", "NDIS read-write lock", False),
    ("NDst", "ndis.sys", "NDIS string", False),
    ("NDch", "ndis.sys", "NDIS configuration handle", False),
    ("ND  ", "ndis.sys", "NDIS general allocation", False),
    ("Nnbl", "netio.sys", "NetIO NET_BUFFER_LIST", True),
    ("Nnbf", "netio.sys", "NetIO NET_BUFFER", True),
    ("Nnnn", "netio.sys", "NetIO combined NET_BUFFER_LIST and NET_BUFFER", True),
    ("Nbuf", "netio.sys", "NetIO MDL", False),
    ("WfpF", "netio.sys", "WFP filter", False),
    ("WfpC", "netio.sys", "WFP callout", False),
    ("Wfpn", "netio.sys", "WFP NBL info container", False),
    ("Fwpn", "fwpkclnt.sys", "WFP NBL info (injection)", False),
    ("Fwpi", "fwpkclnt.sys", "WFP injector", False),
    ("Fwpx", "fwpkclnt.sys", "WFP tagged NBL context", False),
    ("Fwpd", "fwpkclnt.sys", "WFP delayed injection context", False),
    ("Fwpc", "fwpkclnt.sys", "WFP injection call context", False),
    ("Wl2l", "wfplwfs.sys", "WFP layer-2 filter context", False),
    ("VsNb", "vmswitch.sys", "Hyper-V virtual switch NBL", True),
    ("VssM", "vmswitch.sys", "Hyper-V virtual switch miniport NIC", False),
    ("VssP", "vmswitch.sys", "Hyper-V virtual switch protocol NIC", False),
)

NETWORK_TAGS: Dict[str, NetworkTag] = {tag: NetworkTag(tag, binary, role, nbl) for tag, binary, role, nbl in _TABLE}


def network_tag(tag: int) -> Optional[NetworkTag]:
    return NETWORK_TAGS.get(tag_text(tag))
