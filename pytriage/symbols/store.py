"""Find PDBs and images in local symbol stores and on HTTP symbol servers, and cache what we download.

A crash dump names each module's PDB (CodeView record: name, GUID, age) and image (name,
TimeDateStamp, SizeOfImage); a symbol store files them under a *key* made of those values
(``name.pdb/<GUID><age>/name.pdb``, ``name.sys/<TimeDateStamp><SizeOfImage>/name.sys``). This module
turns such a request into a local file path, walking the elements of a :class:`SymbolPath` in order.

Why the walk is built the way it is:

- A hit in a cache never makes a request, and a server is asked only after every local directory of
  its element has missed; what a server lacked is remembered (:mod:`~pytriage.symbols.negative_cache`)
  and a server that failed is not asked again (:mod:`~pytriage.symbols.download`).
- One failing element does not end the walk: a later element may still have the file, so the first
  error is raised only when none does, and otherwise becomes a message.
- A download holds the cache entry's lock (:mod:`~pytriage.symbols.store_lock`) and looks in the cache again
  once it has it: processes sharing a cache (batch workers, Dask workers on a shared folder) download each
  file once, the others wait and take it from the cache.
- A plain directory (no ``cache*``) is the user's and is never written to; a cache element's files are
  copied or expanded into its cache so the next run finds them there.

The other jobs live beside this module: safe names and keys in :mod:`~pytriage.symbols.store_names`,
safe file access in :mod:`~pytriage.symbols.store_files`, CAB expansion in :mod:`~pytriage.symbols.cab`,
``file.ptr`` in :mod:`~pytriage.symbols.file_ptr` and flat-file checks in
:mod:`~pytriage.symbols.file_identity`.
"""

import os
import sys
import urllib.parse
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Union

from pytriage.errors import SymbolError
from pytriage.symbols.cab import MissingExpanderError, expand_cab
from pytriage.symbols.download import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    NotOnServer,
    SymbolServerClient,
)
from pytriage.symbols.download_progress import ProgressCallback, TerminalProgress, human_size
from pytriage.symbols.file_identity import image_identity, pdb_guid
from pytriage.symbols.file_ptr import MAX_PTR_BYTES, follow_ptr, parse_ptr, read_ptr_file
from pytriage.symbols.guid import normalize_guid
from pytriage.symbols.negative_cache import DEFAULT_NEGATIVE_TTL, remember_absence, remembered_absence
from pytriage.symbols.store_files import (
    copy_capped,
    describe_os_error,
    find_ignoring_case,
    make_key_dir,
    unlink_quietly,
)
from pytriage.symbols.store_lock import DEFAULT_LOCK_TIMEOUT, cache_entry_lock
from pytriage.symbols.store_names import check_key, compressed_name, image_key, pdb_key, sanitize_name
from pytriage.symbols.sympath import LocalDir, PathElement, SymbolPath, resolve_symbol_path

DEFAULT_MAX_BYTES = 1 << 30


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


@dataclass
class _Hit:
    path: str
    kind: str  # "file", "compressed" or "ptr"


