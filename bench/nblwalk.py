"""NBL walk benchmark: NBLs walked per second and target bytes read per NBL.

Why this exists: inside a debugger over KDNET (~2 MB/s) a walk of a long send queue must read little:
the goal is under 1 KB of target reads per NBL for the structures alone (NBL, NET_BUFFER, MDL), which
the page cache makes possible because NDIS packs an NBL with its NET_BUFFER and MDL in one allocation
and several allocations in a page. The script builds one scenario: a 2000-NBL chain of Ethernet/IPv4/TCP
packets (the builder packs them in pool pages as NDIS would, packet buffers beside them), then walks it on
fresh targets, in the same run:

- structures only (``--no-packets --no-owners``): the floor a live walk costs;
- with packet bytes (``summaries``), and with the pool owners of every NBL and pool handle added;
- the same walk writing a pcapng file.

Every run is checked (2000 NBLs, complete, each packet's destination port). Run ``python bench/nblwalk.py``;
results are recorded in docs/performance.md.
"""

import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pytriage.analysis.function_table import UnwindCatalog  # noqa: E402
from pytriage.analysis.memory_owner import MemoryOwnerFinder  # noqa: E402
from pytriage.analysis.nbl.layouts import NblLayouts  # noqa: E402
from pytriage.analysis.nbl.pcapng import CapturedPacket, write_pcapng  # noqa: E402
from pytriage.analysis.nbl.walk import NblWalker, WalkOptions  # noqa: E402
from pytriage.analysis.pool.owners import listed_owners  # noqa: E402
from pytriage.scenarios import builtin_path  # noqa: E402
from pytriage.scenarios.builder import build_scenario  # noqa: E402
from pytriage.scenarios.spec import parse_spec  # noqa: E402
from pytriage.symbols.symbolizer import Symbolizer  # noqa: E402
from pytriage.target.offline import OfflineDumpTarget  # noqa: E402

COUNT = 2000


def _packet(index: int) -> str:
    """Ethernet + IPv4 + TCP SYN to port 1024 + index (checksums left zero: the walk does not need them)."""
    tcp = struct.pack(">HHIIBBHHH", 49152, 1024 + index, index, 0, 0x50, 0x02, 64240, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), index & 0xFFFF, 0, 128, 6, 0, bytes([10, 0, 0, 5]),
                     bytes([10, 0, 1, index % 250 + 1]))
    return (bytes.fromhex("00155d0a0b0c00155d0102030800") + ip + tcp).hex()


def _spec() -> dict:
    with open(builtin_path("nbl-zoo"), encoding="utf-8") as fh:
        doc = json.load(fh)
    nbls = []
    for i in range(COUNT):
        nbls.append({"id": "n%d" % i, "next": "@n%d" % (i + 1) if i + 1 < COUNT else None,
                     "pool_handle": "@ndis-pool", "source_handle": "@lwf-module", "flags": "0x500",
                     "net_buffers": [{"packet": {"hex": _packet(i)}}]})
    doc["nbl"] = {"area": "0xffffc08be2000000", "blocks": doc["nbl"]["blocks"][:3], "nbls": nbls}
    doc["physical_memory"]["runs"][1]["size"] = "128M"
    return doc


def _walk(built, **options):
    target = OfflineDumpTarget.open(built.dump_path)
    try:
        symbolizer = Symbolizer(target, isf_dirs=[built.symbols_path])
        target.modules()
        before = target.stats.bytes_read, target.stats.read_calls
        owners = {}

        def owners_of(tag):
            if tag not in owners:
                owners[tag] = listed_owners(target, tag, None)
            return owners[tag]

        finder = MemoryOwnerFinder(target, symbolizer, owners_of, UnwindCatalog(target))
        walker = NblWalker(target, NblLayouts(symbolizer), finder, WalkOptions(max_nbls=COUNT + 1, **options))
        started = time.perf_counter()
        result = walker.walk(built.nbl_addresses["n0"])
        seconds = time.perf_counter() - started
        assert len(result.nbls) == COUNT and result.complete, result.stop
        if options.get("packets", True):
            assert [n.net_buffers[0].summary.dport for n in result.nbls] == [1024 + i for i in range(COUNT)]
        return result, seconds, target.stats.bytes_read - before[0], target.stats.read_calls - before[1]
    finally:
        target.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pytriage-bench-nbl-") as tmp:
        started = time.perf_counter()
        built = build_scenario(parse_spec(_spec()), tmp, "bitmap")
        print("built a %d-NBL chain in %.1f s (%s)" % (COUNT, time.perf_counter() - started, built.dump_path))
        rows = []
        runs = [("structures only (--no-packets --no-owners)", {"packets": False, "owners": False}),
                ("with packet bytes and summaries (--no-owners)", {"owners": False}),
                ("with packets and pool owners (default)", {})]
        result = None
        for label, options in runs:
            result, seconds, read, calls = _walk(built, **options)
            rows.append([label, "%.0f" % (COUNT / seconds), "%.0f" % (read / COUNT), "%.2f" % (calls / COUNT)])
        packets = [CapturedPacket(n.net_buffers[0].packet.data, n.net_buffers[0].packet.length, "ethernet",
                                  "NBL %x" % n.address) for n in result.nbls]
        path = os.path.join(tmp, "walk.pcapng")
        started = time.perf_counter()
        write_pcapng(path, packets, 0.0)
        pcap_seconds = time.perf_counter() - started
        print(tabulate(rows, headers=["walk of %d NBLs" % COUNT, "NBLs/s", "target bytes/NBL", "read calls/NBL"],
                       tablefmt="github"))
        print("")
        print("pcapng: %d packets written in %.3f s (%.0f packets/s, %d bytes)" % (
            len(packets), pcap_seconds, len(packets) / pcap_seconds, os.path.getsize(path)))


if __name__ == "__main__":
    main()
