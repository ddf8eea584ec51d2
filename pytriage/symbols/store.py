"""Find PDBs and images in local symbol stores and on HTTP symbol servers, and cache what we download.

A crash dump names each module's PDB (CodeView record: name, GUID, age) and image (name,
TimeDateStamp, SizeOfImage); a symbol store files them under a *key* made of those values
(``name.pdb/<GUID><age>/name.pdb``, ``name.sys/<TimeDateStamp><SizeOfImage>/name.sys``). This module
turns such a request into a local file path, walking the elements of a :class:`SymbolPath` in order.

Why it is built the way it is:

- Names come from the dump, i.e. from the machine that crashed, possibly corrupted or hostile. Every
  name is reduced to a safe basename (:func:`sanitize_name`) before it touches a path, keys are hex
  only, and every directory we write to is checked (after resolving symlinks) to be inside the cache.
  A hostile name ends in ``SymbolError`` or a harmless basename, never in a write elsewhere.
- Local stores are looked up case-insensitively: Microsoft's server and Windows shares ignore case,
  and a store copied to Linux keeps whatever case it was written with (lower-case keys are common).
- A hit in a cache never makes a request, and a 404 is remembered on disk for ``negative_ttl`` so that
  the next run over the same dump does not ask the server again for the hundred modules it does not
  have. A server that timed out or kept failing is not asked again by the same ``SymbolStore``: one
  dead server must not cost ``timeout`` seconds per module.
- Downloads are written to a temporary file in the destination directory and renamed into place, so
  an interrupted run never leaves a truncated PDB that a later run would trust.
- Compressed store files (``name.pd_``) are CAB archives. ``cabarchive`` (pure Python) expands the
  stored and MSZIP forms. LZX-compressed CABs, which older Microsoft stores contain, are handed to
  ``cabextract`` (Linux, macOS) or ``expand.exe`` (Windows) when one is on PATH. We do not write our
  own LZX decoder: it is a large, intricate algorithm whose bugs produce silently corrupt PDBs (wrong
  offsets, wrong names) rather than errors; Microsoft's public server hands out uncompressed files
  anyway, and the existing tools are mature, so an explicit "install cabextract" error is the safer
  trade.
"""

import errno
import http.client
import json
import ntpath
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from typing import IO, Callable, Dict, List, Optional, Set, Tuple, Union

try:
    from ssl import SSLError as _SSLError
except ImportError:  # a Python built without OpenSSL can still use http:// servers
    _SSLError = None  # type: ignore[assignment,misc]

from pytriage import __version__
from pytriage.errors import SymbolError
from pytriage.symbols.guid import normalize_guid
from pytriage.symbols.sympath import LocalDir, PathElement, SymbolPath, resolve_symbol_path

DEFAULT_TIMEOUT = 20.0
DEFAULT_RETRIES = 2
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_NEGATIVE_TTL = 24 * 3600.0
DEFAULT_BACKOFF = 0.5

#: Microsoft's server varies its answers by client; this prefix gets the same files WinDbg gets.
USER_AGENT = "Microsoft-Symbol-Server/10.0.0.0 pytriage/%s" % __version__

#: Marker file (JSON, server URL -> time and reason) recording that a server did not have a file.
NOT_FOUND_MARKER = ".pytriage-notfound"

#: A ``file.ptr`` is one short line; anything longer is not one.
MAX_PTR_BYTES = 64 * 1024

#: Seconds an external CAB expander (cabextract, expand.exe) may run.
EXPANDER_TIMEOUT = 600.0

#: ``progress(label, done, total)``: ``total`` is None while unknown; the last call has done == total.
ProgressCallback = Callable[[str, int, Optional[int]], None]

_WINDOWS_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + ["COM%s" % c for c in "0123456789\u00b9\u00b2\u00b3"]
    + ["LPT%s" % c for c in "0123456789\u00b9\u00b2\u00b3"]
)
_BAD_NAME_CHARS = frozenset('<>:"|?*')
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_CAB_NONE, _CAB_MSZIP, _CAB_QUANTUM, _CAB_LZX = 0, 1, 2, 3


