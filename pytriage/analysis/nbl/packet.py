"""One-line summaries of the packets a NET_BUFFER_LIST carries, decoded with dpkt.

`!nblwalk` reads a NET_BUFFER's bytes out of a crash dump and has to say in one line what the packet
was: which link layer, which addresses, which TCP flags or DNS name. The bytes come from a dying
machine, so anything can be in them: a packet cut short where its MDL chain stops being readable, a
pool block reused for something else, a header a broken filter driver half-rewrote. ``summarize``
therefore decodes layer by layer and stops where the bytes stop making sense, saying why in
``notes``; it never raises on bad bytes.

dpkt (already a dependency, small, pure Python, still maintained) supplies the header layouts:
every layer is unpacked with ``_header``, which takes only the fixed header of a dpkt class. dpkt's
own constructors also decode every layer below, and some of them raise on payloads that merely
look odd (a short VLAN tag, an 802.11 data subtype they do not know), which would cost us the layers
that did decode; walking the layers ourselves keeps every layer that the bytes support. dpkt's DNS
parser is used whole, because name compression is where a hand-written parser goes wrong.

Transport checksums are not checked: on the send path the stack leaves them to checksum offload,
so most outgoing NBLs carry a zero or partial checksum and a note would be noise. The IPv4 header
checksum is checked (and a zero one reported as left to offload, not as wrong).

Text format (one line, stable; the tests assert it)::

    <link>[, <network>][ (truncated: CAPTURED of LENGTH bytes)]

link:
    ``Ethernet SRC > DST`` with `` VLAN ID`` (`` VLAN OUTER/INNER`` for QinQ) after it when tagged;
    ``802.11 <subtype> SA > DA (BSSID B, ToDS)`` for data frames: ToDS, FromDS, or nothing (IBSS);
    a WDS frame (both bits) prints ``(RA R, TA T, WDS)``; ``, protected`` / ``, A-MSDU`` end the
    parenthesis when set (the body is then not decoded);
    ``802.11 <management subtype> SA > DA (BSSID B)``;
    ``802.11 <control subtype> TA > RA``, or ``802.11 <control subtype> to RA`` when it has no TA;
    ``unknown N bytes: <first 16 bytes in hex>...`` when no link layer fits.
    The raw-IP link has no link segment: the text starts at the network segment.

network:
    ``IPv4 SRC:SPORT > DST:DPORT <transport>`` (``SRC > DST`` without ports);
    ``IPv6 [SRC]:SPORT > [DST]:DPORT <transport>`` (``SRC > DST`` without ports);
    ``ARP who-has TPA tell SPA``, ``ARP reply SPA is-at SHA``, ``ARP op=N SPA > TPA``;
    ``EAPOL``, ``LLDP`` ..., ``EtherType 0xNNNN`` (not decoded), ``LLC dsap=0xNN ssap=0xNN``.

transport:
    ``TCP [SYN, ACK] seq=N ack=N win=N len=N`` (flags named and ordered as tshark does, ``[<None>]``
    when none; ``ack=`` only with ACK; ``len`` is the payload length the IP header announces);
    ``UDP len=N`` then, on port 53, `` DNS query A example.com`` or
    `` DNS response A example.com rcode=NXDOMAIN answers=N`` (rcode only when not NOERROR);
    ``ICMP echo request type=8 code=0 id=N seq=N``; ``ICMPv6 neighbor solicitation type=135 code=0
    target=fe80::2`` (the name is left out for types we do not name);
    ``GRE len=N`` / ``protocol N len=N`` for IP protocols we do not decode;
    ``UDP fragment offset=N`` for a non-first IP fragment.

A layer whose header is cut short prints ``<layer> (truncated header)``, one whose header is
impossible ``<layer> (malformed header)``; the notes say which bytes. Examples (each one line, the
first two wrapped here)::

    Ethernet 00:15:5d:01:02:03 > 00:15:5d:0a:0b:0c, IPv4 10.0.0.5:49712 > 93.184.216.34:443 TCP [SYN]
        seq=1000 win=64240 len=0
    Ethernet 00:15:5d:01:02:03 > 00:15:5d:0a:0b:0c, IPv4 10.0.0.5:53001 > 10.0.0.1:53 UDP len=29
        DNS query A example.com
    802.11 QoS Data 02:00:00:00:01:00 > 02:00:00:00:00:10 (BSSID 02:00:00:00:00:10, ToDS), IPv4 ...
    IPv4 10.0.0.5 > 8.8.8.8 ICMP echo request type=8 code=0 id=1 seq=7
    Ethernet 00:15:5d:01:02:03 > 00:15:5d:0a:0b:0c, IPv4 (truncated header) (truncated: 20 of 74 bytes)
    unknown 64 bytes: 4d5a90000300000004000000ffff0000...
"""

import ipaddress
import struct
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Type, TypeVar, Union

import dpkt

