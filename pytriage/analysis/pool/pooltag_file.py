"""The user's ``pooltag.txt``: tag -> binary and description, as the debugging tools ship it.

We never ship Microsoft's file; we read the user's copy. Where it is looked for, first match wins:

1. ``--pooltag FILE`` (or the path a debugger extension passes);
2. the ``PYTRIAGE_POOLTAG`` environment variable;
3. ``triage\\pooltag.txt`` next to the debugger: under each folder in ``debugger_dirs`` (the pykd bridge
   passes the folder of dbgeng.dll), then under the ``WINDBG_DIR`` environment variable.

Format: ``Tag - binary - description`` per line (``Tag - description`` on a few), ``rem`` / ``//``
comment lines, tags shorter than four characters padded with spaces (``Io  ``).
"""

import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional

from pytriage.analysis.pool.header import tag_text
from pytriage.errors import PytriageError

ENV_FILE = "PYTRIAGE_POOLTAG"
ENV_DEBUGGER = "WINDBG_DIR"
MAX_FILE_BYTES = 16 << 20


@dataclass(frozen=True)
class PoolTagEntry:
    tag: str
    binary: str
    description: str
    line: int


class PoolTagFile:
    def __init__(self, path: str, entries: Dict[str, List[PoolTagEntry]]) -> None:
        self.path = path
        self.entries = entries

    @classmethod
    def load(cls, path: str) -> "PoolTagFile":
        try:
            if os.path.getsize(path) > MAX_FILE_BYTES:
                raise PytriageError("%s: larger than %d MB, not a pooltag.txt" % (path, MAX_FILE_BYTES >> 20))
            with open(path, "rb") as fh:
                text = fh.read().decode("latin-1")
        except OSError as exc:
            raise PytriageError("cannot read pooltag file %s: %s" % (path, exc.strerror or exc)) from None
        return cls(path, parse_pooltag_text(text))

    def lookup(self, tag: int) -> List[PoolTagEntry]:
        return self.entries.get(tag_text(tag), [])

    def lookup_prefix(self, tag: int) -> List[PoolTagEntry]:
        """The file's generic entries for the tag's first three or two characters (``CM  `` for
        ``CMpi``): a component's family when the exact tag is not listed."""
        text = tag_text(tag)
        for length in (3, 2):
            found = self.entries.get(text[:length].ljust(4))
            if found and text[:length].ljust(4) != text:
                return found
        return []

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())


def parse_pooltag_text(text: str) -> Dict[str, List[PoolTagEntry]]:
    entries: Dict[str, List[PoolTagEntry]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//") or stripped.lower() == "rem" or \
                stripped.lower().startswith("rem ") or " - " not in line:
            continue
        tag, rest = line.split(" - ", 1)
        tag = tag.rstrip()
        if not 1 <= len(tag) <= 4 or tag[0] == " ":
            continue
        parts = [p.strip() for p in rest.split(" - ")]
        binary, description = (parts[0], " - ".join(parts[1:])) if len(parts) > 1 else ("", parts[0])
        key = tag.ljust(4)
        entries.setdefault(key, []).append(PoolTagEntry(key, binary, description, number))
    return entries


def find_pooltag_file(explicit: Optional[str] = None, debugger_dirs: Iterable[str] = (),
                      env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The pooltag.txt to use, or None; an explicit path that does not exist is an error."""
    env = os.environ if env is None else env
    if explicit:
        if not os.path.isfile(explicit):
            raise PytriageError("--pooltag %s: no such file" % explicit)
        return explicit
    if env.get(ENV_FILE):
        if not os.path.isfile(env[ENV_FILE]):
            raise PytriageError("%s=%s: no such file" % (ENV_FILE, env[ENV_FILE]))
        return env[ENV_FILE]
    folders = list(debugger_dirs) + ([env[ENV_DEBUGGER]] if env.get(ENV_DEBUGGER) else [])
    for folder in folders:
        for candidate in (os.path.join(folder, "triage", "pooltag.txt"), os.path.join(folder, "pooltag.txt")):
            if os.path.isfile(candidate):
                return candidate
    return None
