"""Packet summaries (analysis/nbl/packet.py) and the pcapng writer (analysis/nbl/pcapng.py) for !nblwalk.

Every packet is built with dpkt here, so its fields are known exactly; the pcapng file is read back by
tshark, an independent decoder, whose addresses, ports, lengths and comments must match what
``summarize`` said about the same bytes.
"""

import os
import shutil
import socket
import struct
import subprocess

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytriage.analysis.nbl import packet as nblpacket
from pytriage.analysis.nbl.packet import (
    LINK_80211,
    LINK_ETHERNET,
    LINK_RAW_IP,
    LINK_UNKNOWN,
    guess_link,
    summarize,
)
from pytriage.analysis.nbl.pcapng import CapturedPacket, write_pcapng
from pytriage.errors import PytriageError

HOST_MAC = bytes.fromhex("00155d010203")
ROUTER_MAC = bytes.fromhex("00155d0a0b0c")
STA_MAC = bytes.fromhex("020000000100")
BSSID = bytes.fromhex("020000000010")
GATEWAY_MAC = bytes.fromhex("020000000001")
BROADCAST = b"\xff" * 6
CRASH_TIME = 1700000000.5
ETH_PREFIX = "Ethernet 00:15:5d:01:02:03 > 00:15:5d:0a:0b:0c, "


def v4(text):
    return socket.inet_pton(socket.AF_INET, text)


def v6(text):
    return socket.inet_pton(socket.AF_INET6, text)


def ethernet(payload, ethertype=dpkt.ethernet.ETH_TYPE_IP, src=HOST_MAC, dst=ROUTER_MAC):
    return bytes(dpkt.ethernet.Ethernet(src=src, dst=dst, type=ethertype, data=bytes(payload)))


def ipv4(src, dst, proto, payload):
    return dpkt.ip.IP(src=v4(src), dst=v4(dst), p=proto, ttl=128, id=0x1234, data=payload)


def ipv6(src, dst, next_header, payload):
    payload = bytes(payload)
    return bytes(dpkt.ip6.IP6(src=v6(src), dst=v6(dst), nxt=next_header, hlim=255, plen=len(payload))) + payload


def udp(sport, dport, payload):
    payload = bytes(payload)
    return dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)


def dns_query(name, qtype):
    return dpkt.dns.DNS(id=0x2a2a, qd=[dpkt.dns.DNS.Q(name=name, type=qtype)])


def icmpv6(src, dst, icmp_type, body):
    """An ICMPv6 message with its checksum over the IPv6 pseudo-header (dpkt leaves it 0 when built raw)."""
    message = bytearray(struct.pack(">BBH", icmp_type, 0, 0) + body)
    pseudo = v6(src) + v6(dst) + struct.pack(">I3xB", len(message), 58)
    struct.pack_into(">H", message, 2, dpkt.in_cksum(pseudo + bytes(message)))
    return bytes(message)


def tcp_syn():
    options = bytes.fromhex("020405b40103030801010402") + b"\x00" * 8     # MSS, wscale, SACK-permitted, pad
    tcp = dpkt.tcp.TCP(sport=49712, dport=443, seq=1000, flags=dpkt.tcp.TH_SYN, win=64240, opts=options)
    tcp.off = (20 + len(options)) // 4
    return ethernet(ipv4("10.0.0.5", "93.184.216.34", 6, tcp))