LINK_ETHERNET = "ethernet"
LINK_80211 = "802.11"
LINK_RAW_IP = "ip"
LINK_UNKNOWN = "unknown"
_LINKS = (LINK_ETHERNET, LINK_80211, LINK_RAW_IP, LINK_UNKNOWN)

# What dpkt and struct raise on bytes that are not what their header says (NeedData is an UnpackError;
# UnicodeDecodeError, from DNS names, is a ValueError).
_DECODE_ERRORS = (dpkt.UnpackError, IndexError, KeyError, ValueError, TypeError, struct.error)

ETH_IPV4, ETH_ARP, ETH_VLAN, ETH_IPV6, ETH_QINQ = 0x0800, 0x0806, 0x8100, 0x86DD, 0x88A8
_ETHERTYPES_KNOWN = frozenset([ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_VLAN, ETH_QINQ, 0x888E, 0x88CC])
_ETHERTYPE_NAMES = {0x888E: "EAPOL", 0x88CC: "LLDP", 0x8035: "RARP", 0x8863: "PPPoE-Discovery",
                    0x8864: "PPPoE", 0x8847: "MPLS", 0x8848: "MPLS", 0x88B4: "WAI", 0x890D: "TDLS"}

IP_ICMP, IP_TCP, IP_UDP, IP_ICMPV6 = 1, 6, 17, 58
_IP_PROTO_NAMES = {1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP",
                   51: "AH", 58: "ICMPv6", 59: "no-next-header", 132: "SCTP"}
_IPV6_EXT_HOP, _IPV6_EXT_ROUTING, _IPV6_EXT_FRAGMENT, _IPV6_EXT_AH, _IPV6_EXT_DSTOPTS = 0, 43, 44, 51, 60
_IPV6_EXT_HEADERS = frozenset([_IPV6_EXT_HOP, _IPV6_EXT_ROUTING, _IPV6_EXT_FRAGMENT, _IPV6_EXT_AH,
                               _IPV6_EXT_DSTOPTS])
_IPV6_NEXT_PLAUSIBLE = frozenset([0, 6, 17, 43, 44, 50, 51, 58, 59, 60])
_IPV4_PROTO_PLAUSIBLE = frozenset([1, 2, 6, 17, 47, 50, 51, 132])

# TCP flag bits in tshark's order and spelling ("[SYN, ACK]", "[FIN, PSH, ACK]").
_TCP_FLAGS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"), (0x20, "URG"),
              (0x40, "ECE"), (0x80, "CWR"), (0x100, "NS"))

_ICMP_TYPES = {0: "echo reply", 3: "destination unreachable", 4: "source quench", 5: "redirect",
               8: "echo request", 9: "router advertisement", 10: "router solicitation", 11: "time exceeded",
               12: "parameter problem", 13: "timestamp request", 14: "timestamp reply"}
_ICMPV6_TYPES = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem",
                 128: "echo request", 129: "echo reply", 130: "multicast listener query",
                 131: "multicast listener report", 132: "multicast listener done", 133: "router solicitation",
                 134: "router advertisement", 135: "neighbor solicitation", 136: "neighbor advertisement",
                 137: "redirect", 143: "multicast listener report v2"}
_ICMP_ECHO, _ICMPV6_ECHO, _ICMPV6_ND = (0, 8), (128, 129), (135, 136)

_DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
              35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 64: "SVCB",
              65: "HTTPS", 252: "AXFR", 255: "ANY"}
_DNS_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
DNS_PORT = 53

# 802.11 frame control, byte 0: version (bits 0-1), type (2-3), subtype (4-7); byte 1: flags.
DOT11_MGMT, DOT11_CTRL, DOT11_DATA = 0, 1, 2
_DOT11_TO_DS, _DOT11_FROM_DS, _DOT11_PROTECTED, _DOT11_ORDER = 0x01, 0x02, 0x40, 0x80
_DOT11_HEADER = 24                  # frame control, duration, three addresses, sequence control
_DOT11_MAX_MGMT = 2400              # a management frame's body is at most 2304 bytes (plus IEs slack)
_DOT11_MAX_CTRL = 160               # the longest control frame, a basic Block Ack, is 152 bytes
_DOT11_MGMT_NAMES = {0: "Association Request", 1: "Association Response", 2: "Reassociation Request",
                     3: "Reassociation Response", 4: "Probe Request", 5: "Probe Response",
                     6: "Timing Advertisement", 8: "Beacon", 9: "ATIM", 10: "Disassociation",
                     11: "Authentication", 12: "Deauthentication", 13: "Action", 14: "Action No Ack"}
# Control subtype -> (name, minimum length, has a transmitter address).
_DOT11_CTRL_FRAMES = {8: ("Block Ack Request", 20, True), 9: ("Block Ack", 20, True), 10: ("PS-Poll", 16, True),
                      11: ("RTS", 16, True), 12: ("CTS", 10, False), 13: ("ACK", 10, False),
                      14: ("CF-End", 16, True), 15: ("CF-End+CF-Ack", 16, True)}
