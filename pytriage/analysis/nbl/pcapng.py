"""Write the packets `!nblwalk` found to a pcapng file that Wireshark and tshark open.

The blocks come from dpkt.pcapng (dpkt is already a dependency and well kept; its block classes get
the pcapng padding, option lists and block-length trailers right): one Section Header Block naming
the application, one Interface Description Block per link type actually used (pcapng ties the link
type to the interface, and one dump can hold Ethernet frames above nwifi next to native 802.11 frames
below it), and one Enhanced Packet Block per packet, its comment naming the NBL it came from.

One thing is patched by hand: ``EnhancedPacketBlock.__bytes__`` sets the "original packet length"
to the captured length. A packet read from a crash dump is often only partly readable (its MDL chain
runs into a page that is not in the dump), and its real length (the NET_BUFFER's DataLength) is
exactly what an engineer wants to see next to the bytes we have; so the serialised block gets its
original-length field rewritten, as a capture tool's snaplen truncation would leave it.
"""

import os
import struct
from dataclasses import dataclass
from typing import Dict, List, Sequence

import dpkt

from pytriage.analysis.nbl.packet import LINK_80211, LINK_ETHERNET, LINK_RAW_IP, LINK_UNKNOWN
from pytriage.errors import PytriageError

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101          # raw IPv4/IPv6, version nibble first (pcap's DLT_RAW numbering differs by OS)
LINKTYPE_IEEE802_11 = 105   # 802.11 MAC frames without radio header and without FCS, as nwifi passes them
LINKTYPE_USER0 = 147        # "private use": bytes no link layer fits; Wireshark shows them as data

LINKTYPES = {LINK_ETHERNET: LINKTYPE_ETHERNET, LINK_80211: LINKTYPE_IEEE802_11, LINK_RAW_IP: LINKTYPE_RAW,
             LINK_UNKNOWN: LINKTYPE_USER0}

# Wireshark refuses a file holding a packet longer than this (WTAP_MAX_PACKET_SIZE_STANDARD); larger
# NBL data (LSO/GSO sends reach 256 KiB) is cut here and keeps its original length.
MAX_CAPTURED = 262144
_SNAPLEN_UNLIMITED = 0
_MICROSECONDS = 1000000     # no if_tsresol option: pcapng's default resolution, 10^-6 s
_MAX_UINT32 = 0xFFFFFFFF

# The EPB header is seven 32-bit fields (type, block length, interface, timestamp high and low,
# captured length, original length, then the trailing block length); pkt_len's offset follows from
# dpkt's own field list so a reordering there cannot silently corrupt other fields.
_EPB = dpkt.pcapng.EnhancedPacketBlockLE
_EPB_PKT_LEN_OFFSET = struct.calcsize(_EPB.__hdr_fmt__[:1 + _EPB.__hdr_fields__.index("pkt_len")])


@dataclass
class CapturedPacket:
    """One packet to write: the bytes we could read, its real length, its link layer and a comment."""

    data: bytes             # captured bytes
    length: int             # original length (>= len(data)); pcapng EPB "original packet length"
    link: str               # a packet.LINK_* value; LINK_UNKNOWN goes on a LINKTYPE_USER0 interface
    comment: str            # per-packet comment, e.g. "NBL ffffc08b`e0401010 NB#0"


def write_pcapng(path: str, packets: Sequence[CapturedPacket], timestamp: float,
                 application: str = "pytriage") -> Dict[str, int]:
    """Write ``packets`` to ``path`` as pcapng, all stamped ``timestamp`` (the crash time, Unix seconds).

    The file appears complete or not at all: it is written to ``path + ".tmp"`` and renamed over
    ``path``. Returns how many packets went out per link type (LINK_* name -> count). An unknown link
    name raises ValueError (a caller bug); an OSError becomes a one-line PytriageError.
    """
    for packet in packets:
        if packet.link not in LINKTYPES:
            raise ValueError("unknown link type %r for packet %r" % (packet.link, packet.comment))
    links: List[str] = []
    for packet in packets:
        if packet.link not in links:
            links.append(packet.link)
    interface = {link: index for index, link in enumerate(links)}
    blocks = [_section_header(application)] + [_interface(link) for link in links]
    blocks += [_packet_block(packet, interface[packet.link], timestamp) for packet in packets]
    _write_atomically(path, b"".join(blocks))
    counts: Dict[str, int] = {}
    for packet in packets:
        counts[packet.link] = counts.get(packet.link, 0) + 1
    return counts


def _options(*options: dpkt.pcapng.PcapngOptionLE) -> List[dpkt.pcapng.PcapngOptionLE]:
    return list(options) + [dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT)]


def _text_option(code: int, text: str) -> dpkt.pcapng.PcapngOptionLE:
    return dpkt.pcapng.PcapngOptionLE(code=code, data=text.encode("utf-8"))


def _section_header(application: str) -> bytes:
    shb = dpkt.pcapng.SectionHeaderBlockLE(
        opts=_options(_text_option(dpkt.pcapng.PCAPNG_OPT_SHB_USERAPPL, application)))
    return bytes(shb)


def _interface(link: str) -> bytes:
    """One IDB per link type; its name says which kind of NBL data it carries."""
    idb = dpkt.pcapng.InterfaceDescriptionBlockLE(
        linktype=LINKTYPES[link], snaplen=_SNAPLEN_UNLIMITED,
        opts=_options(_text_option(dpkt.pcapng.PCAPNG_OPT_IF_NAME, "nbl-%s" % link)))
    return bytes(idb)


def _packet_block(packet: CapturedPacket, interface: int, timestamp: float) -> bytes:
    data = bytes(packet.data[:MAX_CAPTURED])
    length = min(max(int(packet.length), len(packet.data)), _MAX_UINT32)
    ticks = max(int(round(timestamp * _MICROSECONDS)), 0)
    options = [_text_option(dpkt.pcapng.PCAPNG_OPT_COMMENT, packet.comment)] if packet.comment else []
    epb = _EPB(iface_id=interface, ts_high=ticks >> 32, ts_low=ticks & _MAX_UINT32, pkt_data=data,
               opts=_options(*options))
    block = bytearray(bytes(epb))
    # dpkt wrote original length = captured length; restore the real one (see module docstring).
    struct.pack_into("<I", block, _EPB_PKT_LEN_OFFSET, length)
    return bytes(block)


def _write_atomically(path: str, content: bytes) -> None:
    temporary = path + ".tmp"
    try:
        with open(temporary, "wb") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise PytriageError("cannot write pcapng file %s: %s" % (path, exc.strerror or exc)) from None
