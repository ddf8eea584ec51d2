"""Parse a WinDbg-style symbol path (``_NT_SYMBOL_PATH``) into the stores a lookup visits, in order.

Users already have a symbol path that works with WinDbg; accepting the same text means they do not
have to learn a second syntax, and a path that means something different to us than to WinDbg would
send lookups to the wrong place. So the forms below follow WinDbg's meaning, and anything we do not
understand is refused with an error naming the element instead of being guessed at.

Rules
-----
Where the path comes from (``resolve_symbol_path``), first match wins:

1. the ``--symbols`` command-line value (even an empty one, which means "no symbol stores at all");
2. ``_NT_SYMBOL_PATH`` from the environment, with ``_NT_ALT_SYMBOL_PATH`` (when set) placed in front
   of it, as WinDbg does;
3. the default: one local cache directory and **no server**. The cache is ``symbols_cache/`` in the
   current directory when that directory exists, otherwise a per-user cache directory:
   ``%LOCALAPPDATA%\\pytriage\\symbols`` on Windows, ``$XDG_CACHE_HOME/pytriage/symbols`` (when
   ``XDG_CACHE_HOME`` is an absolute path) or ``~/.cache/pytriage/symbols`` elsewhere.
   pytriage never goes online unless the symbol path names a server: a dump from a customer machine
   must not make the tool talk to the network behind the user's back.

The same directory (``symbols_cache/`` if present, else the per-user one) is the *default cache*:
where ``srv*URL`` and bare ``cache*`` store files.

Syntax of a path:

- Elements are separated by ``;``. Whitespace around an element is trimmed; empty elements are
  ignored. Elements are looked up left to right and the first hit wins.
- ``DIR`` (a plain directory): looked up *flat* (``DIR/name.pdb``) and in *store layout*
  (``DIR/name.pdb/<KEY>/name.pdb``). A flat file carries no key, so a flat hit is only used when the
  file's own identity matches (PE TimeDateStamp/SizeOfImage for images, the PDB's GUID for PDBs).
- ``srv*URL``: a symbol server, with downloads stored in the default cache (or in the directory of
  an earlier ``cache*DIR``).
- ``srv*DOWNSTREAM*URL``: a symbol server whose downloads are stored in the local store DOWNSTREAM;
  DOWNSTREAM is looked up first, so a file downloaded once is never asked for again.
- ``srv*A*B*URL``: a chain of downstream stores. A, then B are looked up in order, then URL; files
  found in B or downloaded from URL are copied into A (the first store is the cache).
- The last store of a ``srv*`` element may be a directory or share instead of a URL
  (``srv*CACHE*\\\\server\\symbols``): a store-layout directory, never read flat. ``srv*DIR`` alone
  means just that store. An empty store between ``*`` (``srv**URL``) means the default cache.
- ``symsrv*symsrv.dll*DOWNSTREAM*URL``: the long form of ``srv*``; only ``symsrv.dll`` is accepted as
  the DLL (other DLLs implement other protocols we do not speak).
- ``cache*DIR``: files found by the elements *to its right* are copied into DIR, and DIR is looked up
  before each of them. A bare ``cache*`` means the default cache.
- Directories are kept as written (relative ones resolve against the current directory when used).
  UNC (``\\\\server\\share``) and drive-letter paths are kept as strings: they simply do not exist on
  a Linux machine, which makes them "not found" rather than an error. A leading ``~`` is expanded.
- HTTP and HTTPS URLs are the only servers. A URL on its own (without ``srv*``) and any other
  ``xxx*`` prefix are errors naming the element, as is a bare ``srv*`` (WinDbg expands it to
  Microsoft's server; we want the server named explicitly, e.g.
  ``srv*https://msdl.microsoft.com/download/symbols``).
"""

import ntpath
import os
import posixpath
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from pytriage.errors import SymbolError

#: Environment variables WinDbg reads, in the order their elements are searched.
ENV_ALT_SYMBOL_PATH = "_NT_ALT_SYMBOL_PATH"
ENV_SYMBOL_PATH = "_NT_SYMBOL_PATH"

#: Name of the optional per-project cache directory looked for in the current directory.
LOCAL_CACHE_NAME = "symbols_cache"


@dataclass(frozen=True)
class LocalDir:
    """One local directory (or share) a lookup reads.

    ``flat`` is True for plain path elements, which are also searched as ``DIR/name`` (WinDbg does the
    same); directories of ``srv*`` elements are symbol stores and are only read in store layout.
    """

    path: str
    flat: bool = False