_DOT11_DATA_NAMES = ("Data", "Data+CF-Ack", "Data+CF-Poll", "Data+CF-Ack+CF-Poll", "Null", "CF-Ack", "CF-Poll",
                     "CF-Ack+CF-Poll", "QoS Data", "QoS Data+CF-Ack", "QoS Data+CF-Poll",
                     "QoS Data+CF-Ack+CF-Poll", "QoS Null", "Reserved", "QoS CF-Poll", "QoS CF-Ack+CF-Poll")
_DOT11_FCS = 4

_HEX_PREVIEW = 16
_MAX_DETAIL = 60


@dataclass
class PacketSummary:
    """What one packet is, as far as its readable bytes tell (format in the module docstring)."""

    link: str                      # one of the LINK_* values
    text: str                      # the one-line summary
    protocols: List[str]           # decoded layers, outermost first: ["ethernet", "ipv4", "tcp"]
    src: Optional[str] = None      # network-layer addresses (IPv4 dotted, IPv6 as ipaddress prints it)
    dst: Optional[str] = None
    sport: Optional[int] = None
    dport: Optional[int] = None
    captured: int = 0              # bytes we have
    length: int = 0                # bytes the packet really has (NET_BUFFER DataLength); >= captured
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """Every field, JSON-ready (only str, int, None and lists of str)."""
        return asdict(self)


class _Walk:
    """What the layer decoders found so far; each decoder appends its segment, protocol and notes."""

    def __init__(self) -> None:
        self.segments: List[str] = []
        self.protocols: List[str] = []
        self.notes: List[str] = []
        self.src: Optional[str] = None
        self.dst: Optional[str] = None
        self.sport: Optional[int] = None
        self.dport: Optional[int] = None


_P = TypeVar("_P", bound=dpkt.Packet)


def _header(cls: Type[_P], buf: bytes, layer: str, walk: _Walk, segment: bool = False) -> Optional[_P]:
    """Unpack only the fixed header of dpkt class ``cls`` from ``buf``; None (and a note) when too short,
    and with ``segment`` the ``<layer> (truncated header)`` segment as well.

    ``dpkt.Packet.unpack`` fills the header fields and leaves the rest in ``.data`` without decoding the
    next layer, which is what lets the walk keep every layer the bytes support (see module docstring).
    """
    need = cls.__hdr_len__
    if len(buf) < need:
        walk.notes.append("%s header truncated: %d of %d bytes" % (layer, len(buf), need))
        if segment:
            walk.segments.append("%s (truncated header)" % layer)
        return None
    packet = cls()
    dpkt.Packet.unpack(packet, buf)
    return packet


def _mac(raw: bytes) -> str:
    return ":".join("%02x" % b for b in raw)


def _printable(text: str) -> str:
    """Packet-supplied text (a DNS name) made safe for one line: every byte of anything that is not
    printable ASCII (space included, so the text still splits on spaces) as ``\\xNN``."""
    return "".join(c if " " < c <= "~" else "".join("\\x%02x" % b for b in c.encode("utf-8", "surrogatepass"))
                   for c in text)


def _endpoint(address: str, port: Optional[int], ipv6: bool) -> str:
    if port is None:
        return address
    return ("[%s]:%d" if ipv6 else "%s:%d") % (address, port)


def _hex_preview(data: bytes) -> str:
    return data[:_HEX_PREVIEW].hex() + ("..." if len(data) > _HEX_PREVIEW else "")


# ---------------------------------------------------------------------------------------------- guessing

def guess_link(data: bytes) -> str:
    """The link layer ``data`` most likely starts with, for an NBL whose miniport medium is unknown.

    Order and why: Ethernet first, because nearly every NBL in a Windows dump is an Ethernet frame: NDIS
    hands Ethernet (802.3) frames to protocols and filters above nwifi and above every wired miniport, and
    bytes 12-13 holding a known EtherType is strong evidence. Native 802.11 frames exist only below nwifi
    (between nwifi and a Wi-Fi miniport); their frame control byte is checked next, and only frames whose
    length fits their type pass (a data subtype without a body must be header-only). Raw IP last: only
    WAN and IP-medium miniports (mobile broadband, VPN adapters) carry it, and it is recognised by a
    consistent IPv4 header (checksum right, or zero because it is left to offload) or IPv6 header. An
    unknown EtherType >= 0x0600 still counts as Ethernet when dpkt can parse the payload as that type.
    Callers that know the miniport's medium should pass ``link`` to ``summarize`` instead.
    """
    data = bytes(data)
    if _looks_ethernet(data):
        return LINK_ETHERNET
    if _looks_dot11(data):
        return LINK_80211
    if _looks_raw_ip(data):
        return LINK_RAW_IP
    return LINK_UNKNOWN


