"""`pytriage nblwalk` on the built-in nbl-zoo scenario: every case of issue 7 with exact answers.

The ground truth is the spec (pytriage/scenarios/builtin/nbl-zoo.json): the builder placed each NBL,
NET_BUFFER, MDL and packet byte where the spec says, so addresses come from the build and packet bytes
from the spec itself; the walk must find exactly those.
"""

import json
import struct

import pytest

from pytriage import cli
from pytriage.scenarios import builtin_path

SEED_ROUTINE, SEED_CTXT, SEED_CTXT2 = 0x0000003200360035, 0x4C46444E02156700, 0xEC770C55EB0493DF


@pytest.fixture(scope="module", params=["full", "bitmap"])
def zoo(request, tmp_path_factory):
    from pytriage.scenarios import build_builtin
    return build_builtin("nbl-zoo", str(tmp_path_factory.mktemp("nbl-zoo-" + request.param)), request.param)


@pytest.fixture(scope="module")
def spec():
    with open(builtin_path("nbl-zoo"), encoding="utf-8") as fh:
        doc = json.load(fh)
    return {item["id"]: item for item in doc["nbl"]["nbls"]}


def walk(capsys, built, nbl_id_or_address, *args):
    address = built.nbl_addresses.get(nbl_id_or_address, nbl_id_or_address)
    code = cli.main(["nblwalk", built.dump_path, "%x" % address, "--symbols", built.symstore_path, "--json"]
                    + list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def h(value):
    return int(value, 16)


def test_healthy_chain_every_field(capsys, zoo, spec):
    record = walk(capsys, zoo, "syn")
    a = zoo.nbl_addresses
    assert record["schema"] == "pytriage.nblwalk/1"
    assert (record["count"], record["complete"], record["stop"]) == (5, True, "end of chain (Next is NULL)")
    ids = ["syn", "dns", "v6", "ping", "clone"]
    assert [h(n["address"]) for n in record["nbls"]] == [a[i] for i in ids]
    assert [h(n["next"]) for n in record["nbls"]] == [a[i] for i in ids[1:]] + [0]
    for nbl, nbl_id in zip(record["nbls"], ids):
        item = spec[nbl_id]
        assert nbl["flags"] == int(item.get("flags", "0"), 16)
        assert h(nbl["status"]) == int(item.get("status", "0"), 16)
        assert nbl["child_ref_count"] == item.get("child_ref_count", 0)
        assert h(nbl["parent"]) == (a["syn"] if nbl_id == "clone" else 0)
        assert h(nbl["pool_handle"]) == a["ndis-pool"]
        assert h(nbl["source_handle"]) == (a["lwf-module"] if "source_handle" in item else 0)
        assert h(nbl["context"]) == 0 and nbl["dot11"] is None
        # whose memory: the NBL's own block (header 0x10 below it), the pool handle's and the source handle's
        assert (nbl["memory"]["kind"], nbl["memory"]["tag"], h(nbl["memory"]["block"])) == ("pool", "NDnd",
                                                                                           a[nbl_id] - 0x10)
        assert "ndis.sys" in [o["binary"] for o in nbl["memory"]["owners"]]
        assert (nbl["pool_handle_memory"]["tag"], h(nbl["pool_handle_memory"]["block"])) == ("NDnd",
                                                                                            a["ndis-pool"] - 0x10)
        (nb,) = nbl["net_buffers"]
        packet = bytes.fromhex(item["net_buffers"][0]["packet"]["hex"])
        headroom = int(item["net_buffers"][0].get("headroom", "0"), 16)
        assert (nb["data_length"], nb["data_offset"], nb["current_mdl_offset"]) == (len(packet), headroom, headroom)
        assert len(nb["mdls"]) == len(item["net_buffers"][0].get("mdl_sizes", [])) + 1
        assert h(nb["current_mdl"]) == h(nb["mdl_chain"]) == h(nb["mdls"][0]["address"])
        assert nb["packet"]["hex"] == packet[:64].hex() and nb["packet"]["captured"] == len(packet)
        assert nb["packet"]["complete"] and nb["packet"]["gap"] == "" and nb["notes"] == []
        assert nb["packet"]["sources"] == (["pfn"] if nbl_id == "ping" else ["va"] * len(nb["mdls"]))
    summaries = [n["net_buffers"][0]["summary"] for n in record["nbls"]]
    assert [(s["link"], s["protocols"][-1], s["src"], s["dst"], s["sport"], s["dport"]) for s in summaries] == [
        ("ethernet", "tcp", "10.0.0.5", "10.0.0.20", 49712, 445),
        ("ethernet", "dns", "10.0.0.5", "10.0.0.1", 53001, 53),
        ("ethernet", "tcp", "2001:db8::5", "2001:db8::20", 50000, 443),
        ("ethernet", "icmp", "10.0.0.5", "10.0.0.1", None, None),
        ("ethernet", "tcp", "10.0.0.5", "10.0.0.20", 49712, 445)]
    assert "TCP [SYN]" in summaries[0]["text"] and "DNS query A fileserver.corp.example" in summaries[1]["text"]
    syn_mdls = record["nbls"][0]["net_buffers"][0]["mdls"]
    assert [m["byte_count"] for m in syn_mdls] == [0x20 + 14, 54 - 14]        # headroom + Ethernet header, rest
    assert syn_mdls[0]["flag_names"] == "SOURCE_IS_NONPAGED_POOL|ALLOCATED_FIXED_SIZE"
    ping_mdl = record["nbls"][3]["net_buffers"][0]["mdls"][0]
    assert (h(ping_mdl["mapped_system_va"]), ping_mdl["flag_names"], len(ping_mdl["pfns"])) == (0, "PAGES_LOCKED", 1)


def test_text_output_names_owners_and_packets(capsys, zoo):
    a = zoo.nbl_addresses
    assert cli.main(["nblwalk", zoo.dump_path, "%x" % a["syn"], "--symbols", zoo.symstore_path, "-v"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NBL chain from %s: 5 NBLs, 5 NET_BUFFERs, 8 MDLs\n" % fmt(a["syn"]))
    assert "NBL #0 %s  Flags 0x500 (NDIS 0x500)  NblFlags 0  Status 0x00000000 STATUS_SUCCESS" % fmt(a["syn"]) in out
    assert "  NBL memory      %s is +0x0 into pool block %s tag NDnd (0x2b0 bytes, allocated): ndis.sys" % (
        fmt(a["syn"]), fmt(a["syn"] - 0x10)) in out
    assert "Status 0xc0000001 NDIS_STATUS_FAILURE" in out
    assert "first 0x36 of 0x36 bytes (read through MappedSystemVa):" in out
    assert "(read through PFN array)" in out
    assert "        00 15 5d 0a 0b 0c 00 15-5d 01 02 03 08 00 45 00  ..].....].....E." in out
    assert "Walk complete: end of chain (Next is NULL)" in out


def fmt(value):
    return "%08x`%08x" % (value >> 32, value & 0xFFFFFFFF)


def test_seed_foreign_ptos_in_filter_block(capsys, zoo):
    a = zoo.nbl_addresses
    (nbl,) = walk(capsys, zoo, "seed")["nbls"]
    dot11 = nbl["dot11"]
    context = h(nbl["context"])
    assert (h(dot11["context"]), h(dot11["packet_context"]), h(dot11["pBOS"])) == (context, context + 0x10,
                                                                                   context + 0x40)
    assert h(dot11["pTOS"]) == a["filt562"] + 0x30 and dot11["depth"] is None and not dot11["healthy"]
    assert dot11["layout"].startswith("builtin:observed")
    assert (dot11["pTOS_memory"]["kind"], dot11["pTOS_memory"]["tag"], h(dot11["pTOS_memory"]["block"])) == (
        "pool", "Filt", a["filt562"] - 0x10)
    assert [o["binary"] for o in dot11["pTOS_memory"]["owners"]] == ["vwifimf.sys"]
    (entry,) = dot11["entries"]
    assert (h(entry["address"]), h(entry["pRoutine"]), h(entry["pCtxt"]), h(entry["pCtxt2"])) == (
        a["filt562"] + 0x18, SEED_ROUTINE, SEED_CTXT, SEED_CTXT2)
    assert (entry["routine_kind"], entry["ok"]) == ("text", False)
    assert 'UTF-16 "562"' in entry["routine"] and "0x1E (0x80000003" in entry["bugcheck"]
    assert entry["memory"]["tag"] == "Filt"
    assert dot11["findings"][0].startswith("pTOS %s is outside CmplArray [%s, %s]" % (
        fmt(a["filt562"] + 0x30), fmt(context + 0x40), fmt(context + 0x40 + 16 * 0x18)))
    assert dot11["suspects"] == ["vwifimf.sys"]
    assert "the driver below nwifi (vwifimf.sys)" in dot11["verdict"]
    assert nbl["memory"]["tag"] == "Filt" and nbl["pool_handle_memory"]["tag"] == "Filt"


def test_healthy_stack_every_routine_symbolised(capsys, zoo):
    a = zoo.nbl_addresses
    (nbl,) = walk(capsys, zoo, "wifi")["nbls"]
    dot11 = nbl["dot11"]
    assert dot11["healthy"] and dot11["findings"] == [] and dot11["depth"] == 3
    assert h(dot11["pTOS"]) == h(dot11["pBOS"]) + 3 * 0x18
    assert h(dot11["pVElan"]) == a["lwf-module"]
    assert [(e["index"], e["routine"], e["routine_kind"], h(e["pCtxt"]), h(e["pCtxt2"])) for e in dot11["entries"]] == [
        (0, "nwifi!Pt6SendComplete", "code", a["wifi"], 0), (1, "nwifi!Dot11EncapSendComplete", "code", a["wifi"], 1),
        (2, "nwifi!Dot11MpSendComplete", "code", a["lwf-module"], 0)]
    assert dot11["verdict"] == "completion stack intact: 3 entries, every routine is code in a loaded module"
    summary = nbl["net_buffers"][0]["summary"]
    assert (summary["link"], summary["protocols"][0], summary["dport"]) == ("802.11", "802.11", 445)


def test_stack_ptos_and_data_symbol_routine(capsys, zoo):
    (nbl,) = walk(capsys, zoo, "stackb")["nbls"]
    dot11 = nbl["dot11"]
    rsp = zoo.context["rsp"]
    assert h(dot11["pTOS"]) == rsp + 0x98 and dot11["pTOS_memory"]["kind"] == "stack"
    assert "rsp+0x98 of the crash context's stack pointer" in dot11["pTOS_memory"]["text"]
    (entry,) = dot11["entries"]
    assert (h(entry["address"]), entry["routine_kind"], entry["routine"]) == (
        rsp + 0x80, "data", "tcpip!Ipv4Global is data, not code")
    assert "0xFC" in entry["bugcheck"]
    assert dot11["context_memory"]["tag"] == "Filt"
    assert any("context block itself is in a pool block owned by vwifimf.sys" in f for f in dot11["findings"])
    assert dot11["suspects"] == ["vwifimf.sys"]


def test_empty_and_null_stacks(capsys, zoo):
    empty, null = walk(capsys, zoo, "empty")["nbls"]
    assert empty["dot11"]["depth"] == 0 and h(empty["dot11"]["pTOS"]) == h(empty["dot11"]["pBOS"])
    assert empty["dot11"]["findings"][0].startswith("empty completion stack (pTOS == pBOS)")
    assert h(null["dot11"]["pTOS"]) == 0
    assert "NULL - 0x18 = ffffffff`ffffffe8" in null["dot11"]["findings"][0]
    for nbl in (empty, null):
        assert nbl["dot11"]["suspects"] == [] and not nbl["dot11"]["healthy"]


def test_cycle_and_max_stop_with_a_note(capsys, zoo):
    a = zoo.nbl_addresses
    record = walk(capsys, zoo, "loop1")
    assert record["count"] == 3 and not record["complete"]
    assert record["stop"] == "cycle: NBL #2's Next points back to NBL #0 (%s)" % fmt(a["loop1"])
    record = walk(capsys, zoo, "loop1", "--max", "2")
    assert record["count"] == 2 and not record["complete"]
    assert record["stop"] == "stopped after 2 NBLs (--max 2); the chain goes on at %s" % fmt(a["loop3"])


def test_mdl_pointing_at_unmapped_memory(capsys, zoo):
    nbl = walk(capsys, zoo, "lost", "--max", "1")["nbls"][0]
    (nb,) = nbl["net_buffers"]
    assert (nb["packet"]["captured"], nb["packet"]["length"], nb["packet"]["complete"]) == (0, 0x53, False)
    assert "MappedSystemVa" in nb["packet"]["gap"] and "PFN 0x7fffffff" in nb["packet"]["gap"]
    assert cli.main(["nblwalk", zoo.dump_path, "%x" % zoo.nbl_addresses["lost"], "--symbols",
                     zoo.symstore_path, "--max", "1"]) == 0
    out = capsys.readouterr().out
    assert "packet: none of its 0x53 bytes can be read" in out and "unreadable: bytes 0x0-0x52" in out


@pytest.mark.parametrize("address", [0xFFFFC08BE1500000, 0x1234, 0xFFFF800000000008, 0x00007FF612345678])
def test_bad_nbl_address_is_one_clear_record(capsys, zoo, address):
    record = walk(capsys, zoo, address)
    (nbl,) = record["nbls"]
    assert nbl["error"] and not record["complete"] and record["stop"].startswith("NBL #0 cannot be read")
    assert nbl["net_buffers"] == []


def test_garbage_nbl_is_bounded(capsys, zoo):
    """The Filt block holding the seed's text is no NBL: the walk says what it sees and stops."""
    record = walk(capsys, zoo, "filt562")
    first = record["nbls"][0]
    assert "FirstNetBuffer is NULL: an NBL always carries at least one NET_BUFFER" in first["notes"]
    assert record["count"] == 2 and record["nbls"][1]["error"].endswith("is not a pointer-aligned address")
    assert struct.pack("<Q", h(first["next"]))[:4] == b"FILT"


def test_dot11_modes(capsys, zoo):
    (nbl,) = walk(capsys, zoo, "wifi", "--no-dot11")["nbls"]
    assert nbl["dot11"] is None and h(nbl["context"]) != 0
    (nbl,) = walk(capsys, zoo, "syn", "--dot11", "--max", "1")["nbls"]
    assert nbl["dot11"] is None                      # no context: nothing to decode even when asked
    record = walk(capsys, zoo, "syn", "--no-owners")
    assert all(n["memory"] is None and n["pool_handle_memory"] is None for n in record["nbls"])


def tshark_fields(path, *fields):
    import shutil
    import subprocess

    tshark = shutil.which("tshark")
    assert tshark, "tshark not found: scripts/test installs it (apt package tshark)"
    command = [tshark, "-r", path, "-T", "fields", "-E", "separator=/t"]
    for name in fields:
        command += ["-e", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_pcapng_read_back_by_tshark(capsys, zoo, tmp_path):
    a = zoo.nbl_addresses
    path = str(tmp_path / "tx.pcapng")
    record = walk(capsys, zoo, "syn", "--pcap", path)
    assert record["pcap"]["packets"] == 5 and record["pcap"]["by_link"] == {"ethernet": 5}
    rows = tshark_fields(path, "frame.len", "frame.cap_len", "frame.comment", "frame.protocols", "ip.src",
                         "ipv6.src", "tcp.dstport", "udp.dstport", "dns.qry.name")
    summaries = [n["net_buffers"][0]["summary"] for n in record["nbls"]]
    assert len(rows) == 5
    for row, nbl, summary in zip(rows, record["nbls"], summaries):
        length = nbl["net_buffers"][0]["data_length"]
        assert row[0] == row[1] == str(length)
        assert row[2] == "NBL %s NB#0 (walk #%d)" % (fmt(h(nbl["address"])), nbl["index"])
        assert row[3].startswith("eth:ethertype:ip")
        assert (row[4] or row[5]) == summary["src"]
        assert (row[6] or row[7]) == (str(summary["dport"]) if summary["dport"] is not None else "")
    assert [r[3].split(":")[3] for r in rows] == ["tcp", "udp", "tcp", "icmp", "tcp"]
    assert rows[1][8] == "fileserver.corp.example"
    path = str(tmp_path / "wifi.pcapng")
    record = walk(capsys, zoo, "wifi", "--pcap", path)
    assert record["pcap"]["by_link"] == {"802.11": 1}
    (row,) = tshark_fields(path, "frame.protocols", "wlan.bssid", "ip.dst", "tcp.dstport", "frame.comment")
    assert row[0].startswith("wlan") and row[0].endswith(":ip:tcp")
    assert row[1:4] == ["02:00:00:00:00:10", "10.0.0.20", "445"]
    assert row[4] == "NBL %s NB#0 (walk #0)" % fmt(a["wifi"])


def test_pcapng_keeps_the_real_length_of_a_partial_packet(capsys, zoo, tmp_path):
    path = str(tmp_path / "lost.pcapng")
    record = walk(capsys, zoo, "lost", "--pcap", path, "--max", "1")
    assert record["pcap"]["packets"] == 0          # nothing readable: nothing to write, and said so
    assert tshark_fields(path, "frame.len") == []


def test_partial_packet_keeps_its_real_length(capsys, zoo, tmp_path):
    path = str(tmp_path / "half.pcapng")
    record = walk(capsys, zoo, "lost", "--pcap", path)
    assert record["count"] == 2
    nb = record["nbls"][1]["net_buffers"][0]
    assert (nb["packet"]["captured"], nb["packet"]["length"]) == (14, 83)
    assert nb["packet"]["gap"].startswith("bytes 0xe-0x52 (MDL ")
    summary = nb["summary"]
    assert (summary["captured"], summary["length"], summary["protocols"]) == (14, 83, ["ethernet"])
    assert record["pcap"]["packets"] == 1
    assert tshark_fields(path, "frame.len", "frame.cap_len") == [["83", "14"]]


@pytest.mark.parametrize("seed", [7, 1809, 20200828])
def test_generated_variants_name_the_generated_driver(capsys, tmp_path, seed):
    """The seed case with another filter: random driver name, tag, addresses and block placement."""
    import copy
    import random
    import string

    from pytriage.scenarios import build_from_file

    rng = random.Random(seed)
    with open(builtin_path("nbl-zoo"), encoding="utf-8") as fh:
        doc = copy.deepcopy(json.load(fh))
    tag = "".join(rng.choice(string.ascii_letters) for _ in range(4))
    driver = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10))) + ".sys"
    (filt,) = [m for m in doc["modules"] if m["name"] == "vwifimf.sys"]
    filt["name"], filt["path"] = driver, "\\SystemRoot\\System32\\drivers\\" + driver
    attach = filt["functions"][0]
    attach["hex"] = attach["hex"].replace("41b846696c74", "41b8" + tag.encode("ascii").hex())
    area = 0xFFFFC08BE2000000 + rng.randrange(0x40) * 0x100000
    doc["nbl"]["area"] = hex(area)
    padding = {"id": "padding", "tag": "Pad%d" % rng.randint(0, 9), "size": hex(rng.randrange(1, 0x40) * 0x10)}
    doc["nbl"]["blocks"].insert(rng.randrange(len(doc["nbl"]["blocks"]) + 1), padding)
    for item in doc["nbl"]["blocks"] + doc["nbl"]["nbls"] + [n["context"] for n in doc["nbl"]["nbls"]
                                                            if "context" in n]:
        for key in ("tag", "data_tag"):
            if item.get(key) == "Filt":
                item[key] = tag
    spec_path = tmp_path / "variant.json"
    spec_path.write_text(json.dumps(doc))
    built = build_from_file(str(spec_path), str(tmp_path / "out"), "bitmap")
    a = built.nbl_addresses
    assert a["filt562"] != 0xFFFFC08BE1400240
    (nbl,) = walk(capsys, built, "seed")["nbls"]
    dot11 = nbl["dot11"]
    assert h(dot11["pTOS"]) == a["filt562"] + 0x30
    assert (dot11["pTOS_memory"]["tag"], h(dot11["pTOS_memory"]["block"])) == (tag, a["filt562"] - 0x10)
    assert [o["binary"] for o in dot11["pTOS_memory"]["owners"]] == [driver]
    assert dot11["entries"][0]["routine_kind"] == "text" and 'UTF-16 "562"' in dot11["entries"][0]["routine"]
    assert dot11["suspects"] == [driver] and ("below nwifi (%s)" % driver) in dot11["verdict"]
    (nbl,) = walk(capsys, built, "wifi")["nbls"]
    assert nbl["dot11"]["healthy"] and [e["routine"] for e in nbl["dot11"]["entries"]] == [
        "nwifi!Pt6SendComplete", "nwifi!Dot11EncapSendComplete", "nwifi!Dot11MpSendComplete"]


def test_headroom_goes_to_the_first_mdl_only(tmp_path, capsys):
    """mdl_sizes count packet bytes: with headroom and three MDLs, only the first one carries the headroom."""
    import copy

    from pytriage.scenarios.builder import build_scenario
    from pytriage.scenarios.spec import parse_spec

    with open(builtin_path("nbl-zoo"), encoding="utf-8") as fh:
        doc = copy.deepcopy(json.load(fh))
    v6 = next(n for n in doc["nbl"]["nbls"] if n["id"] == "v6")
    v6["net_buffers"][0]["headroom"] = "0x10"
    built = build_scenario(parse_spec(doc), str(tmp_path), "bitmap")
    nb = walk(capsys, built, "v6", "--max", "1")["nbls"][0]["net_buffers"][0]
    assert [m["byte_count"] for m in nb["mdls"]] == [0x10 + 14, 40, 106 - 14 - 40]
    assert nb["packet"]["captured"] == 106 and nb["summary"]["dport"] == 443