@dataclass(frozen=True)
class PathElement:
    """One ``;``-separated element after parsing.

    ``dirs`` are read in order, then ``url`` (if any) is asked. ``cache`` is where a file found beyond
    the first directory, or downloaded, is copied to; when set it is always ``dirs[0].path``, so the
    copy is found first next time.
    """

    text: str
    dirs: Tuple[LocalDir, ...]
    url: Optional[str] = None
    cache: Optional[str] = None


@dataclass(frozen=True)
class SymbolPath:
    """A parsed symbol path: the elements, where the text came from, and the default cache.

    ``source`` is ``"--symbols"``, ``"_NT_SYMBOL_PATH"`` or ``"default"`` so commands can tell the user
    which rule picked the path. ``default_cache`` is also where a compressed file found in a directory
    we must not write to (a plain directory with no ``cache*``) is expanded.
    """

    text: str
    elements: Tuple[PathElement, ...]
    default_cache: str
    source: str = "--symbols"
    notes: Tuple[str, ...] = field(default=())

    @property
    def has_server(self) -> bool:
        """True when some element may download: the only case in which pytriage goes online."""
        return any(element.url for element in self.elements)

    def __str__(self) -> str:
        return self.text

    def describe(self) -> List[str]:
        """One line per element, for ``--stats``/verbose output and the docs."""
        lines = ["symbol path (%s): %s" % (self.source, self.text or "(empty)")]
        for element in self.elements:
            parts = []
            for directory in element.dirs:
                parts.append("%s%s" % (directory.path, " (flat+store)" if directory.flat else ""))
            if element.url:
                parts.append(element.url)
            line = "  %s -> %s" % (element.text, ", then ".join(parts))
            if element.cache:
                line += "; cache %s" % element.cache
            lines.append(line)
        return lines


def _is_url(text: str) -> bool:
    lower = text.lower()
    return lower.startswith("http://") or lower.startswith("https://")


def _expand_dir(text: str) -> str:
    """Expand a leading ``~`` (shells do not expand it inside an environment variable's value)."""
    if text.startswith("~"):
        return os.path.expanduser(text)
    return text


def _srv_element(text: str, parts: List[str], current_cache: Optional[str], default_cache: str) -> PathElement:
    """Build the element for ``srv*`` stores ``parts`` (everything after ``srv*``/``symsrv*dll*``)."""
    if not parts or all(not part for part in parts):
        raise SymbolError(
            "symbol path element %r names no store or server (write e.g. "
            "srv*https://msdl.microsoft.com/download/symbols)" % text
        )
    if not parts[-1]:
        raise SymbolError("symbol path element %r ends with '*': the last store or server is missing" % text)
    url = None
    if _is_url(parts[-1]):
        url = parts[-1].rstrip()
        stores = parts[:-1]
    else:
        stores = list(parts)
    for part in stores:
        if _is_url(part):
            raise SymbolError(
                "symbol path element %r: only the last store of srv* may be a server (%s)" % (text, part)
            )
    fallback = current_cache if current_cache is not None else default_cache
    stores = [_expand_dir(part) if part else fallback for part in stores]
    if url is not None and not stores:
        stores = [fallback]
    elif url is None and len(stores) == 1 and current_cache is not None and stores[0] != current_cache:
        # srv*\\share after cache*DIR: the share is upstream of the cache like any other element.
        stores = [current_cache] + stores
    cache = stores[0] if (url is not None or len(stores) > 1) else None
    return PathElement(text=text, dirs=tuple(LocalDir(path) for path in stores), url=url, cache=cache)


