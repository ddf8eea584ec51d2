"""Symbol store client: local stores, file.ptr, CAB-compressed files, downloads, caches and hostile names.

Every server here is a local ``http.server`` on 127.0.0.1 serving a store-layout tree; no test needs
the internet. The end-to-end tests serve Microsoft's real files from the corpus store.
"""

import hashlib
import http.server
import json
import os
import shutil
import stat
import struct
import sys
import threading
import time
import urllib.parse

import cabarchive
import pytest

from pytriage.errors import SymbolError
from pytriage.symbols import store as store_module
from pytriage.symbols.cab import cab_summary
from pytriage.symbols.download import USER_AGENT
from pytriage.symbols.download_progress import TerminalProgress
from pytriage.symbols.file_identity import image_identity, pdb_guid
from pytriage.symbols.guid import guid_hex, normalize_guid
from pytriage.symbols.negative_cache import NOT_FOUND_MARKER
from pytriage.symbols.store import SymbolStore
from pytriage.symbols.store_names import image_key, pdb_key, sanitize_name
from pytriage.symbols.sympath import parse_symbol_path
from tests.conftest import CORPUS

SYMSTORE = os.path.join(CORPUS, "symstore")
AMDPPM_GUID = "1C19FDDB27BB3399D9B45973EFEAFCF3"
GUID = "0123456789ABCDEF0123456789ABCDEF"
KEY = GUID + "1"
PDB_BYTES = b"not really a pdb, but the store does not care" * 50


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def put(root, rel, data):
    """Write ``data`` at ``root/rel`` (creating directories); returns the path."""
    path = os.path.join(str(root), *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def files_under(root):
    """Every file below ``root`` as sorted relative paths with ``/``."""
    out = []
    for folder, _dirs, files in os.walk(str(root)):
        for name in files:
            out.append(os.path.relpath(os.path.join(folder, name), str(root)).replace(os.sep, "/"))
    return sorted(out)


def mszip_cab(member, data):
    """A real MSZIP-compressed CAB holding ``member`` (written with cabarchive's writer)."""
    archive = cabarchive.CabArchive()
    archive[member] = cabarchive.CabFile(data)
    return archive.save(compress=True)


def lzx_cab(member, size):
    """A CAB whose header declares LZX compression (typeCompress 3, window 21); its data is not LZX."""
    name = member.encode() + b"\x00"
    files_off = 36 + 8
    data_off = files_off + 16 + len(name)
    payload = b"\x00" * 16
    total = data_off + 8 + len(payload)
    header = struct.pack("<4sIIIIIBBHHHHH", b"MSCF", 0, total, 0, files_off, 0, 3, 1, 1, 1, 0, 0, 0)
    folder = struct.pack("<IHH", data_off, 1, 3 | (21 << 8))
    cffile = struct.pack("<IIHHHH", size, 0, 0, 0, 0, 0x20) + name
    cfdata = struct.pack("<IHH", 0, len(payload), size) + payload
    return header + folder + cffile + cfdata


# -- a local symbol server ------------------------------------------------------------------------

class StoreServer:
    """A symbol server on 127.0.0.1 serving ``root`` in store layout, case-insensitively like IIS.

    ``mode``: ``normal``; ``slow`` (waits ``delay`` seconds before answering); ``fail`` (500 for the
    next ``failures`` requests, then normal); ``404`` (everything missing); ``drop`` (closes the
    connection without answering). ``no_length`` omits Content-Length (body ends at close).
    ``log`` holds every request path, ``agents`` every User-Agent.
    """

    def __init__(self, root):
        self.root = str(root)
        self.mode = "normal"
        self.delay = 2.0
        self.failures = 0
        self.no_length = False
        self.log = []
        self.agents = []
        self.stop = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.log.append(self.path)
                owner.agents.append(self.headers.get("User-Agent"))
                if owner.mode == "slow":
                    owner.stop.wait(owner.delay)
                if owner.mode == "drop":
                    self.close_connection = True
                    return
                if owner.mode == "fail" and owner.failures > 0:
                    owner.failures -= 1
                    self.send_error(500)
                    return
                path = owner.resolve(self.path) if owner.mode != "404" else None
                if path is None:
                    self.send_error(404)
                    return
                with open(path, "rb") as fh:
                    body = fh.read()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    if not owner.no_length:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (slow mode)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def resolve(self, url_path):
        current = self.root
        for part in urllib.parse.unquote(url_path).strip("/").split("/"):
            if part in ("", ".", ".."):
                return None
            try:
                match = [entry for entry in os.listdir(current) if entry.lower() == part.lower()]
            except OSError:
                return None
            if not match:
                return None
            current = os.path.join(current, match[0])
        return current if os.path.isfile(current) else None

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def upstream(tmp_path):
    """The tree the server serves (tests fill it)."""
    root = tmp_path / "upstream"
    root.mkdir()
    return root


@pytest.fixture
def server(upstream):
    srv = StoreServer(upstream)
    yield srv
    srv.close()


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "cache")