class SymbolStore:
    """Looks files up along a symbol path; see the module docstring for the rules and their reasons.

    ``timeout`` is per socket operation (connect, each read) in seconds; ``retries`` is how many extra
    attempts a connection error or 5xx gets (404 is an answer, a timeout already cost ``timeout``
    seconds: neither is retried); ``max_bytes`` caps every file downloaded, copied or expanded;
    ``progress`` is a :data:`ProgressCallback`, True for a byte counter on stderr, False for silence,
    or None for the counter only when stderr is a terminal (never garbage in a redirected log);
    ``negative_ttl`` is how long a "not on this server" answer is
    trusted (0 disables the negative cache); ``lock_timeout`` is how long a download waits for another process
    that is downloading the same file into the same cache.
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
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if symbol_path is None:
            symbol_path = resolve_symbol_path(None)
        elif isinstance(symbol_path, str):
            symbol_path = resolve_symbol_path(symbol_path)
        self.symbol_path: SymbolPath = symbol_path
        timeout = float(timeout)
        retries = max(0, int(retries))
        self.max_bytes = int(max_bytes)
        self.negative_ttl = float(negative_ttl)
        self.lock_timeout = float(lock_timeout)
        backoff = float(backoff)
        if progress is None:
            progress = sys.stderr is not None and sys.stderr.isatty()
        if progress is True:
            progress = TerminalProgress(sys.stderr)
        self.stats = StoreStats()
        #: Things worth telling the user that were not errors (MSG: answers, mismatching flat files ...).
        self.messages: List[str] = []
        self._server_client = SymbolServerClient(self.stats, timeout, retries, backoff, progress or None)

    @property
    def progress(self) -> Optional[ProgressCallback]:
        """The download progress callback (it lives in the HTTP client), or None for none."""
        return self._server_client.progress

    def stats_line(self) -> str:
        """The counters as one line for ``--stats`` text output."""
        s = self.stats
        return "%d requests, %s downloaded (%d files), %d cache hits, %d negative-cache hits, %d not found" % (
            s.requests, human_size(s.bytes_downloaded), s.downloads, s.cache_hits, s.negative_hits, s.not_found
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
        return self._find(sanitize_name(name), check_key(key), lambda path: "flat file has no key to check")

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
                error = SymbolError(
                    "symbol path element %s: %s looking for %s" % (element.text, describe_os_error(exc), name)
                )
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
            flat = find_ignoring_case(root, name)
            if flat is not None and os.path.isfile(flat):
                why = matches(flat)
                if why is None:
                    return _Hit(flat, "file")
                self.messages.append("%s: not used: %s" % (flat, why))
        name_dir = find_ignoring_case(root, name)
        if name_dir is None or not os.path.isdir(name_dir):
            return None
        key_dir = find_ignoring_case(name_dir, key)
        if key_dir is None or not os.path.isdir(key_dir):
            return None
        for candidate, kind in ((name, "file"), ("file.ptr", "ptr"), (compressed_name(name), "compressed")):
            path = find_ignoring_case(key_dir, candidate)
            if path is not None and os.path.isfile(path):
                return _Hit(path, kind)
        return None

    def _use_local_hit(self, element: PathElement, hit: _Hit, name: str, key: str, in_cache: bool) -> Optional[str]:
        """Turn a local hit into the path to return, copying or expanding into a cache as needed."""
        source, compressed = hit.path, hit.kind == "compressed"
        if hit.kind == "ptr":
            target = follow_ptr(read_ptr_file(hit.path), hit.path, name, self.max_bytes, self.messages)
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

    def _store_local(self, source: str, compressed: bool, cache: str, name: str, key: str) -> str:
        """Copy (or expand) ``source`` into ``cache/name/KEY/name``; the cache copy is what is returned."""
        key_dir = make_key_dir(cache, name, key)
        dest = os.path.join(key_dir, name)
        if compressed:
            expand_cab(source, dest, name, self.max_bytes)
        elif os.path.realpath(source) != os.path.realpath(dest):
            copy_capped(source, dest, self.max_bytes)
        return dest

    # -- servers ----------------------------------------------------------------------------------

    def _from_server(self, url: str, cache: str, name: str, key: str) -> Optional[str]:
        """Ask ``url`` for the file, then its ``name_`` CAB, then a file.ptr, caching what it sends."""
        if self._remembered_absence(url, cache, name, key):
            return None
        earlier_failure = self._server_client.earlier_failure(url)
        if earlier_failure is not None:
            raise SymbolError(
                "symbol server %s: not asked for %s after an earlier failure (%s)"
                % (url, name, earlier_failure)
            )
        key_dir = make_key_dir(cache, name, key)
        dest = os.path.join(key_dir, name)
        with cache_entry_lock(dest, name, self.lock_timeout):
            # Another process may have fetched the file, or learnt the server lacks it, while we waited.
            if os.path.isfile(dest):
                self.stats.cache_hits += 1
                return dest
            if self._remembered_absence(url, cache, name, key):
                return None
            return self._download(url, cache, key_dir, dest, name, key)

    def _remembered_absence(self, url: str, cache: str, name: str, key: str) -> bool:
        """True (counted, and the server's words kept) when the negative cache says ``url`` lacks the file."""
        remembered = remembered_absence(cache, name, key, url, self.negative_ttl)
        if remembered is None:
            return False
        self.stats.negative_hits += 1
        if remembered.startswith("MSG: "):  # the server's own words are worth repeating; a 404 is not
            self.messages.append("%s: %s: %s (remembered)" % (name, url, remembered[5:]))
        return True

    def _download(self, url: str, cache: str, key_dir: str, dest: str, name: str, key: str) -> Optional[str]:
        """The requests of :meth:`_from_server`, under the entry's lock."""
        quoted = urllib.parse.quote(name, safe="")
        # Microsoft's server is case-insensitive; a store copied to Linux and served by a static web server
        # is not, and such copies usually have lower-case keys (the corpus store does): ask for that too.
        for variant in [key] + ([key.lower()] if key.lower() != key else []):
            try:
                self._server_client.fetch(url, "%s/%s/%s" % (quoted, variant, quoted), name, dest, self.max_bytes)
                self.stats.downloads += 1
                return dest
            except NotOnServer:
                pass
        packed_name = compressed_name(name)
        packed = os.path.join(key_dir, packed_name)
        try:
            packed_rel = "%s/%s/%s" % (quoted, key, urllib.parse.quote(packed_name, safe=""))
            self._server_client.fetch(url, packed_rel, packed_name, packed, self.max_bytes)
        except NotOnServer:
            pass
        else:
            self.stats.downloads += 1
            try:
                expand_cab(packed, dest, name, self.max_bytes)
            except MissingExpanderError:
                # Keep an archive only a missing external tool could not expand: installing the tool
                # then needs no second download. Anything else is corrupt and must not be reused.
                raise
            except SymbolError:
                unlink_quietly(packed)
                raise
            unlink_quietly(packed)
            return dest
        try:
            body = self._server_client.fetch(
                url, "%s/%s/file.ptr" % (quoted, key), "file.ptr for " + name, None, MAX_PTR_BYTES
            )
        except NotOnServer:
            remember_absence(cache, name, key, url, "HTTP 404", self.negative_ttl)
            return None
        kind, value = parse_ptr(body or b"")
        if kind == "MSG":
            remember_absence(cache, name, key, url, "MSG: " + value, self.negative_ttl)
        target = follow_ptr(body or b"", url, name, self.max_bytes, self.messages)
        if target is None:
            return None
        return self._store_local(target, target.endswith("_") and not name.endswith("_"), cache, name, key)