def _looks_ethernet(data: bytes) -> bool:
    if len(data) < 14:
        return False
    ethertype = struct.unpack_from(">H", data, 12)[0]
    if ethertype in _ETHERTYPES_KNOWN:
        return True
    if ethertype < 0x0600:
        return False
    try:
        dpkt.ethernet.Ethernet.get_type(ethertype)(data[14:])
    except Exception:  # a probe: however dpkt's parser for that type fails, the answer is "not Ethernet"
        return False
    return True


def _dot11_data_header_length(fc0: int, fc1: int) -> int:
    """Header length of an 802.11 data frame: WDS adds a fourth address, QoS a control field, +HTC 4 bytes."""
    length = _DOT11_HEADER
    if fc1 & _DOT11_TO_DS and fc1 & _DOT11_FROM_DS:
        length += 6
    if (fc0 >> 4) & 0x8:
        length += 2
        if fc1 & _DOT11_ORDER:
            length += 4
    return length


def _looks_dot11(data: bytes) -> bool:
    if len(data) < 10 or data[0] & 0x3:
        return False
    ftype, subtype = (data[0] >> 2) & 0x3, data[0] >> 4
    if ftype == DOT11_DATA:
        header = _dot11_data_header_length(data[0], data[1])
        if len(data) < header:
            return False
        return not subtype & 0x4 or len(data) - header in (0, _DOT11_FCS)
    if ftype == DOT11_MGMT:
        return subtype in _DOT11_MGMT_NAMES and _DOT11_HEADER <= len(data) <= _DOT11_MAX_MGMT
    if ftype == DOT11_CTRL and subtype in _DOT11_CTRL_FRAMES:
        return _DOT11_CTRL_FRAMES[subtype][1] <= len(data) <= _DOT11_MAX_CTRL
    return False


def _looks_raw_ip(data: bytes) -> bool:
    if not data:
        return False
    if data[0] >> 4 == 4:
        ihl = (data[0] & 0xF) * 4
        if ihl < 20 or len(data) < ihl or struct.unpack_from(">H", data, 2)[0] < ihl:
            return False
        checksum = struct.unpack_from(">H", data, 10)[0]
        if checksum == 0:
            return data[9] in _IPV4_PROTO_PLAUSIBLE
        return dpkt.in_cksum(data[:ihl]) == 0
    if data[0] >> 4 == 6 and len(data) >= 40:
        payload_length = struct.unpack_from(">H", data, 4)[0]
        consistent = payload_length == 0 or 40 + payload_length >= len(data)
        return consistent and data[6] in _IPV6_NEXT_PLAUSIBLE
    return False


# ---------------------------------------------------------------------------------------------- summaries

def summarize(data: bytes, length: Optional[int] = None, link: Optional[str] = None) -> PacketSummary:
    """Decode ``data`` (the readable bytes of a packet of ``length`` bytes) into a one-line summary.

    ``link`` is a LINK_* value when the caller knows the medium, else ``guess_link`` picks one. A
    ``length`` below ``len(data)`` is taken as ``len(data)``. Never raises on bad bytes: what could not
    be decoded is said in ``notes`` (an unknown ``link`` name is a caller bug and raises ValueError).
    """
    data = bytes(data)
    captured = len(data)
    length = captured if length is None else max(int(length), captured)
    if link is None:
        link = guess_link(data)
    elif link not in _LINKS:
        raise ValueError("unknown link type %r (expected one of %s)" % (link, ", ".join(_LINKS)))
    walk = _Walk()
    try:
        _LINK_DECODERS[link](walk, data)
    except Exception as exc:  # a damaged packet must never stop a triage: keep the layers decoded so far
        walk.notes.append("internal decoder error: %s: %s" % (type(exc).__name__, exc))
    text = ", ".join(walk.segments) if walk.segments else "%s %d bytes" % (link, captured)
    if captured < length:
        text += " (truncated: %d of %d bytes)" % (captured, length)
        walk.notes.insert(0, "truncated: %d of %d bytes readable" % (captured, length))
    return PacketSummary(link=link, text=text, protocols=walk.protocols, src=walk.src, dst=walk.dst,
                         sport=walk.sport, dport=walk.dport, captured=captured, length=length, notes=walk.notes)


def _unknown(walk: _Walk, data: bytes) -> None:
    walk.segments.append("unknown %d bytes" % len(data) + (": " + _hex_preview(data) if data else ""))


def _raw_ip(walk: _Walk, data: bytes) -> None:
    version = data[0] >> 4 if data else None
    if version == 6:
        _ipv6(walk, data)
    elif version == 4:
        _ipv4(walk, data)
    else:
        walk.notes.append("not an IP packet: version nibble %s" % ("missing" if version is None else version))
        _unknown(walk, data)


# ---------------------------------------------------------------------------------------------- link layers