def sanitize_name(name: str) -> str:
    """Reduce a file name taken from a dump to a basename that is safe as one path component.

    Takes the part after the last ``\\`` or ``/`` (module lists hold full paths such as
    ``\\SystemRoot\\system32\\drivers\\amdppm.sys``), then refuses what could not be a plain file name
    on both Windows and Linux: empty, ``.``/``..``, NUL and control characters, ``:`` (drive letters,
    NTFS streams) and the other characters Windows forbids, trailing dots/spaces (Windows drops them,
    so two names would alias), reserved device names (``CON``, ``NUL.pdb`` ...) and names over 255
    characters or UTF-8 bytes.
    """
    if not isinstance(name, str):
        raise SymbolError("symbol file name %r is not text" % (name,))
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    shown = repr(name if len(name) <= 80 else name[:77] + "...")
    if base in ("", ".", ".."):
        raise SymbolError("refusing symbol file name %s: no file name in it" % shown)
    if len(base) > 255:
        raise SymbolError("refusing symbol file name %s: longer than 255 characters" % shown)
    try:
        encoded = base.encode("utf-8")
    except UnicodeEncodeError:
        raise SymbolError("refusing symbol file name %s: not valid Unicode" % shown)
    if len(encoded) > 255:
        raise SymbolError("refusing symbol file name %s: longer than 255 bytes" % shown)
    for char in base:
        if ord(char) < 32 or ord(char) == 127:
            raise SymbolError("refusing symbol file name %s: control character 0x%02x" % (shown, ord(char)))
        if char in _BAD_NAME_CHARS:
            raise SymbolError("refusing symbol file name %s: character %r is not allowed" % (shown, char))
    if base[-1] in " .":
        raise SymbolError("refusing symbol file name %s: ends with a dot or space" % shown)
    if base.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICE_NAMES:
        raise SymbolError("refusing symbol file name %s: a Windows device name" % shown)
    return base


def compressed_name(name: str) -> str:
    """The store's name for the CAB-compressed form: last character replaced by ``_`` (``x.pd_``)."""
    return name[:-1] + "_"


def pdb_key(guid_hex32: str, age: int) -> str:
    """Store key of a PDB: GUID (32 upper-case hex digits) then the age in upper-case hex, unpadded."""
    if not isinstance(age, int) or not 0 <= age <= 0xFFFFFFFF:
        raise SymbolError("invalid PDB age %r" % (age,))
    return "%s%X" % (normalize_guid(guid_hex32), age)


def image_key(timestamp: int, size_of_image: int) -> str:
    """Store key of an image: ``%08X%x`` of the PE TimeDateStamp and SizeOfImage."""
    for label, value in (("TimeDateStamp", timestamp), ("SizeOfImage", size_of_image)):
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise SymbolError("invalid image %s %r" % (label, value))
    return "%08X%x" % (timestamp, size_of_image)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 64 or not _HEX.match(key):
        raise SymbolError("invalid symbol store key %r: expected hex digits" % (key,))
    return key


@dataclass
class StoreStats:
    """Counters for ``--stats``: how much the lookups cost and how often the caches saved a request."""

    requests: int = 0
    bytes_downloaded: int = 0
    downloads: int = 0
    cache_hits: int = 0
    negative_hits: int = 0
    not_found: int = 0

    def as_dict(self) -> Dict[str, int]:
        """The counters by name, for ``--json``."""
        return asdict(self)


class MissingExpanderError(SymbolError):
    """A CAB needs LZX/Quantum and neither cabextract nor expand.exe is on PATH.

    Its own class so a downloaded archive is kept (installing the tool then needs no new download).
    """


class _NotFound(Exception):
    """The server answered that it does not have the file (404/410)."""


class _Retryable(Exception):
    """A failure worth asking again for: connection refused/reset, 5xx."""


@dataclass
class _Hit:
    path: str
    kind: str  # "file", "compressed" or "ptr"


def _find_ci(parent: str, name: str) -> Optional[str]:
    """``parent/name`` if it exists, else an entry of ``parent`` equal to ``name`` ignoring case."""
    exact = os.path.join(parent, name)
    if os.path.lexists(exact):
        return exact
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return None
    folded = name.casefold()
    for entry in entries:
        if entry.casefold() == folded:
            return os.path.join(parent, entry)
    return None


