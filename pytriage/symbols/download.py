"""Fetching files from HTTP symbol servers: retries, timeouts, a size cap and atomic writes.

Why it behaves the way it does:

- A connection error or a 5xx is retried (with backoff); a 404 is an answer and a timeout has already
  cost ``timeout`` seconds, so neither is. A server that timed out or kept failing is not asked again
  by the same :class:`SymbolServerClient`: one dead server must not cost ``timeout`` seconds per module.
- Every body is counted against a byte limit while it streams, so a broken or hostile server cannot
  fill the disk, and a file is written through :func:`atomic_write`, so an interrupted download never
  leaves a truncated file behind.
- Only HTTP(S) is spoken, redirects included: the default opener would also follow file:// and ftp://.
"""

import http.client
import socket
import time
import urllib.error
import urllib.request
from typing import IO, Dict, List, Optional, Protocol

try:
    from ssl import SSLError as _SSLError
except ImportError:  # a Python built without OpenSSL can still use http:// servers
    _SSLError = None  # type: ignore[assignment,misc]

from pytriage import __version__
from pytriage.errors import SymbolError
from pytriage.symbols.download_progress import ProgressCallback
from pytriage.symbols.store_files import atomic_write, describe_os_error

DEFAULT_TIMEOUT = 20.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.5

#: Microsoft's server varies its answers by client; this prefix gets the same files WinDbg gets.
USER_AGENT = "Microsoft-Symbol-Server/10.0.0.0 pytriage/%s" % __version__


class NotOnServer(Exception):
    """The server answered that it does not have the file (404/410)."""


class _Retryable(Exception):
    """A failure worth asking again for: connection refused/reset, 5xx."""


class TransferCounters(Protocol):
    """Where the client counts its traffic (the store's ``StoreStats``, shared so ``--stats`` sees it)."""

    requests: int
    bytes_downloaded: int


class SymbolServerClient:
    """GETs files from symbol servers and remembers which servers have failed.

    ``timeout`` is per socket operation (connect, each read) in seconds; ``retries`` is how many extra
    attempts a connection error or 5xx gets; ``backoff`` is the first pause between attempts (doubled
    each time); ``progress`` is called while a file (not a small body) downloads, or None.
    """

    def __init__(
        self,
        counters: TransferCounters,
        timeout: float,
        retries: int,
        backoff: float,
        progress: Optional[ProgressCallback],
    ) -> None:
        self.counters = counters
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.progress = progress
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

    def earlier_failure(self, server: str) -> Optional[str]:
        """Why ``server`` is not asked any more (it timed out or kept failing), or None if it may be."""
        return self._failed_servers.get(server)

    def fetch(self, server: str, rel: str, label: str, dest: Optional[str], limit: int) -> Optional[bytes]:
        """GET ``server/rel`` into ``dest`` (atomically) or, when ``dest`` is None, return the small body.

        Raises :class:`NotOnServer` for 404/410 and ``SymbolError`` for anything else that went wrong,
        including a body over ``limit`` bytes.
        """
        url = server.rstrip("/") + "/" + rel
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            try:
                return self._fetch_once(server, url, label, dest, limit)
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

    def _fetch_once(self, server: str, url: str, label: str, dest: Optional[str], limit: int) -> Optional[bytes]:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        self.counters.requests += 1
        try:
            response = self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (404, 410):
                raise NotOnServer()
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
            reason = exc.reason if isinstance(exc.reason, str) else describe_os_error(exc.reason)
            raise _Retryable(str(reason))
        except socket.timeout:
            raise self._timed_out(server, label)
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(describe_os_error(exc))
        with response:
            header = response.headers.get("Content-Length")
            total: Optional[int] = None
            if header is not None and header.strip().isdigit():
                total = int(header)
            if total is not None and total > limit:
                raise SymbolError(
                    "symbol server %s: %s is %d bytes, over the %d-byte limit" % (server, label, total, limit)
                )
            if dest is None:
                return self._read_body(server, response, label, total, limit, None)
            atomic_write(dest, lambda out: self._read_body(server, response, label, total, limit, out))
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
                raise _Retryable("%s after %d bytes" % (describe_os_error(exc), done))
            if not chunk:
                break
            done += len(chunk)
            self.counters.bytes_downloaded += len(chunk)
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