def parse_symbol_path(
    text: str, default_cache: str, source: str = "--symbols", notes: Tuple[str, ...] = ()
) -> SymbolPath:
    """Parse ``text`` (WinDbg syntax, see the module docstring) into a :class:`SymbolPath`.

    ``default_cache`` is the directory ``srv*URL``, ``srv**URL`` and bare ``cache*`` mean; callers
    normally get it from :func:`default_cache_dir`. Raises ``SymbolError`` naming the first element
    we cannot interpret: a misspelt element silently ignored would mean a silently missing symbol.
    """
    elements: List[PathElement] = []
    current_cache: Optional[str] = None
    for raw in text.split(";"):
        element = raw.strip()
        if not element:
            continue
        if "*" not in element:
            if _is_url(element):
                raise SymbolError(
                    "symbol path element %r is a URL without srv*: write srv*CACHE*%s or srv*%s"
                    % (element, element, element)
                )
            directory = _expand_dir(element)
            if current_cache is not None and current_cache != directory:
                elements.append(
                    PathElement(
                        text=element,
                        dirs=(LocalDir(current_cache), LocalDir(directory, flat=True)),
                        cache=current_cache,
                    )
                )
            else:
                elements.append(PathElement(text=element, dirs=(LocalDir(directory, flat=True),)))
            continue
        prefix, rest = element.split("*", 1)
        prefix = prefix.strip().lower()
        parts = [part.strip() for part in rest.split("*")]
        if prefix == "srv":
            elements.append(_srv_element(element, parts, current_cache, default_cache))
        elif prefix == "symsrv":
            dll = parts[0].lower() if parts else ""
            if dll != "symsrv.dll":
                raise SymbolError(
                    "symbol path element %r: only symsrv*symsrv.dll*... is supported, not %r"
                    % (element, parts[0] if parts else "")
                )
            elements.append(_srv_element(element, parts[1:], current_cache, default_cache))
        elif prefix == "cache":
            if len(parts) > 1:
                raise SymbolError("symbol path element %r: cache* takes one directory" % element)
            if parts[0] and _is_url(parts[0]):
                raise SymbolError("symbol path element %r: cache* needs a local directory, not a URL" % element)
            current_cache = _expand_dir(parts[0]) if parts[0] else default_cache
        else:
            raise SymbolError(
                "symbol path element %r: unknown form %r (expected srv*, symsrv*, cache* or a directory)"
                % (element, prefix + "*")
            )
    return SymbolPath(
        text=text.strip(), elements=tuple(elements), default_cache=default_cache, source=source, notes=notes
    )


def user_cache_dir(env: Mapping[str, str], windows: Optional[bool] = None) -> str:
    """The per-user cache directory: ``%LOCALAPPDATA%\\pytriage\\symbols`` or the XDG cache dir.

    ``windows`` defaults to the running OS; tests pass it to check both rules on one machine.
    """
    if windows is None:
        windows = os.name == "nt"
    if windows:
        base = env.get("LOCALAPPDATA", "")
        if not base:
            home = env.get("USERPROFILE", "") or os.path.expanduser("~")
            base = ntpath.join(home, "AppData", "Local")
        return ntpath.join(base, "pytriage", "symbols")
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and posixpath.isabs(xdg):
        base = xdg
    else:
        # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
        home = env.get("HOME", "") or os.path.expanduser("~")
        base = posixpath.join(home, ".cache")
    return posixpath.join(base, "pytriage", "symbols")


def default_cache_dir(
    env: Mapping[str, str], cwd: Optional[str] = None, windows: Optional[bool] = None
) -> str:
    """``symbols_cache/`` in ``cwd`` (default: the current directory) if it exists, else :func:`user_cache_dir`.

    The local directory wins so a project checkout (or a triage folder next to the dump) keeps its
    symbols with it; it is only used when it already exists, so running the tool anywhere does not
    scatter ``symbols_cache`` folders.
    """
    base = cwd if cwd is not None else os.getcwd()
    local = os.path.join(base, LOCAL_CACHE_NAME)
    if os.path.isdir(local):
        return os.path.abspath(local)
    return user_cache_dir(env, windows=windows)


def resolve_symbol_path(
    cli_value: Optional[str],
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    windows: Optional[bool] = None,
) -> SymbolPath:
    """Pick and parse the symbol path: ``--symbols``, else the environment, else the offline default.

    See the module docstring for the exact rules; ``env`` defaults to ``os.environ`` and ``cwd`` to the
    current directory (both are parameters so the rules can be tested without touching the process).
    """
    if env is None:
        env = os.environ
    cache = default_cache_dir(env, cwd=cwd, windows=windows)
    if cli_value is not None:
        return parse_symbol_path(cli_value, cache, source="--symbols")
    main = env.get(ENV_SYMBOL_PATH, "").strip()
    alt = env.get(ENV_ALT_SYMBOL_PATH, "").strip()
    if main or alt:
        text = ";".join(part for part in (alt, main) if part)
        source = "+".join(name for name, value in ((ENV_ALT_SYMBOL_PATH, alt), (ENV_SYMBOL_PATH, main)) if value)
        return parse_symbol_path(text, cache, source=source)
    # The text is the bare directory so that parsing str(path) again gives the same lookups.
    element = PathElement(text=cache, dirs=(LocalDir(cache, flat=True),))
    return SymbolPath(
        text=cache,
        elements=(element,),
        default_cache=cache,
        source="default",
        notes=("no symbol server: set --symbols or _NT_SYMBOL_PATH (srv*CACHE*URL) to download symbols",),
    )