def _inside(root: str, path: str) -> bool:
    """True when ``path`` resolves (symlinks followed) to ``root`` or somewhere below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    try:
        return os.path.commonpath([real_root, real]) == real_root
    except ValueError:  # different drives on Windows
        return False


def _human(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%d B" % count


class TerminalProgress:
    """Byte counter on one stderr line, redrawn at most ten times a second (used only on a terminal)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last = 0.0

    def __call__(self, label: str, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < 0.1:
            return
        self._last = now
        amount = _human(done) if total is None else "%s / %s" % (_human(done), _human(total))
        self.stream.write("\rdownloading %s: %s\x1b[K" % (label, amount))
        if finished:
            self.stream.write("\n")
        self.stream.flush()


def no_progress(label: str, done: int, total: Optional[int]) -> None:
    """A progress callback that shows nothing (pass it to silence a terminal)."""


def _read_small(path: str, limit: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(limit)


def _parse_ptr(body: bytes) -> Tuple[str, str]:
    """``("PATH", path)``, ``("MSG", text)`` or ``("BAD", description)`` from a file.ptr body."""
    text = body.decode("utf-8", "replace").strip()
    if "\n" in text:
        text = text.splitlines()[0].strip()
    if text[:5].upper() == "PATH:":
        return "PATH", text[5:].strip()
    if text[:4].upper() == "MSG:":
        message = "".join(ch if ch.isprintable() else "?" for ch in text[4:].strip())
        return "MSG", message[:200]
    return "BAD", "file.ptr holds neither PATH: nor MSG: (%r)" % text[:40]


def image_identity(path: str) -> Optional[Tuple[int, int]]:
    """(TimeDateStamp, SizeOfImage) from a PE file's headers, or None when it is not a PE file.

    Used to accept a *flat* file (``DIR/name.sys``), which has no store key to vouch for it.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(0x40)
            if len(head) < 0x40 or head[:2] != b"MZ":
                return None
            pe = struct.unpack_from("<I", head, 0x3C)[0]
            if pe > 0x10000000:
                return None
            fh.seek(pe)
            headers = fh.read(24 + 60)
        if len(headers) < 24 + 60 or headers[:4] != b"PE\x00\x00":
            return None
        timestamp = struct.unpack_from("<I", headers, 8)[0]
        magic, = struct.unpack_from("<H", headers, 24)
        if magic not in (0x10B, 0x20B):
            return None
        size_of_image = struct.unpack_from("<I", headers, 24 + 56)[0]
        return timestamp, size_of_image
    except (OSError, struct.error):
        return None


def pdb_guid(path: str) -> Optional[str]:
    """GUID (store spelling) from a PDB's info stream, or None when it is not a readable MSF 7.00 PDB.

    Used to accept a *flat* PDB (``DIR/name.pdb``), which has no store key to vouch for it. Opening a
    ``PdbFile`` reads only the superblock, the stream directory and the small info/DBI headers.
    """
    from pytriage.symbols.pdb.reader import open_pdb  # the PDB reader is only loaded when needed

    try:
        with open_pdb(path) as pdb:
            return pdb.guid
    except SymbolError:
        return None


def cab_summary(data: bytes) -> Tuple[Set[int], List[Tuple[str, int]]]:
    """(compression types of the folders, [(member name, size)]) from a CAB header, without expanding it.

    Read before expanding so we can refuse an archive larger than ``max_bytes`` and pick the right
    expander (cabarchive cannot do LZX) without decompressing anything.
    """
    if len(data) < 36 or data[:4] != b"MSCF":
        raise ValueError("not a CAB archive (no MSCF signature)")
    coff_files = struct.unpack_from("<I", data, 16)[0]
    n_folders, n_files, flags = struct.unpack_from("<HHH", data, 26)
    offset = 36
    folder_reserve = 0
    if flags & 0x0004:
        header_reserve, folder_reserve, _data_reserve = struct.unpack_from("<HBB", data, 36)
        offset = 40 + header_reserve
    for present in (flags & 0x0001, flags & 0x0002):  # previous / next cabinet: two strings each
        if present:
            for _ in range(2):
                end = data.index(b"\x00", offset)
                offset = end + 1
    types = set()
    for _ in range(n_folders):
        types.add(struct.unpack_from("<IHH", data, offset)[2] & 0x000F)
        offset += 8 + folder_reserve
    members = []
    offset = coff_files
    for _ in range(n_files):
        size = struct.unpack_from("<I", data, offset)[0]
        end = data.index(b"\x00", offset + 16, offset + 16 + 257)
        members.append((data[offset + 16:end].decode("utf-8", "replace"), size))
        offset = end + 1
    return types, members


def _pick_member(members: List[str], name: str) -> Optional[str]:
    """The archive member to use: the only one, or the one whose basename is ``name`` (any case)."""
    if len(members) == 1:
        return members[0]
    folded = name.casefold()
    for member in members:
        if ntpath.basename(member.replace("/", "\\")).casefold() == folded:
            return member
    return None


def _external_expander() -> Optional[Tuple[str, str]]:
    """(tool name, executable) of an LZX-capable CAB expander on PATH, or None.

    On Windows only ``expand.exe`` is looked for, elsewhere only ``cabextract``: the Unix ``expand``
    command converts tabs and must never be mistaken for Microsoft's.
    """
    if os.name == "nt":
        exe = shutil.which("expand.exe")
        return ("expand.exe", exe) if exe else None
    exe = shutil.which("cabextract")
    return ("cabextract", exe) if exe else None


class SymbolStore:
    """Looks files up along a symbol path; see the module docstring for the rules and their reasons.

    ``timeout`` is per socket operation (connect, each read) in seconds; ``retries`` is how many extra
    attempts a connection error or 5xx gets (404 is an answer, a timeout already cost ``timeout``
    seconds: neither is retried); ``max_bytes`` caps every file downloaded, copied or expanded;
    ``progress`` is a :data:`ProgressCallback`, True for a byte counter on stderr, False for silence,
    or None for the counter only when stderr is a terminal (never garbage in a redirected log);
    ``negative_ttl`` is how long a "not on this server" answer is
    trusted (0 disables the negative cache).
    """

    def __init__(
        self,
        symbol_path: Union[SymbolPath, str, None] = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        progress: Union[None, bool, ProgressCallback] = None,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        if symbol_path is None:
            symbol_path = resolve_symbol_path(None)
        elif isinstance(symbol_path, str):
            symbol_path = resolve_symbol_path(symbol_path)
        self.symbol_path: SymbolPath = symbol_path
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.max_bytes = int(max_bytes)
        self.negative_ttl = float(negative_ttl)
        self.backoff = float(backoff)
        if progress is None:
            progress = sys.stderr is not None and sys.stderr.isatty()
        if progress is True:
            progress = TerminalProgress(sys.stderr)
        self.progress: Optional[ProgressCallback] = progress or None
        self.stats = StoreStats()
        #: Things worth telling the user that were not errors (MSG: answers, mismatching flat files ...).
        self.messages: List[str] = []
        self._failed_servers: Dict[str, str] = {}
        # Only HTTP(S): the default opener would also follow file:// and ftp:// (via redirects too).
        self._opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(),
            urllib.request.HTTPRedirectHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
        ):
            self._opener.add_handler(handler)

    def stats_line(self) -> str:
        """The counters as one line for ``--stats`` text output."""
        s = self.stats
        return "%d requests, %s downloaded (%d files), %d cache hits, %d negative-cache hits, %d not found" % (
            s.requests, _human(s.bytes_downloaded), s.downloads, s.cache_hits, s.negative_hits, s.not_found
        )

    def stats_json(self) -> Dict[str, object]:
        """The counters plus any messages, for ``--json`` output."""
        record: Dict[str, object] = dict(self.stats.as_dict())
        record["messages"] = list(self.messages)
        return record

    # -- public lookups ---------------------------------------------------------------------------

    def find_pdb(self, pdb_name: str, guid_hex32: str, age: int) -> Optional[str]:
        """Local path of the PDB the CodeView record names, downloading it if the path has a server."""
        name = sanitize_name(pdb_name)
        guid = normalize_guid(guid_hex32)
        key = pdb_key(guid, age)

        def matches(path: str) -> Optional[str]:
            found = pdb_guid(path)
            if found == guid:
                return None
            return "PDB GUID is %s, not %s" % (found, guid) if found else "not an MSF 7.00 PDB"

        return self._find(name, key, matches)

    def find_image(self, image_name: str, timestamp: int, size_of_image: int) -> Optional[str]:
        """Local path of the image (driver, kernel) with this TimeDateStamp and SizeOfImage."""
        name = sanitize_name(image_name)
        key = image_key(timestamp, size_of_image)

        def matches(path: str) -> Optional[str]:
            found = image_identity(path)
            if found == (timestamp, size_of_image):
                return None
            if found is None:
                return "not a PE image"
            return "TimeDateStamp/SizeOfImage are %08X/%x, not %08X/%x" % (found + (timestamp, size_of_image))

        return self._find(name, key, matches)

    def find_file(self, name: str, key: str) -> Optional[str]:
        """Local path of ``name`` under store key ``key`` (hex); flat directory files are not trusted."""
        return self._find(sanitize_name(name), _check_key(key), lambda path: "flat file has no key to check")

    # -- the walk ---------------------------------------------------------------------------------

    def _find(self, name: str, key: str, matches: Callable[[str], Optional[str]]) -> Optional[str]:
        first_error: Optional[SymbolError] = None
        for element in self.symbol_path.elements:
            try:
                found = self._find_in_element(element, name, key, matches)
            except SymbolError as exc:
                # A later element may still have the file; report this failure only if none does.
                if first_error is None:
                    first_error = exc
                else:
                    self.messages.append(str(exc))
                continue
            except OSError as exc:
                error = SymbolError("symbol path element %s: %s looking for %s" % (element.text, _os_error(exc), name))
                if first_error is None:
                    first_error = error
                continue
            if found is not None:
                if first_error is not None:
                    self.messages.append(str(first_error))
                return found
        if first_error is not None:
            raise first_error
        self.stats.not_found += 1
        return None

    def _find_in_element(
        self, element: PathElement, name: str, key: str, matches: Callable[[str], Optional[str]]
    ) -> Optional[str]:
        for index, directory in enumerate(element.dirs):
            hit = self._lookup_dir(directory, name, key, matches)
            if hit is None:
                continue
            in_cache = index == 0 and element.cache is not None
            found = self._use_local_hit(element, hit, name, key, in_cache)
            if found is not None:
                return found
        if element.url is not None and element.cache is not None:
            return self._from_server(element.url, element.cache, name, key)
        return None

    def _lookup_dir(
        self, directory: LocalDir, name: str, key: str, matches: Callable[[str], Optional[str]]
    ) -> Optional[_Hit]:
        root = directory.path
        if not os.path.isdir(root):
            return None
        if directory.flat:
            flat = _find_ci(root, name)
            if flat is not None and os.path.isfile(flat):
                why = matches(flat)
                if why is None:
                    return _Hit(flat, "file")
                self.messages.append("%s: not used: %s" % (flat, why))
        name_dir = _find_ci(root, name)
        if name_dir is None or not os.path.isdir(name_dir):
            return None
        key_dir = _find_ci(name_dir, key)
        if key_dir is None or not os.path.isdir(key_dir):
            return None
        for candidate, kind in ((name, "file"), ("file.ptr", "ptr"), (compressed_name(name), "compressed")):
            path = _find_ci(key_dir, candidate)
            if path is not None and os.path.isfile(path):
                return _Hit(path, kind)
        return None

    def _use_local_hit(self, element: PathElement, hit: _Hit, name: str, key: str, in_cache: bool) -> Optional[str]:
        """Turn a local hit into the path to return, copying or expanding into a cache as needed."""
        source, compressed = hit.path, hit.kind == "compressed"
        if hit.kind == "ptr":
            target = self._follow_ptr(_read_small(hit.path, MAX_PTR_BYTES), hit.path, name)
            if target is None:
                return None
            source, compressed = target, target.endswith("_") and not name.endswith("_")
        # Where a copy or expansion goes: the element's cache; a plain directory (no cache*) is the
        # user's and is never written to, so its compressed files expand into the default cache.
        cache = element.cache if element.cache is not None else self.symbol_path.default_cache
        self.stats.cache_hits += 1
        if not compressed and (element.cache is None or in_cache):
            return source
        return self._store_local(source, compressed, cache, name, key)

    def _follow_ptr(self, body: bytes, where: str, name: str) -> Optional[str]:
        """The readable regular file a ``PATH:`` file.ptr names, or None (with a message) otherwise.

        Only absolute local or UNC paths are followed, only to files this user can read, and the
        target's name never decides where anything is written (the caller copies it under ``name``).
        """
        kind, value = _parse_ptr(body)
        problem = None
        if kind != "PATH":
            problem = value
        elif "://" in value:
            problem = "file.ptr points to %r, only local paths are followed" % value
        elif not (os.path.isabs(value) or value.startswith("\\\\")):
            # Relative to what? The store, the server, our working directory: each guess could pick a
            # different file, so a relative pointer is not followed at all.
            problem = "file.ptr points to %r, a relative path (not followed)" % value
        elif not os.path.isfile(value) or not os.access(value, os.R_OK):
            problem = "file.ptr points to %r, which is not a readable file" % value
        if problem is not None:
            self.messages.append("%s: %s: %s" % (name, where, problem))
            return None
        if os.path.getsize(value) > self.max_bytes:
            raise SymbolError("%s: file.ptr target %s is larger than the %d-byte limit" % (name, value, self.max_bytes))
        return value

    # -- writing into a cache ---------------------------------------------------------------------

    def _key_dir(self, cache: str, name: str, key: str) -> str:
        """``cache/name/KEY`` (existing spellings reused), created, and proven to be inside ``cache``."""
        try:
            os.makedirs(cache, exist_ok=True)
        except OSError as exc:
            raise SymbolError("cannot create symbol cache %s: %s" % (cache, _os_error(exc)))
        name_dir = _find_ci(cache, name) or os.path.join(cache, name)
        key_dir = (_find_ci(name_dir, key) if os.path.isdir(name_dir) else None) or os.path.join(name_dir, key)
        if not _inside(cache, key_dir):
            raise SymbolError("refusing to write %s: it resolves outside the symbol cache %s" % (key_dir, cache))
        try:
            os.makedirs(key_dir, exist_ok=True)
        except OSError as exc:
            raise SymbolError("cannot create %s in the symbol cache: %s" % (key_dir, _os_error(exc)))
        if not _inside(cache, key_dir):  # raced with a symlink swap
            raise SymbolError("refusing to write %s: it resolves outside the symbol cache %s" % (key_dir, cache))
        return key_dir

    def _atomic_write(self, dest: str, write: Callable[[IO[bytes]], None]) -> None:
        """Run ``write`` on a temporary file beside ``dest`` and rename it into place (or remove it)."""
        fd, tmp = tempfile.mkstemp(prefix=".pytriage-", suffix=".tmp", dir=os.path.dirname(dest))
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            if os.name != "nt":
                # mkstemp makes the file private (0600); a downstream store may be shared with a team,
                # so give the file the permissions any other new file of this user would get.
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _copy_capped(self, source: str, dest: str) -> None:
        def write(out: IO[bytes]) -> None:
            copied = 0
            with open(source, "rb") as fh:
                while True:
                    chunk = fh.read(1 << 20)
                    if not chunk:
                        break
                    copied += len(chunk)
                    if copied > self.max_bytes:
                        raise SymbolError("%s is larger than the %d-byte limit" % (source, self.max_bytes))
                    out.write(chunk)

        self._atomic_write(dest, write)

    def _store_local(self, source: str, compressed: bool, cache: str, name: str, key: str) -> str:
        key_dir = self._key_dir(cache, name, key)
        dest = os.path.join(key_dir, name)
        if compressed:
            self._expand(source, dest, name)
        elif os.path.realpath(source) != os.path.realpath(dest):
            self._copy_capped(source, dest)
        return dest

    # -- CAB expansion ----------------------------------------------------------------------------

    def _expand(self, source: str, dest: str, name: str) -> None:
        """Expand the CAB ``source`` (a ``name_`` store file) into ``dest`` (atomically)."""
        label = os.path.basename(source)
        size = os.path.getsize(source)
        if size > self.max_bytes:
            raise SymbolError("%s is larger than the %d-byte limit" % (source, self.max_bytes))
        with open(source, "rb") as fh:
            data = fh.read()
        try:
            types, members = cab_summary(data)
        except (ValueError, struct.error) as exc:
            raise SymbolError("%s: corrupt compressed symbol file: %s" % (source, exc))
        member = _pick_member([member for member, _ in members], name)
        if member is None:
            raise SymbolError("%s: compressed symbol file holds %d files, none named %s" % (source, len(members), name))
        member_size = dict(members)[member]
        if member_size > self.max_bytes:
            raise SymbolError(
                "%s: expands to %d bytes, over the %d-byte limit" % (source, member_size, self.max_bytes)
            )
        if types - {_CAB_NONE, _CAB_MSZIP}:
            self._expand_external(source, dest, name, label, types)
            return
        import cabarchive  # imported here: only needed for compressed stores

        try:
            archive = cabarchive.CabArchive(data)
            buf = archive[member].buf or b""
        except Exception as exc:  # a hostile CAB may break the parser in any way; report, never crash
            raise SymbolError("%s: cannot expand compressed symbol file: %s" % (source, exc or type(exc).__name__))
        if len(buf) != member_size:
            raise SymbolError("%s: expanded to %d bytes, header says %d" % (source, len(buf), member_size))
        self._atomic_write(dest, lambda out: out.write(buf))

    def _expand_external(self, source: str, dest: str, name: str, label: str, types: Set[int]) -> None:
        method = "LZX" if _CAB_LZX in types else ("Quantum" if _CAB_QUANTUM in types else "compression type %s" % types)
        tool = _external_expander()
        if tool is None:
            raise MissingExpanderError(
                "%s is %s-compressed, which cabarchive cannot expand: install cabextract (Linux/macOS) "
                "or put expand.exe (Windows) on PATH" % (label, method)
            )
        tool_name, exe = tool
        workdir = tempfile.mkdtemp(prefix=".pytriage-x-", dir=os.path.dirname(dest))
        try:
            if tool_name == "cabextract":
                command = [exe, "-q", "-d", workdir, source]
            else:
                command = [exe, source, "-F:*", workdir]
            try:
                result = subprocess.run(command, capture_output=True, timeout=EXPANDER_TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SymbolError("%s: %s failed: %s" % (label, tool_name, exc))
            if result.returncode != 0:
                detail = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()
                raise SymbolError(
                    "%s: %s exited with status %d%s"
                    % (label, tool_name, result.returncode, (": " + detail[-1]) if detail else "")
                )
            produced = []
            for folder, _dirs, files in os.walk(workdir):
                for entry in files:
                    path = os.path.join(folder, entry)
                    if os.path.isfile(path) and not os.path.islink(path) and _inside(workdir, path):
                        produced.append(path)
            chosen = _pick_member(produced, name) if len(produced) != 1 else produced[0]
            if chosen is None:
                raise SymbolError("%s: %s produced %d files, none named %s" % (label, tool_name, len(produced), name))
            if os.path.getsize(chosen) > self.max_bytes:
                raise SymbolError("%s: expands to more than the %d-byte limit" % (label, self.max_bytes))
            os.replace(chosen, dest)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- servers ----------------------------------------------------------------------------------

    def _marker(self, cache: str, name: str, key: str) -> Optional[str]:
        name_dir = _find_ci(cache, name)
        if name_dir is None:
            return None
        key_dir = _find_ci(name_dir, key)
        return os.path.join(key_dir, NOT_FOUND_MARKER) if key_dir else None

    def _negative_entry(self, cache: str, name: str, key: str, url: str) -> Optional[str]:
        """The remembered reason ``url`` lacks the file, if remembered less than ``negative_ttl`` ago."""
        if self.negative_ttl <= 0:
            return None
        marker = self._marker(cache, name, key)
        if marker is None or not os.path.isfile(marker):
            return None
        try:
            with open(marker, encoding="utf-8") as fh:
                entry = json.load(fh).get(url)
            age = time.time() - float(entry["time"])
            reason = str(entry.get("reason", "not found"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        if 0 <= age < self.negative_ttl:
            return reason
        return None

    def _remember_missing(self, cache: str, name: str, key: str, url: str, reason: str) -> None:
        if self.negative_ttl <= 0:
            return
        key_dir = self._key_dir(cache, name, key)
        marker = os.path.join(key_dir, NOT_FOUND_MARKER)
        data: Dict[str, Dict[str, object]] = {}
        try:
            with open(marker, encoding="utf-8") as fh:
                loaded = json.load(fh)
            if isinstance(loaded, dict):
                data = loaded
        except (OSError, ValueError):
            pass
        data[url] = {"time": time.time(), "reason": reason}
        payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
        self._atomic_write(marker, lambda out: out.write(payload))

    def _from_server(self, url: str, cache: str, name: str, key: str) -> Optional[str]:
        remembered = self._negative_entry(cache, name, key, url)
        if remembered is not None:
            self.stats.negative_hits += 1
            if remembered.startswith("MSG: "):  # the server's own words are worth repeating; a 404 is not
                self.messages.append("%s: %s: %s (remembered)" % (name, url, remembered[5:]))
            return None
        if url in self._failed_servers:
            raise SymbolError(
                "symbol server %s: not asked for %s after an earlier failure (%s)"
                % (url, name, self._failed_servers[url])
            )
        key_dir = self._key_dir(cache, name, key)
        dest = os.path.join(key_dir, name)
        quoted = urllib.parse.quote(name, safe="")
        # Microsoft's server is case-insensitive; a store copied to Linux and served by a static web server
        # is not, and such copies usually have lower-case keys (the corpus store does): ask for that too.
        for variant in [key] + ([key.lower()] if key.lower() != key else []):
            try:
                self._download(url, "%s/%s/%s" % (quoted, variant, quoted), name, dest)
                self.stats.downloads += 1
                return dest
            except _NotFound:
                pass
        packed_name = compressed_name(name)
        packed = os.path.join(key_dir, packed_name)
        try:
            packed_rel = "%s/%s/%s" % (quoted, key, urllib.parse.quote(packed_name, safe=""))
            self._download(url, packed_rel, packed_name, packed)
        except _NotFound:
            pass
        else:
            self.stats.downloads += 1
            try:
                self._expand(packed, dest, name)
            except MissingExpanderError:
                # Keep an archive only a missing external tool could not expand: installing the tool
                # then needs no second download. Anything else is corrupt and must not be reused.
                raise
            except SymbolError:
                _unlink_quietly(packed)
                raise
            _unlink_quietly(packed)
            return dest
        try:
            body = self._download(url, "%s/%s/file.ptr" % (quoted, key), "file.ptr for " + name, None)
        except _NotFound:
            self._remember_missing(cache, name, key, url, "HTTP 404")
            return None
        kind, value = _parse_ptr(body or b"")
        if kind == "MSG":
            self._remember_missing(cache, name, key, url, "MSG: " + value)
        target = self._follow_ptr(body or b"", url, name)
        if target is None:
            return None
        return self._store_local(target, target.endswith("_") and not name.endswith("_"), cache, name, key)

    def _download(self, server: str, rel: str, label: str, dest: Optional[str]) -> Optional[bytes]:
        """GET ``server/rel`` into ``dest`` (atomically) or, when ``dest`` is None, return the small body."""
        url = server.rstrip("/") + "/" + rel
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                return self._download_once(server, url, label, dest)
            except _Retryable as exc:
                last = str(exc)
        message = "%s fetching %s (%d attempt%s)" % (
            last, label, self.retries + 1, "s" if self.retries else ""
        )
        self._failed_servers[server] = message
        raise SymbolError("symbol server %s: %s" % (server, message))

    def _timed_out(self, server: str, label: str) -> SymbolError:
        message = "timed out after %gs fetching %s" % (self.timeout, label)
        self._failed_servers[server] = message
        return SymbolError("symbol server %s: %s" % (server, message))

    def _download_once(self, server: str, url: str, label: str, dest: Optional[str]) -> Optional[bytes]:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        self.stats.requests += 1
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (404, 410):
                raise _NotFound()
            if exc.code >= 500:
                raise _Retryable("HTTP %d %s" % (exc.code, exc.reason))
            raise SymbolError("symbol server %s: HTTP %d %s fetching %s" % (server, exc.code, exc.reason, label))
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, socket.timeout):
                raise self._timed_out(server, label)
            if _SSLError is not None and isinstance(exc.reason, _SSLError):
                # A certificate or protocol problem does not go away by asking again.
                message = "TLS error fetching %s: %s" % (label, exc.reason)
                self._failed_servers[server] = message
                raise SymbolError("symbol server %s: %s" % (server, message))
            reason = exc.reason if isinstance(exc.reason, str) else _os_error(exc.reason)
            raise _Retryable(str(reason))
        except socket.timeout:
            raise self._timed_out(server, label)
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(_os_error(exc))
        with response:
            header = response.headers.get("Content-Length")
            total: Optional[int] = None
            if header is not None and header.strip().isdigit():
                total = int(header)
            limit = MAX_PTR_BYTES if dest is None else self.max_bytes
            if total is not None and total > limit:
                raise SymbolError(
                    "symbol server %s: %s is %d bytes, over the %d-byte limit" % (server, label, total, limit)
                )
            if dest is None:
                return self._read_body(server, response, label, total, limit, None)
            self._atomic_write(dest, lambda out: self._read_body(server, response, label, total, limit, out))
            return None

    def _read_body(
        self,
        server: str,
        response: http.client.HTTPResponse,
        label: str,
        total: Optional[int],
        limit: int,
        out: Optional[IO[bytes]],
    ) -> bytes:
        """Stream the body, counting bytes against ``limit``; into ``out``, or returned when ``out`` is None."""
        done = 0
        kept: List[bytes] = []
        progress = self.progress if out is not None else None
        if progress is not None:
            progress(label, 0, total)
        while True:
            try:
                chunk = response.read(1 << 16)
            except socket.timeout:
                raise self._timed_out(server, label)
            except (OSError, http.client.HTTPException) as exc:
                raise _Retryable("%s after %d bytes" % (_os_error(exc), done))
            if not chunk:
                break
            done += len(chunk)
            self.stats.bytes_downloaded += len(chunk)
            if done > limit:
                raise SymbolError(
                    "symbol server %s: %s is larger than the %d-byte limit" % (server, label, limit)
                )
            if out is None:
                kept.append(chunk)
            else:
                out.write(chunk)
            if progress is not None:
                progress(label, done, total)
        if total is not None and done != total:
            raise _Retryable("connection closed after %d of %d bytes" % (done, total))
        if progress is not None:
            progress(label, done, done)
        return b"".join(kept)


_UMASK: List[int] = []


def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    if not _UMASK:
        current = os.umask(0o022)
        os.umask(current)
        _UMASK.append(current)
    return _UMASK[0]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _os_error(exc: BaseException) -> str:
    """A short description of a socket/OS error (``connection refused``) for one-line messages."""
    text = ""
    if isinstance(exc, OSError):
        text = exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno is not None else "")
    text = text or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]