def make_store(text, default_cache, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("backoff", 0.01)
    return SymbolStore(parse_symbol_path(text, default_cache), **kwargs)


# -- keys and names -------------------------------------------------------------------------------

def test_pdb_key_is_upper_guid_plus_unpadded_upper_hex_age():
    assert pdb_key("1c19fddb27bb3399d9b45973efeafcf3", 1) == "1C19FDDB27BB3399D9B45973EFEAFCF31"
    assert pdb_key("{1c19fddb-27bb-3399-d9b4-5973efeafcf3}", 0x2A) == "1C19FDDB27BB3399D9B45973EFEAFCF32A"
    assert pdb_key(GUID, 0) == GUID + "0"


def test_image_key_is_upper_timestamp_and_lower_size():
    assert image_key(0xC9C03000, 0x3B000) == "C9C030003b000"
    assert image_key(0x12, 0xABC000) == "00000012abc000"


@pytest.mark.parametrize("call", [
    lambda: normalize_guid("1C19FDDB27BB3399D9B45973EFEAFCF"),
    lambda: normalize_guid("1C19FDDB27BB3399D9B45973EFEAFCFZ"),
    lambda: normalize_guid("../../../../../../../../../../etc"),
    lambda: pdb_key(GUID, -1),
    lambda: pdb_key(GUID, 1 << 32),
    lambda: image_key(-1, 0x1000),
    lambda: image_key(0x1000, 1 << 32),
])
def test_invalid_keys_are_refused(call):
    with pytest.raises(SymbolError):
        call()


def test_guid_from_rsds_bytes_uses_windows_byte_order():
    raw = bytes.fromhex("dbfd191cbb279933d9b45973efeafcf3")
    assert guid_hex(raw) == AMDPPM_GUID


SAFE_NAMES = [
    ("amdppm.pdb", "amdppm.pdb"),
    ("\\SystemRoot\\system32\\drivers\\amdppm.sys", "amdppm.sys"),
    ("..\\..\\x.pdb", "x.pdb"),
    ("../../x.pdb", "x.pdb"),
    ("/etc/passwd", "passwd"),
    ("C:\\x.pdb", "x.pdb"),
    ("d:\\os\\obj\\amd64fre\\minkernel\\amdppm.pdb", "amdppm.pdb"),
    ("console.pdb", "console.pdb"),
    ("ntkrnlmp.pdb", "ntkrnlmp.pdb"),
    ("caf\u00e9.pdb", "caf\u00e9.pdb"),
]


@pytest.mark.parametrize("raw,expected", SAFE_NAMES)
def test_sanitize_keeps_only_a_safe_basename(raw, expected):
    assert sanitize_name(raw) == expected


BAD_NAMES = [
    ("", "no file name in it"),
    ("dir\\", "no file name in it"),
    ("..", "no file name in it"),
    ("a\\..", "no file name in it"),
    (".", "no file name in it"),
    ("x\x00.pdb", "control character 0x00"),
    ("x\n.pdb", "control character 0x0a"),
    ("x\x7f.pdb", "control character 0x7f"),
    ("C:x.pdb", "character ':' is not allowed"),
    ("x.pdb:stream", "character ':' is not allowed"),
    ("x?.pdb", "character '?' is not allowed"),
    ("x.pdb.", "ends with a dot or space"),
    ("x.pdb ", "ends with a dot or space"),
    ("CON", "a Windows device name"),
    ("con.pdb", "a Windows device name"),
    ("NUL .pdb", "a Windows device name"),
    ("lpt9.sys", "a Windows device name"),
    ("COM1", "a Windows device name"),
    ("a" * 252 + ".pdb", "longer than 255 characters"),
    ("\u00e9" * 130 + ".pdb", "longer than 255 bytes"),
    ("\udcff.pdb", "not valid Unicode"),
]


@pytest.mark.parametrize("raw,reason", BAD_NAMES)
def test_sanitize_refuses_hostile_names(raw, reason):
    with pytest.raises(SymbolError) as info:
        sanitize_name(raw)
    assert str(info.value).startswith("refusing symbol file name ")
    assert str(info.value).endswith(": " + reason)


# -- identities of real files (used to vet flat directory hits) ------------------------------------

def test_pdb_guid_reads_real_pdbs_from_the_corpus():
    assert pdb_guid(os.path.join(SYMSTORE, "amdppm.pdb", AMDPPM_GUID + "1", "amdppm.pdb")) == AMDPPM_GUID
    assert pdb_guid(os.path.join(SYMSTORE, "user32.pdb", "15F778B3671D4EFDBDCDE79905308B792", "user32.pdb")) == (
        "15F778B3671D4EFDBDCDE79905308B79")


def test_image_identity_reads_real_drivers_from_the_corpus():
    assert image_identity(os.path.join(SYMSTORE, "amdppm.sys", "c9c030003b000", "amdppm.sys")) == (
        0xC9C03000, 0x3B000)
    assert image_identity(os.path.join(SYMSTORE, "Wdf01000.sys", "a9a9d36ed1000", "Wdf01000.sys")) == (
        0xA9A9D36E, 0xD1000)


def test_identity_readers_return_none_for_other_files(tmp_path):
    junk = put(tmp_path, "junk.bin", b"MZ" + b"\xff" * 100)
    assert pdb_guid(junk) is None
    assert image_identity(junk) is None
    assert pdb_guid(str(tmp_path / "missing")) is None


# -- local stores ---------------------------------------------------------------------------------

def test_local_store_lookup_is_case_insensitive(tmp_path, cache):
    # A store copied to Linux keeps the case it was written with: lower-case keys are common.
    path = put(tmp_path, "store/AMDPPM.PDB/" + KEY.lower() + "/amdppm.PDB", PDB_BYTES)
    st = make_store(str(tmp_path / "store"), cache)
    assert st.find_pdb("amdppm.pdb", GUID, 1) == path
    assert st.stats.cache_hits == 1
    assert st.stats.requests == 0


def test_real_corpus_store_found_locally_with_upper_case_keys(cache):
    st = make_store(SYMSTORE, cache)
    assert st.find_image("amdppm.sys", 0xC9C03000, 0x3B000) == os.path.join(
        SYMSTORE, "amdppm.sys", "c9c030003b000", "amdppm.sys")
    assert st.find_pdb("amdppm.pdb", AMDPPM_GUID, 1) == os.path.join(
        SYMSTORE, "amdppm.pdb", AMDPPM_GUID + "1", "amdppm.pdb")
    assert st.find_pdb("amdppm.pdb", AMDPPM_GUID, 2) is None
    assert st.stats.as_dict() == {"requests": 0, "bytes_downloaded": 0, "downloads": 0, "cache_hits": 2,
                                  "negative_hits": 0, "not_found": 1}


def test_flat_directory_hit_is_used_only_when_its_identity_matches(tmp_path, cache):
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(os.path.join(SYMSTORE, "amdppm.pdb", AMDPPM_GUID + "1", "amdppm.pdb"), str(flat / "amdppm.pdb"))
    shutil.copy(os.path.join(SYMSTORE, "amdppm.sys", "c9c030003b000", "amdppm.sys"), str(flat / "AMDPPM.SYS"))
    st = make_store(str(flat), cache)
    assert st.find_pdb("amdppm.pdb", AMDPPM_GUID, 1) == str(flat / "amdppm.pdb")
    assert st.find_image("amdppm.sys", 0xC9C03000, 0x3B000) == str(flat / "AMDPPM.SYS")
    assert st.messages == []
    assert st.find_pdb("amdppm.pdb", GUID, 1) is None
    assert st.find_image("amdppm.sys", 0xC9C03000, 0x3C000) is None
    assert st.messages == [
        "%s: not used: PDB GUID is %s, not %s" % (flat / "amdppm.pdb", AMDPPM_GUID, GUID),
        "%s: not used: TimeDateStamp/SizeOfImage are C9C03000/3b000, not C9C03000/3c000" % (flat / "AMDPPM.SYS"),
    ]


def test_plain_directory_is_also_read_in_store_layout(tmp_path, cache):
    path = put(tmp_path, "syms/x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    assert make_store(str(tmp_path / "syms"), cache).find_pdb("x.pdb", GUID, 1) == path


def test_local_file_ptr_path_is_followed_and_msg_reported(tmp_path, cache):
    target = put(tmp_path, "elsewhere/real.pdb", PDB_BYTES)
    put(tmp_path, "store/x.pdb/%s/file.ptr" % KEY, b"PATH:" + target.encode() + b"\r\n")
    put(tmp_path, "store/y.pdb/%s/file.ptr" % KEY, b"MSG: withdrawn by the build lab")
    st = make_store("srv*" + str(tmp_path / "store"), cache)
    assert st.find_pdb("x.pdb", GUID, 1) == target
    assert st.find_pdb("y.pdb", GUID, 1) is None
    assert st.messages == ["y.pdb: %s: withdrawn by the build lab" % (tmp_path / "store/y.pdb" / KEY / "file.ptr")]


def test_file_ptr_to_a_missing_or_special_file_is_not_followed(tmp_path, cache):
    put(tmp_path, "store/x.pdb/%s/file.ptr" % KEY, b"PATH:" + str(tmp_path / "missing.pdb").encode())
    put(tmp_path, "store/y.pdb/%s/file.ptr" % KEY, b"PATH:/dev/zero")
    put(tmp_path, "store/z.pdb/%s/file.ptr" % KEY, b"PATH:http://elsewhere/z.pdb")
    put(tmp_path, "store/r.pdb/%s/file.ptr" % KEY, b"PATH:store/x.pdb/%s/file.ptr" % KEY.encode())
    put(tmp_path, "store/b.pdb/%s/file.ptr" % KEY, b"hello")
    st = make_store(str(tmp_path / "store"), cache)
    for name in ("x.pdb", "y.pdb", "z.pdb", "r.pdb", "b.pdb"):
        assert st.find_pdb(name, GUID, 1) is None
    assert [m.split(": ", 2)[2] for m in st.messages] == [
        "file.ptr points to %r, which is not a readable file" % str(tmp_path / "missing.pdb"),
        "file.ptr points to '/dev/zero', which is not a readable file",
        "file.ptr points to 'http://elsewhere/z.pdb', only local paths are followed",
        "file.ptr points to 'store/x.pdb/%s/file.ptr', a relative path (not followed)" % KEY,
        "file.ptr holds neither PATH: nor MSG: ('hello')",
    ]


def test_compressed_file_in_plain_directory_expands_into_the_default_cache(tmp_path, cache):
    data = os.urandom(20000) + PDB_BYTES * 40  # several 32 KiB CAB blocks
    put(tmp_path, "syms/x.pdb/%s/x.pd_" % KEY, mszip_cab("x.pdb", data))
    before = files_under(tmp_path / "syms")
    st = make_store(str(tmp_path / "syms"), cache)
    found = st.find_pdb("x.pdb", GUID, 1)
    assert found == os.path.join(cache, "x.pdb", KEY, "x.pdb")
    with open(found, "rb") as fh:
        assert fh.read() == data
    assert files_under(tmp_path / "syms") == before  # the user's directory is never written to
    assert files_under(cache) == ["x.pdb/%s/x.pdb" % KEY]


def test_chain_of_downstream_stores_copies_into_the_first(tmp_path, server):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    put(b, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    st = make_store("srv*%s*%s*%s" % (a, b, server.url), str(tmp_path / "dc"))
    assert st.find_pdb("x.pdb", GUID, 1) == os.path.join(a, "x.pdb", KEY, "x.pdb")
    assert sha256(os.path.join(a, "x.pdb", KEY, "x.pdb")) == sha256(os.path.join(b, "x.pdb", KEY, "x.pdb"))
    assert server.log == []
    os.unlink(os.path.join(b, "x.pdb", KEY, "x.pdb"))
    assert st.find_pdb("x.pdb", GUID, 1) == os.path.join(a, "x.pdb", KEY, "x.pdb")
    assert server.log == []


def test_cache_star_copies_files_found_in_later_directories(tmp_path):
    put(tmp_path, "share/x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    cc = str(tmp_path / "cc")
    st = make_store("cache*%s;%s" % (cc, tmp_path / "share"), str(tmp_path / "dc"))
    assert st.find_pdb("x.pdb", GUID, 1) == os.path.join(cc, "x.pdb", KEY, "x.pdb")
    assert files_under(cc) == ["x.pdb/%s/x.pdb" % KEY]


# -- downloads ------------------------------------------------------------------------------------

def test_download_lands_in_the_cache_in_store_layout(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    found = st.find_pdb("x.pdb", GUID, 1)
    assert found == os.path.join(cache, "x.pdb", KEY, "x.pdb")
    with open(found, "rb") as fh:
        assert fh.read() == PDB_BYTES
    assert server.log == ["/x.pdb/%s/x.pdb" % KEY]
    assert server.agents == [USER_AGENT]
    assert USER_AGENT.startswith("Microsoft-Symbol-Server/10.0.0.0 pytriage/")
    assert files_under(cache) == ["x.pdb/%s/x.pdb" % KEY]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(found).st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
    assert st.stats.as_dict() == {"requests": 1, "bytes_downloaded": len(PDB_BYTES), "downloads": 1,
                                  "cache_hits": 0, "negative_hits": 0, "not_found": 0}


def test_second_lookup_is_a_cache_hit_without_a_request(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    text = "srv*%s*%s" % (cache, server.url)
    first = make_store(text, "/unused").find_pdb("x.pdb", GUID, 1)
    second_run = make_store(text, "/unused")
    assert second_run.find_pdb("x.pdb", GUID, 1) == first
    assert server.log == ["/x.pdb/%s/x.pdb" % KEY]
    assert second_run.stats.requests == 0
    assert second_run.stats.cache_hits == 1


def test_srv_url_alone_downloads_into_the_default_cache(upstream, server, tmp_path):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    dc = str(tmp_path / "dc")
    assert make_store("srv*" + server.url, dc).find_pdb("x.pdb", GUID, 1) == os.path.join(dc, "x.pdb", KEY, "x.pdb")


def test_server_file_ptr_path_is_copied_into_the_cache(upstream, server, cache, tmp_path):
    target = put(tmp_path, "share/x.pdb", PDB_BYTES)
    put(upstream, "x.pdb/%s/file.ptr" % KEY, b"PATH:" + target.encode())
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    found = st.find_pdb("x.pdb", GUID, 1)
    assert found == os.path.join(cache, "x.pdb", KEY, "x.pdb")
    assert sha256(found) == sha256(target)
    assert server.log == ["/x.pdb/%s/x.pdb" % KEY, "/x.pdb/%s/x.pdb" % KEY.lower(), "/x.pdb/%s/x.pd_" % KEY,
                          "/x.pdb/%s/file.ptr" % KEY]


def test_file_ptr_name_never_chooses_where_we_write(upstream, server, cache, tmp_path):
    target = put(tmp_path, "share/..evil..name.pdb", PDB_BYTES)
    put(upstream, "x.pdb/%s/file.ptr" % KEY, b"PATH:" + target.encode())
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    assert st.find_pdb("x.pdb", GUID, 1) == os.path.join(cache, "x.pdb", KEY, "x.pdb")
    assert files_under(cache) == ["x.pdb/%s/x.pdb" % KEY]


def test_server_file_ptr_msg_is_not_found_with_the_text_and_remembered(upstream, server, cache):
    put(upstream, "x.pdb/%s/file.ptr" % KEY, b"MSG: this file was deleted")
    text = "srv*%s*%s" % (cache, server.url)
    st = make_store(text, "/unused")
    assert st.find_pdb("x.pdb", GUID, 1) is None
    assert st.messages == ["x.pdb: %s: this file was deleted" % server.url]
    assert len(server.log) == 4
    again = make_store(text, "/unused")
    assert again.find_pdb("x.pdb", GUID, 1) is None
    assert len(server.log) == 4
    assert again.stats.negative_hits == 1
    assert again.messages == ["x.pdb: %s: this file was deleted (remembered)" % server.url]


def test_compressed_download_is_expanded_with_cabarchive(upstream, server, cache):
    data = os.urandom(70000)  # three MSZIP blocks
    put(upstream, "x.pdb/%s/x.pd_" % KEY, mszip_cab("x.pdb", data))
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    found = st.find_pdb("x.pdb", GUID, 1)
    assert found == os.path.join(cache, "x.pdb", KEY, "x.pdb")
    with open(found, "rb") as fh:
        assert fh.read() == data
    assert server.log == ["/x.pdb/%s/x.pdb" % KEY, "/x.pdb/%s/x.pdb" % KEY.lower(), "/x.pdb/%s/x.pd_" % KEY]
    assert files_under(cache) == ["x.pdb/%s/x.pdb" % KEY]  # the archive itself is not kept


def test_corrupt_compressed_download_is_an_error_and_not_kept(upstream, server, cache):
    cab = bytearray(mszip_cab("x.pdb", PDB_BYTES))
    cab[-20:] = b"\xff" * 20
    put(upstream, "x.pdb/%s/x.pd_" % KEY, bytes(cab))
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value).startswith(os.path.join(cache, "x.pdb", KEY, "x.pd_") + ": cannot expand compressed")
    assert files_under(cache) == []


def test_cab_summary_reads_compression_type_and_sizes():
    assert cab_summary(mszip_cab("x.pdb", b"abc" * 1000)) == ({1}, [("x.pdb", 3000)])
    assert cab_summary(lzx_cab("x.pdb", 12345)) == ({3}, [("x.pdb", 12345)])
    with pytest.raises(ValueError):
        cab_summary(b"PK\x03\x04" + b"\x00" * 40)


def test_lzx_without_an_external_expander_is_a_clear_error(upstream, server, cache, tmp_path, monkeypatch):
    put(upstream, "x.pdb/%s/x.pd_" % KEY, lzx_cab("x.pdb", 1000))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value) == (
        "x.pd_ is LZX-compressed, which cabarchive cannot expand: install cabextract (Linux/macOS) "
        "or put expand.exe (Windows) on PATH")
    # The archive is kept: after installing the tool the next run needs no download.
    assert files_under(cache) == ["x.pdb/%s/x.pd_" % KEY]
    server.mode = "404"
    with pytest.raises(SymbolError):
        make_store("srv*%s*%s" % (cache, server.url), "/unused").find_pdb("x.pdb", GUID, 1)
    assert len(server.log) == 3


def test_lzx_is_handed_to_cabextract_when_on_path(upstream, server, cache, tmp_path, monkeypatch):
    # A stand-in cabextract that records its arguments and writes a known file where it is told to.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    argv_log = tmp_path / "argv.json"
    tool = bindir / "cabextract"
    tool.write_text(
        "#!%s\n"
        "import json, os, sys\n"
        "json.dump(sys.argv[1:], open(%r, 'w'))\n"
        "out = sys.argv[sys.argv.index('-d') + 1]\n"
        "open(os.path.join(out, 'X.PDB'), 'wb').write(b'expanded by cabextract')\n" % (sys.executable, str(argv_log)))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(store_module.os, "name", "posix")
    put(upstream, "x.pdb/%s/x.pd_" % KEY, lzx_cab("x.pdb", 22))
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    found = st.find_pdb("x.pdb", GUID, 1)
    assert found == os.path.join(cache, "x.pdb", KEY, "x.pdb")
    with open(found, "rb") as fh:
        assert fh.read() == b"expanded by cabextract"
    argv = json.loads(argv_log.read_text())
    assert argv[:2] == ["-q", "-d"]
    assert os.path.dirname(argv[2]) == os.path.join(cache, "x.pdb", KEY)
    assert argv[3] == os.path.join(cache, "x.pdb", KEY, "x.pd_")
    assert files_under(cache) == ["x.pdb/%s/x.pdb" % KEY]


def test_404_is_remembered_and_asked_again_after_the_ttl(server, cache):
    text = "srv*%s*%s" % (cache, server.url)
    st = make_store(text, "/unused")
    assert st.find_pdb("x.pdb", GUID, 1) is None
    assert server.log == ["/x.pdb/%s/x.pdb" % KEY, "/x.pdb/%s/x.pdb" % KEY.lower(), "/x.pdb/%s/x.pd_" % KEY,
                          "/x.pdb/%s/file.ptr" % KEY]
    marker = os.path.join(cache, "x.pdb", KEY, NOT_FOUND_MARKER)
    with open(marker, encoding="utf-8") as fh:
        entry = json.load(fh)[server.url]
    assert entry["reason"] == "HTTP 404"
    assert abs(entry["time"] - time.time()) < 60
    second_run = make_store(text, "/unused")
    assert second_run.find_pdb("x.pdb", GUID, 1) is None
    assert len(server.log) == 4
    assert second_run.stats.negative_hits == 1
    assert second_run.stats.requests == 0
    # A day later the server is asked again.
    with open(marker, "w", encoding="utf-8") as fh:
        json.dump({server.url: {"time": time.time() - 86401, "reason": "HTTP 404"}}, fh)
    assert make_store(text, "/unused").find_pdb("x.pdb", GUID, 1) is None
    assert len(server.log) == 8


def test_negative_cache_can_be_disabled(server, cache):
    text = "srv*%s*%s" % (cache, server.url)
    for _ in range(2):
        assert make_store(text, "/unused", negative_ttl=0).find_pdb("x.pdb", GUID, 1) is None
    assert len(server.log) == 8


def test_negative_cache_is_per_server(tmp_path, cache):
    empty = tmp_path / "empty"
    full = tmp_path / "full"
    empty.mkdir()
    put(full, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    first, second = StoreServer(empty), StoreServer(full)
    try:
        text = "srv*%s*%s;srv*%s*%s" % (cache, first.url, cache, second.url)
        assert make_store(text, "/unused").find_pdb("x.pdb", GUID, 1) == os.path.join(cache, "x.pdb", KEY, "x.pdb")
        assert len(first.log) == 4
        assert len(second.log) == 1
    finally:
        first.close()
        second.close()


def test_slow_server_times_out_with_the_url_and_file_in_the_message(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    server.mode = "slow"
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", timeout=0.3, retries=2)
    started = time.monotonic()
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert time.monotonic() - started < 1.5  # a timeout is not retried
    assert str(info.value) == "symbol server %s: timed out after 0.3s fetching x.pdb" % server.url
    assert files_under(cache) == []
    # The same store does not wait on that server again.
    with pytest.raises(SymbolError) as again:
        st.find_pdb("y.pdb", GUID, 1)
    assert str(again.value) == ("symbol server %s: not asked for y.pdb after an earlier failure "
                                "(timed out after 0.3s fetching x.pdb)" % server.url)
    assert len(server.log) == 1


def test_500_then_200_succeeds_after_a_retry(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    server.mode = "fail"
    server.failures = 1
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", retries=2)
    assert st.find_pdb("x.pdb", GUID, 1) == os.path.join(cache, "x.pdb", KEY, "x.pdb")
    assert server.log == ["/x.pdb/%s/x.pdb" % KEY] * 2


def test_persistent_500_gives_up_after_the_retries(upstream, server, cache):
    server.mode = "fail"
    server.failures = 100
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", retries=2)
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value) == ("symbol server %s: HTTP 500 Internal Server Error fetching x.pdb (3 attempts)"
                               % server.url)
    assert len(server.log) == 3


def test_dropped_connection_is_retried_then_reported(server, cache):
    server.mode = "drop"
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", retries=1)
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value).startswith("symbol server %s: " % server.url)
    assert str(info.value).endswith(" fetching x.pdb (2 attempts)")
    assert len(server.log) == 2


def test_connection_refused_is_reported(cache):
    probe = StoreServer(os.path.dirname(cache))
    url = probe.url
    probe.close()
    st = make_store("srv*%s*%s" % (cache, url), "/unused", retries=0)
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value) == "symbol server %s: connection refused fetching x.pdb (1 attempt)" % url


def test_failed_server_does_not_hide_a_later_element(tmp_path, server, cache):
    server.mode = "fail"
    server.failures = 100
    path = put(tmp_path, "local/x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    st = make_store("srv*%s*%s;%s" % (cache, server.url, tmp_path / "local"), "/unused", retries=0)
    assert st.find_pdb("x.pdb", GUID, 1) == path
    assert st.messages == ["symbol server %s: HTTP 500 Internal Server Error fetching x.pdb (1 attempt)" % server.url]


def test_size_cap_by_content_length_leaves_no_file(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, b"x" * 5000)
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", max_bytes=4096)
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value) == "symbol server %s: x.pdb is 5000 bytes, over the 4096-byte limit" % server.url
    assert files_under(cache) == []


def test_size_cap_while_streaming_leaves_no_partial_file(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, b"x" * 300000)
    server.no_length = True
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", max_bytes=100000)
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value) == "symbol server %s: x.pdb is larger than the 100000-byte limit" % server.url
    assert files_under(cache) == []


def test_download_without_content_length_is_complete(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    server.no_length = True
    found = make_store("srv*%s*%s" % (cache, server.url), "/unused").find_pdb("x.pdb", GUID, 1)
    with open(found, "rb") as fh:
        assert fh.read() == PDB_BYTES


def test_compressed_file_expanding_over_the_cap_is_refused(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pd_" % KEY, mszip_cab("x.pdb", b"\x00" * 200000))
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", max_bytes=100000)
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value) == "%s: expands to 200000 bytes, over the 100000-byte limit" % os.path.join(
        cache, "x.pdb", KEY, "x.pd_")
    assert files_under(cache) == []


def test_progress_reports_bytes_done_and_total(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, b"y" * 150000)
    calls = []
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused", progress=lambda *a: calls.append(a))
    st.find_pdb("x.pdb", GUID, 1)
    assert calls[0] == ("x.pdb", 0, 150000)
    assert calls[-1] == ("x.pdb", 150000, 150000)
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)


def test_terminal_progress_line_format():
    import io
    out = io.StringIO()
    bar = TerminalProgress(out)
    bar("x.pdb", 0, 2 * 1024 * 1024)
    bar("x.pdb", 2 * 1024 * 1024, 2 * 1024 * 1024)
    assert out.getvalue() == ("\rdownloading x.pdb: 0 B / 2.0 MiB\x1b[K"
                              "\rdownloading x.pdb: 2.0 MiB / 2.0 MiB\x1b[K\n")


def test_progress_is_silent_when_stderr_is_not_a_terminal(cache, monkeypatch):
    import io
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a redirected stderr, even under pytest -s
    assert SymbolStore(parse_symbol_path("", cache)).progress is None
    assert SymbolStore(parse_symbol_path("", cache), progress=False).progress is None
    assert isinstance(SymbolStore(parse_symbol_path("", cache), progress=True).progress, TerminalProgress)


def test_stats_line_and_json(upstream, server, cache):
    put(upstream, "x.pdb/%s/x.pdb" % KEY, b"z" * 2048)
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    st.find_pdb("x.pdb", GUID, 1)
    st.find_pdb("x.pdb", GUID, 1)
    assert st.stats_line() == ("1 requests, 2.0 KiB downloaded (1 files), 1 cache hits, 0 negative-cache hits, "
                               "0 not found")
    assert st.stats_json() == {"requests": 1, "bytes_downloaded": 2048, "downloads": 1, "cache_hits": 1,
                               "negative_hits": 0, "not_found": 0, "messages": []}


def test_store_built_from_text_or_environment(tmp_path, monkeypatch):
    path = put(tmp_path, "syms/x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    monkeypatch.setenv("_NT_SYMBOL_PATH", str(tmp_path / "syms"))
    monkeypatch.delenv("_NT_ALT_SYMBOL_PATH", raising=False)
    from_env = SymbolStore(progress=False)
    assert from_env.symbol_path.source == "_NT_SYMBOL_PATH"
    assert from_env.find_pdb("x.pdb", GUID, 1) == path
    from_text = SymbolStore(str(tmp_path / "syms"), progress=False)
    assert from_text.symbol_path.source == "--symbols"
    assert from_text.find_pdb("x.pdb", GUID, 1) == path


def test_default_path_never_makes_a_request(tmp_path, server):
    (tmp_path / "work" / "symbols_cache").mkdir(parents=True)
    from pytriage.symbols.sympath import resolve_symbol_path
    path = resolve_symbol_path(None, env={"HOME": str(tmp_path)}, cwd=str(tmp_path / "work"))
    st = SymbolStore(path, progress=False)
    assert st.find_pdb("x.pdb", GUID, 1) is None
    assert st.find_image("x.sys", 0x12345678, 0x1000) is None
    assert st.stats.requests == 0
    assert server.log == []


# -- hostile names --------------------------------------------------------------------------------

@pytest.mark.parametrize("hostile,safe", [
    ("..\\..\\x.pdb", "x.pdb"),
    ("../../x.pdb", "x.pdb"),
    ("/etc/passwd", "passwd"),
    ("C:\\x.pdb", "x.pdb"),
])
def test_hostile_names_are_reduced_to_a_basename_inside_the_cache(tmp_path, upstream, server, hostile, safe):
    cache = str(tmp_path / "deep" / "er" / "cache")  # so that ../../ would still land inside tmp_path
    put(upstream, "%s/%s/%s" % (safe, KEY, safe), PDB_BYTES)
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    assert st.find_pdb(hostile, GUID, 1) == os.path.join(cache, safe, KEY, safe)
    assert server.log == ["/%s/%s/%s" % (safe, KEY, safe)]
    assert files_under(tmp_path) == sorted([
        "upstream/%s/%s/%s" % (safe, KEY, safe),
        "deep/er/cache/%s/%s/%s" % (safe, KEY, safe),
    ])


@pytest.mark.parametrize("hostile", ["x\x00.pdb", "CON", "nul.pdb", "C:x.pdb", "a" * 300 + ".pdb", "..", ""])
def test_hostile_names_that_cannot_be_made_safe_are_refused_before_any_io(tmp_path, server, cache, hostile):
    st = make_store("srv*%s*%s;%s" % (cache, server.url, tmp_path), "/unused")
    with pytest.raises(SymbolError) as info:
        st.find_pdb(hostile, GUID, 1)
    assert str(info.value).startswith("refusing symbol file name ")
    with pytest.raises(SymbolError):
        st.find_image(hostile, 0x12345678, 0x1000)
    assert server.log == []
    assert not os.path.exists(cache)


def test_symlink_in_the_cache_pointing_outside_is_refused(tmp_path, upstream, server, cache):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.makedirs(cache)
    os.symlink(str(outside), os.path.join(cache, "x.pdb"))
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    st = make_store("srv*%s*%s" % (cache, server.url), "/unused")
    with pytest.raises(SymbolError) as info:
        st.find_pdb("x.pdb", GUID, 1)
    assert str(info.value) == "refusing to write %s: it resolves outside the symbol cache %s" % (
        os.path.join(cache, "x.pdb", KEY), cache)
    assert os.listdir(str(outside)) == []
    assert server.log == []


def test_hostile_key_from_find_file_is_refused(cache):
    st = make_store(cache, cache)
    for key in ("../../etc", "12/34", "", "g" * 10, "1" * 65):
        with pytest.raises(SymbolError):
            st.find_file("x.pdb", key)


def test_cache_writes_reuse_an_existing_lower_case_key_directory(upstream, server, cache):
    os.makedirs(os.path.join(cache, "x.pdb", KEY.lower()))
    put(upstream, "x.pdb/%s/x.pdb" % KEY, PDB_BYTES)
    found = make_store("srv*%s*%s" % (cache, server.url), "/unused").find_pdb("x.pdb", GUID, 1)
    assert found == os.path.join(cache, "x.pdb", KEY.lower(), "x.pdb")
    assert files_under(cache) == ["x.pdb/%s/x.pdb" % KEY.lower()]


# -- Microsoft's real files, end to end (served locally) ------------------------------------------

@pytest.fixture
def corpus_server():
    assert os.path.isdir(SYMSTORE), "the corpus must sit at ../shared/corpus beside the repo"
    srv = StoreServer(SYMSTORE)
    yield srv
    srv.close()


def test_real_files_download_by_their_keys(corpus_server, cache):
    st = make_store("srv*%s*%s" % (cache, corpus_server.url), "/unused")
    image = st.find_image("\\SystemRoot\\System32\\drivers\\amdppm.sys", 0xC9C03000, 0x3B000)
    assert image == os.path.join(cache, "amdppm.sys", "C9C030003b000", "amdppm.sys")
    assert sha256(image) == sha256(os.path.join(SYMSTORE, "amdppm.sys", "c9c030003b000", "amdppm.sys"))
    assert image_identity(image) == (0xC9C03000, 0x3B000)

    pdb = st.find_pdb("amdppm.pdb", AMDPPM_GUID, 1)
    assert pdb == os.path.join(cache, "amdppm.pdb", AMDPPM_GUID + "1", "amdppm.pdb")
    assert sha256(pdb) == sha256(os.path.join(SYMSTORE, "amdppm.pdb", AMDPPM_GUID + "1", "amdppm.pdb"))
    assert pdb_guid(pdb) == AMDPPM_GUID

    wdf = st.find_image("Wdf01000.sys", 0xA9A9D36E, 0xD1000)
    assert sha256(wdf) == sha256(os.path.join(SYMSTORE, "Wdf01000.sys", "a9a9d36ed1000", "Wdf01000.sys"))

    assert corpus_server.log == [
        "/amdppm.sys/C9C030003b000/amdppm.sys",
        "/amdppm.pdb/%s1/amdppm.pdb" % AMDPPM_GUID,
        "/Wdf01000.sys/A9A9D36Ed1000/Wdf01000.sys",
    ]
    assert st.stats.bytes_downloaded == 211264 + 674816 + 827704
    # Everything again: all cache hits, no new request.
    assert st.find_pdb("amdppm.pdb", AMDPPM_GUID, 1) == pdb
    assert st.find_image("amdppm.sys", 0xC9C03000, 0x3B000) == image
    assert len(corpus_server.log) == 3


def test_real_pdb_compressed_on_the_server_round_trips(tmp_path, cache):
    original = os.path.join(SYMSTORE, "amdppm.pdb", AMDPPM_GUID + "1", "amdppm.pdb")
    with open(original, "rb") as fh:
        data = fh.read()
    put(tmp_path / "packed", "amdppm.pdb/%s1/amdppm.pd_" % AMDPPM_GUID, mszip_cab("amdppm.pdb", data))
    srv = StoreServer(tmp_path / "packed")
    try:
        found = make_store("srv*%s*%s" % (cache, srv.url), "/unused").find_pdb("amdppm.pdb", AMDPPM_GUID, 1)
    finally:
        srv.close()
    assert sha256(found) == sha256(original)
    assert pdb_guid(found) == AMDPPM_GUID