def _ethernet(walk: _Walk, data: bytes) -> None:
    eth = _header(dpkt.ethernet.Ethernet, data, "Ethernet", walk, segment=True)
    if eth is None:
        return
    walk.protocols.append("ethernet")
    segment = "Ethernet %s > %s" % (_mac(eth.src), _mac(eth.dst))
    ethertype, payload, vlans = eth.type, eth.data, []
    while ethertype in (ETH_VLAN, ETH_QINQ) and len(vlans) < 2:
        tag = _header(dpkt.ethernet.VLANtag8021Q, payload, "802.1Q tag", walk)
        if tag is None:
            walk.segments.append(segment + " VLAN (truncated tag)")
            return
        vlans.append(tag.id)
        ethertype, payload = tag.type, tag.data
    if vlans:
        walk.protocols.append("vlan")
        segment += " VLAN " + "/".join(str(v) for v in vlans)
    walk.segments.append(segment)
    if ethertype < 0x0600:          # 802.3 length field: an LLC header follows, padding may trail it
        _llc(walk, payload[:ethertype])
    else:
        _ethertype(walk, ethertype, payload)


def _dot11(walk: _Walk, data: bytes) -> None:
    if len(data) < 2:
        walk.notes.append("802.11 frame control truncated: %d of 2 bytes" % len(data))
        walk.segments.append("802.11 (truncated header)")
        return
    ftype, subtype = (data[0] >> 2) & 0x3, data[0] >> 4
    if data[0] & 0x3:
        walk.notes.append("802.11 protocol version %d (only 0 exists)" % (data[0] & 0x3))
        walk.segments.append("802.11 (malformed header)")
    elif ftype == DOT11_DATA:
        _dot11_data(walk, data, subtype)
    elif ftype == DOT11_MGMT:
        _dot11_management(walk, data, subtype)
    elif ftype == DOT11_CTRL:
        _dot11_control(walk, data, subtype)
    else:
        walk.protocols.append("802.11")
        walk.segments.append("802.11 Extension subtype %d" % subtype)


def _dot11_data(walk: _Walk, data: bytes, subtype: int) -> None:
    """Address roles follow To/From DS (IEEE 802.11-2020 table 9-30); dpkt's per-case classes name them."""
    name, fc1 = _DOT11_DATA_NAMES[subtype], data[1]
    header_length = _dot11_data_header_length(data[0], fc1)
    if len(data) < header_length:
        walk.notes.append("802.11 header truncated: %d of %d bytes" % (len(data), header_length))
        walk.segments.append("802.11 %s (truncated header)" % name)
        return
    walk.protocols.append("802.11")
    ieee = dpkt.ieee80211.IEEE80211
    to_ds, from_ds = bool(fc1 & _DOT11_TO_DS), bool(fc1 & _DOT11_FROM_DS)
    if to_ds and from_ds:
        # dpkt's DataInterDS calls addresses 1-4 dst, src, da, sa: receiver, transmitter, DA, SA.
        wds = _header(ieee.DataInterDS, data[4:], "802.11", walk)
        sa, da, roles = wds.sa, wds.da, ["RA %s" % _mac(wds.dst), "TA %s" % _mac(wds.src), "WDS"]
    else:
        cls = ieee.DataToDS if to_ds else ieee.DataFromDS if from_ds else ieee.Data
        addresses = _header(cls, data[4:], "802.11", walk)
        sa, da, roles = addresses.src, addresses.dst, ["BSSID %s" % _mac(addresses.bssid)]
        roles += ["ToDS"] if to_ds else ["FromDS"] if from_ds else []
    amsdu = bool(subtype & 0x8) and bool(data[header_length - (6 if fc1 & _DOT11_ORDER else 2)] & 0x80)
    roles += ["protected"] if fc1 & _DOT11_PROTECTED else []
    roles += ["A-MSDU"] if amsdu else []
    walk.segments.append("802.11 %s %s > %s (%s)" % (name, _mac(sa), _mac(da), ", ".join(roles)))
    body = data[header_length:]
    if subtype & 0x4 or not body:
        return
    if fc1 & _DOT11_PROTECTED:
        walk.notes.append("802.11 body encrypted: not decoded")
    elif amsdu:
        walk.notes.append("802.11 A-MSDU: subframes not decoded")
    elif struct.unpack_from("<H", data, 22)[0] & 0xF:
        walk.notes.append("802.11 fragment %d: not decoded" % (data[22] & 0xF))
    else:
        _llc(walk, body)


def _dot11_management(walk: _Walk, data: bytes, subtype: int) -> None:
    name = _DOT11_MGMT_NAMES.get(subtype, "Management subtype %d" % subtype)
    frame = _header(dpkt.ieee80211.IEEE80211.MGMT_Frame, data[4:], "802.11", walk)
    if frame is None:
        walk.segments.append("802.11 %s (truncated header)" % name)
        return
    walk.protocols.append("802.11")
    walk.segments.append("802.11 %s %s > %s (BSSID %s)" % (name, _mac(frame.src), _mac(frame.dst),
                                                          _mac(frame.bssid)))


