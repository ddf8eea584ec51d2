"""Which loaded modules are Windows' own: the list blame skips (a triage.ini of our own).

A crash inside ndis.sys or tcpip.sys is rarely Microsoft's bug: those modules run third-party data and
callbacks. Blame therefore looks past Windows' modules to the third-party driver that handed them a bad
NBL, pool block or function pointer, as WinDbg's triage.ini does for ``!analyze``. The default list ships as
package data (``triage.ini`` beside this module, documented in docs/triage.md); users add to it with
``--triage-ini FILE`` or ``PYTRIAGE_TRIAGE_INI``. The format is INI-like but not configparser's: sections
hold bare image names with wildcards, which configparser would read as keys without values.
"""

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from pytriage.errors import PytriageError

SECTIONS = ("core", "network", "inbox", "third-party")
DEFAULT_INI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "triage.ini")
ENVIRONMENT_VARIABLE = "PYTRIAGE_TRIAGE_INI"
MAX_INI_BYTES = 1 << 20


@dataclass
class ModuleClassifier:
    """``classify(image name)`` -> "core" (kernel, HAL), "network" (Microsoft's network stack), "inbox"
    (other Windows modules) or "third-party"; patterns per section, lower case."""
    patterns: Dict[str, List[str]] = field(default_factory=lambda: {name: [] for name in SECTIONS})
    sources: List[str] = field(default_factory=list)

    def classify(self, image_name: str) -> str:
        name = (image_name or "").strip().lower()
        if not name:
            return "third-party"
        if self._matches("third-party", name):
            return "third-party"
        for section in ("core", "network", "inbox"):
            if self._matches(section, name):
                return section
        return "third-party"

    def is_microsoft(self, image_name: str) -> bool:
        return self.classify(image_name) != "third-party"

    def is_third_party(self, image_name: str) -> bool:
        """A loaded driver (.sys/.dll) that is not Windows' own; pseudo-owners ("<our table>") are not."""
        name = (image_name or "").strip().lower()
        return name.endswith((".sys", ".dll")) and self.classify(name) == "third-party"

    def _matches(self, section: str, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns.get(section, ()))

    def add_file(self, path: str) -> None:
        """Add the sections of a triage.ini-like file; errors name the file and line."""
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_INI_BYTES + 1)
        except OSError as exc:
            raise PytriageError("cannot read triage list %s: %s" % (path, exc.strerror or exc)) from None
        if len(raw) > MAX_INI_BYTES:
            raise PytriageError("triage list %s is larger than 1 MB" % path)
        text = raw.decode("utf-8", errors="replace")
        section: Optional[str] = None
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split(";", 1)[0].split("#", 1)[0].strip()
            if not entry:
                continue
            if entry.startswith("["):
                name = entry.strip("[]").strip().lower()
                if not entry.endswith("]") or name not in SECTIONS:
                    raise PytriageError("%s:%d: unknown section %s (known: %s)" % (
                        path, number, entry, ", ".join("[%s]" % s for s in SECTIONS)))
                section = name
                continue
            if section is None:
                raise PytriageError("%s:%d: %r comes before any [section]" % (path, number, entry))
            if any(c.isspace() for c in entry) or "\\" in entry or "/" in entry:
                raise PytriageError("%s:%d: %r is not an image name (one name per line, no paths)" % (
                    path, number, entry))
            self.patterns[section].append(entry.lower())
        self.sources.append(path)


def load_classifier(extra: Optional[str] = None) -> ModuleClassifier:
    """The default list, plus ``extra`` (a path) or else the file named by ``PYTRIAGE_TRIAGE_INI``."""
    classifier = ModuleClassifier()
    classifier.add_file(DEFAULT_INI)
    extra = extra or os.environ.get(ENVIRONMENT_VARIABLE) or None
    if extra:
        classifier.add_file(extra)
    return classifier


_DEFAULT: Optional[ModuleClassifier] = None


def default_classifier() -> ModuleClassifier:
    """The shipped list alone, loaded once (commands that take no --triage-ini use it)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ModuleClassifier()
        _DEFAULT.add_file(DEFAULT_INI)
    return _DEFAULT