def tcp_data(payload_length):
    tcp = dpkt.tcp.TCP(sport=443, dport=49712, seq=7000, ack=1001, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
                       win=501, data=bytes(range(256)) * (payload_length // 256) + b"\x00" * (payload_length % 256))
    return ethernet(ipv4("93.184.216.34", "10.0.0.5", 6, tcp), src=ROUTER_MAC, dst=HOST_MAC)


def dns_over_ethernet():
    return ethernet(ipv4("10.0.0.5", "10.0.0.1", 17, udp(53001, 53, dns_query("example.com", dpkt.dns.DNS_A))))


def dns_nxdomain():
    answer = dns_query("nosuch.example", dpkt.dns.DNS_A)
    answer.qr, answer.rcode = dpkt.dns.DNS_R, dpkt.dns.DNS_RCODE_NXDOMAIN
    return ethernet(ipv4("10.0.0.1", "10.0.0.5", 17, udp(53, 53001, answer)), src=ROUTER_MAC, dst=HOST_MAC)


def ipv6_syn_ack():
    tcp = dpkt.tcp.TCP(sport=443, dport=51000, seq=5000, ack=1001, flags=dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK,
                       win=65535)
    packet = dpkt.ip6.IP6(src=v6("2001:db8::1"), dst=v6("2001:db8::2"), nxt=6, hlim=64, data=tcp)
    packet.plen = len(bytes(tcp))
    return ethernet(bytes(packet), dpkt.ethernet.ETH_TYPE_IP6, src=ROUTER_MAC, dst=HOST_MAC)


def neighbor_solicitation():
    body = b"\x00" * 4 + v6("fe80::2") + b"\x01\x01" + HOST_MAC                  # target, source link-layer option
    message = icmpv6("fe80::1", "ff02::1:ff00:2", 135, body)
    return ethernet(ipv6("fe80::1", "ff02::1:ff00:2", 58, message), dpkt.ethernet.ETH_TYPE_IP6,
                    dst=bytes.fromhex("3333ff000002"))


def mld_report_with_hop_by_hop():
    """MLDv2 report behind a hop-by-hop header (router alert + PadN): the extension-header path."""
    record = struct.pack(">BBH", 4, 0, 0) + v6("ff02::fb")                     # CHANGE_TO_EXCLUDE, no sources
    message = icmpv6("fe80::1", "ff02::16", 143, struct.pack(">HH", 0, 1) + record)
    hop_by_hop = bytes([58, 0]) + bytes.fromhex("05020000") + bytes.fromhex("0100")
    return ethernet(ipv6("fe80::1", "ff02::16", 0, hop_by_hop + message), dpkt.ethernet.ETH_TYPE_IP6,
                    dst=bytes.fromhex("333300000016"))


def dot11_qos_data():
    """A QoS data frame to the AP (ToDS) as nwifi hands it to a Wi-Fi miniport: LLC/SNAP, IPv4, UDP, DNS."""
    header = bytes(dpkt.ieee80211.IEEE80211(framectl=0x8801, duration=0x2c))   # QoS Data, ToDS
    addresses = bytes(dpkt.ieee80211.IEEE80211.DataToDS(bssid=BSSID, src=STA_MAC, dst=GATEWAY_MAC, frag_seq=0x1000))
    qos_control = b"\x00\x00"
    ip = ipv4("10.0.0.5", "10.0.0.1", 17, udp(53002, 53, dns_query("www.example.org", dpkt.dns.DNS_AAAA)))
    llc = dpkt.llc.LLC(dsap=0xAA, ssap=0xAA, ctl=3, data=ip)
    return header + addresses + qos_control + bytes(llc)


def raw_ipv4_echo():
    echo = dpkt.icmp.ICMP.Echo(id=1, seq=7, data=b"abcdefghijklmnopqrstuvwabcdefghi")
    return bytes(ipv4("10.0.0.5", "8.8.8.8", 1, dpkt.icmp.ICMP(type=8, code=0, data=echo)))


def arp_request():
    arp = dpkt.arp.ARP(sha=HOST_MAC, spa=v4("10.0.0.5"), tha=b"\x00" * 6, tpa=v4("10.0.0.1"))
    frame = ethernet(arp, dpkt.ethernet.ETH_TYPE_ARP, dst=BROADCAST)
    return frame + b"\x00" * (60 - len(frame))                                      # padded to the minimum frame


def vlan_udp():
    tag = bytes(dpkt.ethernet.VLANtag8021Q(id=100, pri=0, type=dpkt.ethernet.ETH_TYPE_IP))
    return ethernet(tag + bytes(ipv4("10.0.0.5", "10.0.0.9", 17, udp(50000, 50001, b"ping"))), 0x8100)


def pe_header_garbage():
    """Pool memory reused by an image: an MZ header where an NBL's data was expected."""
    return bytes.fromhex("4d5a90000300000004000000ffff0000b800000000000000400000000000000000") + b"\x00" * 31


class Case:
    """One packet: its bytes, what summarize must say, and what tshark must see in the pcapng file."""

    def __init__(self, name, data, link, text, protocols, src=None, dst=None, sport=None, dport=None,
                 length=None, dns_name="", tshark_protocols=""):
        self.name, self.data, self.link, self.text, self.protocols = name, data, link, text, protocols
        self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        self.length = len(data) if length is None else length
        self.dns_name, self.tshark_protocols = dns_name, tshark_protocols


SYN = tcp_syn()
DATA_1460 = tcp_data(1460)

CASES = [
    Case("tcp-syn", SYN, LINK_ETHERNET,
         ETH_PREFIX + "IPv4 10.0.0.5:49712 > 93.184.216.34:443 TCP [SYN] seq=1000 win=64240 len=0",
         ["ethernet", "ipv4", "tcp"], "10.0.0.5", "93.184.216.34", 49712, 443,
         tshark_protocols="eth:ethertype:ip:tcp"),
    Case("dns-query", dns_over_ethernet(), LINK_ETHERNET,
         ETH_PREFIX + "IPv4 10.0.0.5:53001 > 10.0.0.1:53 UDP len=29 DNS query A example.com",
         ["ethernet", "ipv4", "udp", "dns"], "10.0.0.5", "10.0.0.1", 53001, 53, dns_name="example.com",
         tshark_protocols="eth:ethertype:ip:udp:dns"),
    Case("dns-nxdomain", dns_nxdomain(), LINK_ETHERNET,
         "Ethernet 00:15:5d:0a:0b:0c > 00:15:5d:01:02:03, IPv4 10.0.0.1:53 > 10.0.0.5:53001 UDP len=32 "
         "DNS response A nosuch.example rcode=NXDOMAIN answers=0",
         ["ethernet", "ipv4", "udp", "dns"], "10.0.0.1", "10.0.0.5", 53, 53001, dns_name="nosuch.example",
         tshark_protocols="eth:ethertype:ip:udp:dns"),
    Case("ipv6-syn-ack", ipv6_syn_ack(), LINK_ETHERNET,
         "Ethernet 00:15:5d:0a:0b:0c > 00:15:5d:01:02:03, IPv6 [2001:db8::1]:443 > [2001:db8::2]:51000 "
         "TCP [SYN, ACK] seq=5000 ack=1001 win=65535 len=0",
         ["ethernet", "ipv6", "tcp"], "2001:db8::1", "2001:db8::2", 443, 51000,
         tshark_protocols="eth:ethertype:ipv6:tcp"),
    Case("icmpv6-ns", neighbor_solicitation(), LINK_ETHERNET,
         "Ethernet 00:15:5d:01:02:03 > 33:33:ff:00:00:02, IPv6 fe80::1 > ff02::1:ff00:2 "
         "ICMPv6 neighbor solicitation type=135 code=0 target=fe80::2",
         ["ethernet", "ipv6", "icmpv6"], "fe80::1", "ff02::1:ff00:2",
         tshark_protocols="eth:ethertype:ipv6:icmpv6"),
    Case("mld-hop-by-hop", mld_report_with_hop_by_hop(), LINK_ETHERNET,
         "Ethernet 00:15:5d:01:02:03 > 33:33:00:00:00:16, IPv6 fe80::1 > ff02::16 "
         "ICMPv6 multicast listener report v2 type=143 code=0",
         ["ethernet", "ipv6", "icmpv6"], "fe80::1", "ff02::16",
         tshark_protocols="eth:ethertype:ipv6:ipv6.hopopts:icmpv6"),
    Case("dot11-qos-data", dot11_qos_data(), LINK_80211,
         "802.11 QoS Data 02:00:00:00:01:00 > 02:00:00:00:00:01 (BSSID 02:00:00:00:00:10, ToDS), "
         "IPv4 10.0.0.5:53002 > 10.0.0.1:53 UDP len=33 DNS query AAAA www.example.org",
         ["802.11", "llc", "ipv4", "udp", "dns"], "10.0.0.5", "10.0.0.1", 53002, 53, dns_name="www.example.org",
         tshark_protocols="wlan:llc:ip:udp:dns"),
    Case("raw-ipv4-echo", raw_ipv4_echo(), LINK_RAW_IP,
         "IPv4 10.0.0.5 > 8.8.8.8 ICMP echo request type=8 code=0 id=1 seq=7",
         ["ipv4", "icmp"], "10.0.0.5", "8.8.8.8", tshark_protocols="raw:ip:icmp:data"),
    Case("arp", arp_request(), LINK_ETHERNET,
         "Ethernet 00:15:5d:01:02:03 > ff:ff:ff:ff:ff:ff, ARP who-has 10.0.0.1 tell 10.0.0.5",
         ["ethernet", "arp"], "10.0.0.5", "10.0.0.1", tshark_protocols="eth:ethertype:arp"),
    Case("vlan-udp", vlan_udp(), LINK_ETHERNET,
         "Ethernet 00:15:5d:01:02:03 > 00:15:5d:0a:0b:0c VLAN 100, IPv4 10.0.0.5:50000 > 10.0.0.9:50001 UDP len=4",
         ["ethernet", "vlan", "ipv4", "udp"], "10.0.0.5", "10.0.0.9", 50000, 50001,
         tshark_protocols="eth:ethertype:vlan:ethertype:ip:udp:data"),
    Case("tcp-truncated-payload", DATA_1460[:128], LINK_ETHERNET,
         "Ethernet 00:15:5d:0a:0b:0c > 00:15:5d:01:02:03, IPv4 93.184.216.34:443 > 10.0.0.5:49712 "
         "TCP [PSH, ACK] seq=7000 ack=1001 win=501 len=1460 (truncated: 128 of 1514 bytes)",
         ["ethernet", "ipv4", "tcp"], "93.184.216.34", "10.0.0.5", 443, 49712, length=len(DATA_1460),
         tshark_protocols="eth:ethertype:ip:tcp:tls"),
    Case("ip-header-truncated", SYN[:20], LINK_ETHERNET,
         ETH_PREFIX + "IPv4 (truncated header) (truncated: 20 of 74 bytes)",
         ["ethernet"], length=len(SYN), tshark_protocols="eth:ethertype:ip"),
    Case("garbage", pe_header_garbage(), LINK_UNKNOWN,
         "unknown 64 bytes: 4d5a90000300000004000000ffff0000...", [], tshark_protocols="user_dlt:data"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_summary_text_protocols_and_endpoints_of_dpkt_built_packets(case):
    summary = summarize(case.data, case.length)
    assert summary.link == case.link
    assert summary.text == case.text
    assert summary.protocols == case.protocols
    assert (summary.src, summary.dst, summary.sport, summary.dport) == (case.src, case.dst, case.sport, case.dport)
    assert (summary.captured, summary.length) == (len(case.data), case.length)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_guess_link_picks_the_link_each_packet_was_built_with(case):
    assert guess_link(case.data) == case.link


def test_truncated_packets_say_so_in_their_notes():
    cut = summarize(SYN[:20], len(SYN))
    assert cut.notes == ["truncated: 20 of 74 bytes readable", "IPv4 header truncated: 6 of 20 bytes"]
    assert summarize(DATA_1460[:128], len(DATA_1460)).notes == ["truncated: 128 of 1514 bytes readable"]
    assert summarize(SYN).notes == []


def test_bad_ipv4_header_checksum_is_noted_and_a_zero_one_is_blamed_on_offload():
    bad = bytearray(SYN)
    bad[24] ^= 0xFF                                  # IPv4 checksum, bytes 24-25 of the frame
    assert "IPv4 header checksum wrong" in summarize(bytes(bad)).notes
    bad[24:26] = b"\x00\x00"
    assert summarize(bytes(bad)).notes == ["IPv4 header checksum not filled in (left to checksum offload)"]


def test_dns_question_is_read_even_when_the_answers_are_cut_off():
    response = dns_query("example.com", dpkt.dns.DNS_A)
    response.qr = dpkt.dns.DNS_R
    response.an = [dpkt.dns.DNS.RR(name="example.com", type=dpkt.dns.DNS_A, ip=v4("93.184.216.34"))]
    frame = ethernet(ipv4("10.0.0.1", "10.0.0.5", 17, udp(53, 53001, response)), src=ROUTER_MAC, dst=HOST_MAC)
    summary = summarize(frame[:-6], len(frame))
    assert summary.text.endswith("UDP len=45 DNS response A example.com answers=1 (truncated: %d of %d bytes)"
                                 % (len(frame) - 6, len(frame)))
    assert summary.notes[1] == ("DNS records after the question unreadable: UnpackError "
                                "(message truncated: 39 of 45 bytes)")


def test_protected_and_null_802_11_frames_stop_at_the_mac_header():
    protected = bytearray(dot11_qos_data())
    protected[1] |= 0x40
    summary = summarize(bytes(protected))
    assert summary.text == ("802.11 QoS Data 02:00:00:00:01:00 > 02:00:00:00:00:01 "
                            "(BSSID 02:00:00:00:00:10, ToDS, protected)")
    assert (summary.protocols, summary.notes) == (["802.11"], ["802.11 body encrypted: not decoded"])
    null = bytes([0x48, 0x11]) + b"\x00\x00" + BSSID + STA_MAC + BSSID + b"\x00\x00"   # Null, ToDS + power save
    assert guess_link(null) == LINK_80211
    assert summarize(null).text == ("802.11 Null 02:00:00:00:01:00 > 02:00:00:00:00:10 "
                                    "(BSSID 02:00:00:00:00:10, ToDS)")


def test_from_ds_frame_names_its_addresses_by_role():
    """FromDS: address 1 is the destination, 2 the BSSID, 3 the source (IEEE 802.11 table 9-30)."""
    addresses = bytes(dpkt.ieee80211.IEEE80211.DataFromDS(dst=STA_MAC, bssid=BSSID, src=GATEWAY_MAC))
    llc = bytes(dpkt.llc.LLC(dsap=0xAA, ssap=0xAA, ctl=3, data=dpkt.arp.ARP(op=2, sha=GATEWAY_MAC,
                                                                           spa=v4("10.0.0.1"))))
    summary = summarize(bytes([0x08, 0x02, 0, 0]) + addresses + llc)
    assert summary.text == ("802.11 Data 02:00:00:00:00:01 > 02:00:00:00:01:00 (BSSID 02:00:00:00:00:10, FromDS), "
                            "ARP reply 10.0.0.1 is-at 02:00:00:00:00:01")
    assert summary.protocols == ["802.11", "llc", "arp"]


def test_non_first_ipv4_fragment_is_not_decoded_as_udp():
    packet = ipv4("10.0.0.5", "10.0.0.9", 17, b"\x00" * 64)
    packet.offset = 1480 // 8
    summary = summarize(bytes(packet), link=LINK_RAW_IP)
    assert summary.text == "IPv4 10.0.0.5 > 10.0.0.9 UDP fragment offset=1480"
    assert (summary.protocols, summary.sport) == (["ipv4"], None)


def test_dns_names_with_unprintable_bytes_stay_on_one_line():
    query = bytes(dns_query("a", dpkt.dns.DNS_A)).replace(b"\x01a\x00", b"\x05a b\nc\x00")
    frame = ethernet(ipv4("10.0.0.5", "10.0.0.1", 17, udp(53001, 53, query)))
    assert summarize(frame).text.endswith("DNS query A a\\x20b\\x0ac")


def test_summary_to_json_has_every_field():
    record = summarize(DATA_1460[:128], len(DATA_1460)).to_json()
    assert record == {
        "link": "ethernet", "text": CASES[10].text, "protocols": ["ethernet", "ipv4", "tcp"],
        "src": "93.184.216.34", "dst": "10.0.0.5", "sport": 443, "dport": 49712, "captured": 128,
        "length": 1514, "notes": ["truncated: 128 of 1514 bytes readable"]}


def test_unknown_link_name_is_a_caller_bug():
    with pytest.raises(ValueError):
        summarize(SYN, link="token-ring")


FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None)
LINK_CHOICES = st.sampled_from([None, LINK_ETHERNET, LINK_80211, LINK_RAW_IP, LINK_UNKNOWN])


def assert_sane(summary, data, length):
    assert "\n" not in summary.text and "\r" not in summary.text
    assert summary.captured == len(data) and summary.length == max(length, len(data))
    assert not [n for n in summary.notes if n.startswith("internal decoder error")], summary.notes


@FUZZ
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=70000), LINK_CHOICES)
def test_random_bytes_never_raise_and_give_one_line(data, extra, link):
    length = len(data) + extra
    assert_sane(summarize(data, length, link), data, length)


@FUZZ
@given(st.sampled_from(CASES), st.lists(st.tuples(st.integers(0, 1600), st.integers(0, 255)), max_size=6),
       st.integers(0, 1600), LINK_CHOICES)
def test_damaged_real_packets_never_raise_and_give_one_line(case, patches, cut, link):
    """Random bytes rarely get past Ethernet; damaging real packets reaches IP, TCP, DNS and 802.11."""
    data = bytearray(case.data)
    for offset, value in patches:
        if offset < len(data):
            data[offset] = value
    data = bytes(data[:cut])
    assert_sane(summarize(data, case.length, link), data, case.length)


# ---------------------------------------------------------------------------------------------- pcapng

TSHARK_FIELDS = ["frame.number", "frame.len", "frame.cap_len", "frame.comment", "frame.protocols", "ip.src",
                 "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
                 "dns.qry.name", "arp.src.proto_ipv4", "arp.dst.proto_ipv4", "icmpv6.nd.ns.target_address",
                 "frame.interface_name"]
OUR_TO_TSHARK = {"ethernet": "eth", "vlan": "vlan", "802.11": "wlan", "llc": "llc", "ipv4": "ip", "ipv6": "ipv6",
                 "tcp": "tcp", "udp": "udp", "dns": "dns", "icmp": "icmp", "icmpv6": "icmpv6", "arp": "arp"}


def comment_of(index, case):
    return "NBL ffffc08b`e04%05x NB#0 %s" % (index * 0x100, case.name)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nblwalk")
    path = str(folder / "nbl.pcapng")
    packets = [CapturedPacket(c.data, c.length, c.link, comment_of(i, c)) for i, c in enumerate(CASES)]
    counts = write_pcapng(path, packets, CRASH_TIME, application="pytriage-test")
    return path, counts, str(folder)


def run_tshark(path, home):
    tshark = shutil.which("tshark") or ("/usr/bin/tshark" if os.path.exists("/usr/bin/tshark") else None)
    if tshark is None:
        pytest.fail("tshark not found: scripts/test installs it")
    command = [tshark, "-r", path, "-T", "fields", "-E", "separator=/t"]
    for name in TSHARK_FIELDS:
        command += ["-e", name]
    # A private HOME/XDG_CONFIG_HOME keeps tshark from reading or creating a profile in the real home.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "XDG_CONFIG_HOME": home, "LC_ALL": "C.UTF-8"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return [dict(zip(TSHARK_FIELDS, line.split("\t"))) for line in done.stdout.splitlines()]


def test_write_pcapng_counts_packets_per_link(written):
    _, counts, _ = written
    assert counts == {LINK_ETHERNET: 10, LINK_80211: 1, LINK_RAW_IP: 1, LINK_UNKNOWN: 1}


def test_tshark_reads_back_what_summarize_said(written):
    path, _, home = written
    rows = run_tshark(path, home)
    assert len(rows) == len(CASES)
    for index, (row, case) in enumerate(zip(rows, CASES)):
        summary = summarize(case.data, case.length, case.link)
        assert row["frame.number"] == str(index + 1)
        assert (int(row["frame.len"]), int(row["frame.cap_len"])) == (case.length, len(case.data)), case.name
        assert row["frame.comment"] == comment_of(index, case)
        assert row["frame.interface_name"] == "nbl-" + case.link
        assert row["frame.protocols"] == case.tshark_protocols, case.name
        theirs = row["frame.protocols"].split(":")
        ours = [OUR_TO_TSHARK[p] for p in summary.protocols]
        assert [p for p in theirs if p in ours] == ours, case.name
        src = row["ip.src"] or row["ipv6.src"] or row["arp.src.proto_ipv4"] or None
        dst = row["ip.dst"] or row["ipv6.dst"] or row["arp.dst.proto_ipv4"] or None
        sport = row["tcp.srcport"] or row["udp.srcport"]
        dport = row["tcp.dstport"] or row["udp.dstport"]
        assert (src, dst) == (summary.src, summary.dst), case.name
        assert (int(sport) if sport else None, int(dport) if dport else None) == (summary.sport, summary.dport)
        assert row["dns.qry.name"] == case.dns_name, case.name
        target = row["icmpv6.nd.ns.target_address"]
        assert (" target=%s" % target in summary.text) if target else ("target=" not in summary.text)


def test_dpkt_reader_reads_back_the_bytes_timestamps_and_first_interface(written):
    path, _, _ = written
    with open(path, "rb") as stream:
        reader = dpkt.pcapng.Reader(stream)
        assert reader.datalink() == 1
        records = list(reader)
    assert [data for _, data in records] == [c.data for c in CASES]
    assert {ts for ts, _ in records} == {CRASH_TIME}


def test_blocks_keep_original_lengths_and_point_at_their_link_interface(written):
    """Walk the blocks by hand: interface order is first use, each EPB's iface_id and pkt_len are right."""
    path, _, _ = written
    with open(path, "rb") as stream:
        content = stream.read()
    offset, linktypes, packets = 0, [], []
    while offset < len(content):
        block_type, block_length = struct.unpack_from("<II", content, offset)
        block = content[offset:offset + block_length]
        if block_type == dpkt.pcapng.PCAPNG_BT_SHB:
            shb = dpkt.pcapng.SectionHeaderBlockLE(block)
            assert shb.opts[0].code == dpkt.pcapng.PCAPNG_OPT_SHB_USERAPPL and shb.opts[0].data == b"pytriage-test"
        elif block_type == dpkt.pcapng.PCAPNG_BT_IDB:
            linktypes.append(dpkt.pcapng.InterfaceDescriptionBlockLE(block).linktype)
        elif block_type == dpkt.pcapng.PCAPNG_BT_EPB:
            epb = dpkt.pcapng.EnhancedPacketBlockLE(block)
            packets.append((epb.iface_id, epb.caplen, epb.pkt_len, epb.opts[0].text))
        offset += block_length
    assert linktypes == [1, 105, 101, 147]
    interface = {LINK_ETHERNET: 0, LINK_80211: 1, LINK_RAW_IP: 2, LINK_UNKNOWN: 3}
    assert packets == [(interface[c.link], len(c.data), c.length, comment_of(i, c)) for i, c in enumerate(CASES)]


def test_write_pcapng_replaces_atomically_and_reports_os_errors_in_one_line(tmp_path):
    path = str(tmp_path / "out.pcapng")
    with open(path, "wb") as stream:
        stream.write(b"old")
    write_pcapng(path, [CapturedPacket(SYN, len(SYN), LINK_ETHERNET, "")], CRASH_TIME)
    assert sorted(os.listdir(str(tmp_path))) == ["out.pcapng"]
    with open(path, "rb") as stream:
        assert stream.read(4) == b"\x0a\x0d\x0d\x0a"
    with pytest.raises(PytriageError, match="^cannot write pcapng file .*missing.*: No such file or directory$"):
        write_pcapng(str(tmp_path / "missing" / "x.pcapng"), [], CRASH_TIME)


def test_write_pcapng_rejects_an_unknown_link():
    with pytest.raises(ValueError):
        write_pcapng("/nonexistent/never-written.pcapng", [CapturedPacket(b"", 0, "fddi", "")], CRASH_TIME)


def test_link_constants_are_the_documented_strings():
    assert (nblpacket.LINK_ETHERNET, nblpacket.LINK_80211, nblpacket.LINK_RAW_IP, nblpacket.LINK_UNKNOWN) == (
        "ethernet", "802.11", "ip", "unknown")