def _dot11_control(walk: _Walk, data: bytes, subtype: int) -> None:
    name, minimum, has_ta = _DOT11_CTRL_FRAMES.get(subtype, ("Control subtype %d" % subtype, 10, False))
    if len(data) < minimum:
        walk.notes.append("802.11 %s truncated: %d of %d bytes" % (name, len(data), minimum))
        walk.segments.append("802.11 %s (truncated header)" % name)
        return
    walk.protocols.append("802.11")
    if has_ta:
        walk.segments.append("802.11 %s %s > %s" % (name, _mac(data[10:16]), _mac(data[4:10])))
    else:
        walk.segments.append("802.11 %s to %s" % (name, _mac(data[4:10])))


def _llc(walk: _Walk, data: bytes) -> None:
    """802.2 LLC; with SNAP (AA-AA-03) the EtherType that follows says what the payload is."""
    llc = _header(dpkt.llc.LLC, data, "LLC", walk, segment=True)
    if llc is None:
        return
    walk.protocols.append("llc")
    if not llc.is_snap:
        walk.segments.append("LLC dsap=0x%02x ssap=0x%02x" % (llc.dsap, llc.ssap))
        return
    if len(llc.data) < 5:
        walk.notes.append("SNAP header truncated: %d of 5 bytes" % len(llc.data))
        walk.segments.append("LLC/SNAP (truncated header)")
        return
    _ethertype(walk, struct.unpack_from(">H", llc.data, 3)[0], llc.data[5:])


def _ethertype(walk: _Walk, ethertype: int, payload: bytes) -> None:
    if ethertype == ETH_IPV4:
        _ipv4(walk, payload)
    elif ethertype == ETH_IPV6:
        _ipv6(walk, payload)
    elif ethertype == ETH_ARP:
        _arp(walk, payload)
    elif ethertype in _ETHERTYPE_NAMES:
        walk.protocols.append(_ETHERTYPE_NAMES[ethertype].lower())
        walk.segments.append(_ETHERTYPE_NAMES[ethertype])
    else:
        walk.segments.append("EtherType 0x%04x" % ethertype)


# ---------------------------------------------------------------------------------------------- network layers

def _arp(walk: _Walk, data: bytes) -> None:
    arp = _header(dpkt.arp.ARP, data, "ARP", walk, segment=True)
    if arp is None:
        return
    walk.protocols.append("arp")
    if (arp.hrd, arp.pro, arp.hln, arp.pln) != (1, ETH_IPV4, 6, 4):
        walk.segments.append("ARP hrd=%d pro=0x%04x op=%d" % (arp.hrd, arp.pro, arp.op))
        return
    walk.src, walk.dst = str(ipaddress.IPv4Address(arp.spa)), str(ipaddress.IPv4Address(arp.tpa))
    if arp.op == 1:
        walk.segments.append("ARP who-has %s tell %s" % (walk.dst, walk.src))
    elif arp.op == 2:
        walk.segments.append("ARP reply %s is-at %s" % (walk.src, _mac(arp.sha)))
    else:
        walk.segments.append("ARP op=%d %s > %s" % (arp.op, walk.src, walk.dst))


def _ipv4(walk: _Walk, data: bytes) -> None:
    ip = _header(dpkt.ip.IP, data, "IPv4", walk, segment=True)
    if ip is None:
        return
    ihl = ip.hl * 4
    if ip.v != 4 or ihl < 20:
        walk.notes.append("IPv4 header malformed: version %d, header length %d" % (ip.v, ihl))
        walk.segments.append("IPv4 (malformed header)")
        return
    walk.protocols.append("ipv4")
    walk.src, walk.dst = str(ipaddress.IPv4Address(ip.src)), str(ipaddress.IPv4Address(ip.dst))
    if len(data) < ihl:
        walk.notes.append("IPv4 options truncated: %d of %d header bytes" % (len(data), ihl))
        walk.segments.append("IPv4 %s > %s (truncated header)" % (walk.src, walk.dst))
        return
    _ipv4_checksum_note(walk, ip.sum, data[:ihl])
    if ip.len == 0:                 # large send offload leaves the total length to the NIC
        walk.notes.append("IPv4 total length 0 (large send offload?): payload taken as the readable bytes")
        real = len(data) - ihl
    elif ip.len < ihl:
        walk.notes.append("IPv4 total length %d shorter than its %d-byte header" % (ip.len, ihl))
        real = 0
    else:
        real = ip.len - ihl
    payload = data[ihl:ihl + real]
    if ip.offset:
        tail = "%s fragment offset=%d" % (_proto_name(ip.p), ip.offset * 8)
    else:
        tail = _transport(walk, ip.p, payload, real, ipv6=False)
    walk.segments.append("IPv4 %s > %s %s" % (_endpoint(walk.src, walk.sport, False),
                                             _endpoint(walk.dst, walk.dport, False), tail))


def _ipv4_checksum_note(walk: _Walk, checksum: int, header: bytes) -> None:
    if checksum == 0:
        walk.notes.append("IPv4 header checksum not filled in (left to checksum offload)")
    elif dpkt.in_cksum(header) != 0:
        walk.notes.append("IPv4 header checksum wrong")


def _ipv6(walk: _Walk, data: bytes) -> None:
    ip6 = _header(dpkt.ip6.IP6, data, "IPv6", walk, segment=True)
    if ip6 is None:
        return
    if ip6.v != 6:
        walk.notes.append("IPv6 header malformed: version %d" % ip6.v)
        walk.segments.append("IPv6 (malformed header)")
        return
    walk.protocols.append("ipv6")
    walk.src, walk.dst = str(ipaddress.IPv6Address(ip6.src)), str(ipaddress.IPv6Address(ip6.dst))
    if ip6.plen == 0:               # jumbogram, or large send offload leaving the length to the NIC
        walk.notes.append("IPv6 payload length 0 (jumbogram or large send offload?): payload taken as the "
                          "readable bytes")
        real = len(ip6.data)
    else:
        real = ip6.plen
    next_header, payload, real, fragment_offset = _ipv6_extensions(walk, ip6.nxt, ip6.data[:real], real)
    if next_header is None:
        tail = "(truncated header)"
    elif fragment_offset:
        tail = "%s fragment offset=%d" % (_proto_name(next_header), fragment_offset)
    else:
        tail = _transport(walk, next_header, payload, real, ipv6=True)
    walk.segments.append("IPv6 %s > %s %s" % (_endpoint(walk.src, walk.sport, True),
                                             _endpoint(walk.dst, walk.dport, True), tail))


def _ipv6_extensions(walk: _Walk, next_header: int, payload: bytes,
                     real: int) -> Tuple[Optional[int], bytes, int, int]:
    """Skip hop-by-hop, routing, fragment, AH and destination-options headers.

    Returns (upper-layer protocol or None when an extension header is cut short, its bytes, its real
    length, fragment offset in bytes). Every header is at least 8 bytes, so the loop ends.
    """
    fragment_offset = 0
    while next_header in _IPV6_EXT_HEADERS:
        if next_header == _IPV6_EXT_FRAGMENT:
            ext = _header(dpkt.ip6.IP6FragmentHeader, payload, "IPv6 fragment", walk)
            size = 8
        elif next_header == _IPV6_EXT_AH:
            ext = _header(dpkt.ip6.IP6AHHeader, payload, "IPv6 AH", walk)
            size = (ext.len + 2) * 4 if ext is not None else 0
        else:
            ext = _header(dpkt.ip6.IP6OptsHeader, payload, "IPv6 extension", walk)
            size = (ext.len + 1) * 8 if ext is not None else 0
        if ext is None or len(payload) < size:
            if ext is not None:
                walk.notes.append("IPv6 extension header %d truncated: %d of %d bytes"
                                  % (next_header, len(payload), size))
            return None, b"", 0, 0
        if next_header == _IPV6_EXT_FRAGMENT:
            fragment_offset = ext.frag_off * 8
        next_header, payload, real = ext.nxt, payload[size:], max(real - size, 0)
    return next_header, payload, real, fragment_offset


def _proto_name(protocol: int) -> str:
    return _IP_PROTO_NAMES.get(protocol, "protocol %d" % protocol)


# ---------------------------------------------------------------------------------------------- transports

def _transport(walk: _Walk, protocol: int, payload: bytes, real: int, ipv6: bool) -> str:
    """Decode the upper layer of an IP packet; returns its text (ports go to ``walk``)."""
    if protocol == IP_TCP:
        return _tcp(walk, payload, real)
    if protocol == IP_UDP:
        return _udp(walk, payload, real)
    if protocol == IP_ICMP and not ipv6:
        return _icmp(walk, payload, dpkt.icmp.ICMP, "ICMP", _ICMP_TYPES)
    if protocol == IP_ICMPV6 and ipv6:
        return _icmp(walk, payload, dpkt.icmp6.ICMP6, "ICMPv6", _ICMPV6_TYPES)
    return "%s len=%d" % (_proto_name(protocol), real)


def _tcp(walk: _Walk, payload: bytes, real: int) -> str:
    tcp = _header(dpkt.tcp.TCP, payload, "TCP", walk)
    if tcp is None:
        return "TCP (truncated header)"
    walk.protocols.append("tcp")
    walk.sport, walk.dport = tcp.sport, tcp.dport
    header_length = tcp.off * 4
    if header_length < 20:
        walk.notes.append("TCP data offset %d bytes is shorter than the 20-byte header" % header_length)
        header_length = 20
    elif len(payload) < header_length:
        walk.notes.append("TCP options truncated: %d of %d header bytes" % (len(payload), header_length))
    if real < header_length:
        walk.notes.append("TCP header (%d bytes) longer than the IP payload (%d bytes)" % (header_length, real))
    flags = [name for bit, name in _TCP_FLAGS if tcp.flags & bit]
    text = "TCP [%s] seq=%d" % (", ".join(flags) or "<None>", tcp.seq)
    if tcp.flags & 0x10:
        text += " ack=%d" % tcp.ack
    return text + " win=%d len=%d" % (tcp.win, max(real - header_length, 0))


def _udp(walk: _Walk, payload: bytes, real: int) -> str:
    udp = _header(dpkt.udp.UDP, payload, "UDP", walk)
    if udp is None:
        return "UDP (truncated header)"
    walk.protocols.append("udp")
    walk.sport, walk.dport = udp.sport, udp.dport
    if 8 <= udp.ulen <= real:
        length = udp.ulen - 8
    else:
        walk.notes.append("UDP length %d disagrees with the IP payload length %d" % (udp.ulen, real))
        length = max(real - 8, 0)
    text = "UDP len=%d" % length
    if DNS_PORT in (udp.sport, udp.dport):
        text += " " + _dns(walk, udp.data[:length], length)
    return text


def _icmp(walk: _Walk, payload: bytes, cls: Type[dpkt.Packet], layer: str, names: Dict[int, str]) -> str:
    """ICMP and ICMPv6 share a header (type, code, checksum) and the echo body (id, seq)."""
    icmp = _header(cls, payload, layer, walk)
    if icmp is None:
        return "%s (truncated header)" % layer
    walk.protocols.append(layer.lower())
    name = names.get(icmp.type)
    text = "%s %stype=%d code=%d" % (layer, name + " " if name else "", icmp.type, icmp.code)
    echo_types = _ICMPV6_ECHO if cls is dpkt.icmp6.ICMP6 else _ICMP_ECHO
    if icmp.type in echo_types:
        echo = _header(cls.Echo, icmp.data, layer + " echo", walk)
        if echo is not None:
            text += " id=%d seq=%d" % (echo.id, echo.seq)
    elif cls is dpkt.icmp6.ICMP6 and icmp.type in _ICMPV6_ND:
        if len(icmp.data) >= 20:    # 4 bytes of flags/reserved, then the target address
            text += " target=%s" % ipaddress.IPv6Address(icmp.data[4:20])
        else:
            walk.notes.append("%s target address truncated" % layer)
    return text


def _dns(walk: _Walk, message: bytes, real: int) -> str:
    """``DNS query A name`` from dpkt's parser; when the records after the question are unreadable
    (cut short, or damaged), the question alone is still read by parsing the message again with the
    answer counts cleared."""
    walk.protocols.append("dns")
    dns = _parse_dns(message)
    if isinstance(dns, str):
        question_only = message[:6] + b"\x00" * 6 + message[12:] if len(message) >= 12 else message
        retry = _parse_dns(question_only)
        cut = " (message truncated: %d of %d bytes)" % (len(message), real) if len(message) < real else ""
        if isinstance(retry, str):
            walk.notes.append("DNS message unreadable: %s%s" % (dns, cut))
            return "DNS (truncated)" if cut else "DNS (malformed)"
        walk.notes.append("DNS records after the question unreadable: %s%s" % (dns, cut))
        dns = retry
    kind = "response" if dns.qr else "query"
    if not dns.qd:
        text = "DNS %s (no question)" % kind
    else:
        question = dns.qd[0]
        qtype = _DNS_TYPES.get(question.type, "TYPE%d" % question.type)
        text = "DNS %s %s %s" % (kind, qtype, _printable(question.name) or "<Root>")
        if len(dns.qd) > 1:
            text += " (+%d more)" % (len(dns.qd) - 1)
    if dns.qr:
        if dns.rcode:
            text += " rcode=%s" % _DNS_RCODES.get(dns.rcode, str(dns.rcode))
        text += " answers=%d" % struct.unpack_from(">H", message, 6)[0]     # ANCOUNT, even if unreadable
    return text


def _parse_dns(message: bytes) -> Union[dpkt.dns.DNS, str]:
    """The parsed message, or the reason dpkt gave for refusing it."""
    try:
        return dpkt.dns.DNS(message)
    except _DECODE_ERRORS as exc:
        detail = str(exc)
        # dpkt's generic "invalid DNS: b'...'" repeats the whole message: keep the class name only.
        if not detail or len(detail) > _MAX_DETAIL or "b'" in detail:
            return type(exc).__name__
        return "%s: %s" % (type(exc).__name__, detail)


_LINK_DECODERS: Dict[str, Callable[[_Walk, bytes], None]] = {
    LINK_ETHERNET: _ethernet,
    LINK_80211: _dot11,
    LINK_RAW_IP: _raw_ip,
    LINK_UNKNOWN: _unknown,
}
