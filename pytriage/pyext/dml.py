"""Debugger Markup Language for the commands' text output: the follow-up commands become links.

Why: in WinDbg a triage ends in "NEXT COMMANDS" and its findings name NBLs and pool blocks; clicking one is
how the engineer goes on. DbgEng renders DML for clients that support it (WinDbg) and shows the plain text to
the others (CDB, KD), so the same DML works everywhere pykd's output goes.

The text is what the command line prints, escaped for DML; links are added only around:

- a bare command on its own line in a NEXT COMMANDS section (``.trap ffff8401`32b05380``, ``kn``);
- a debugger command quoted in backticks (`` `ln 0xfffff801...` ``, `` `!pytriage -v` ``), unless it holds a
  placeholder such as ``<NBL>``;
- the address after "pool block" (links to ``!pooltag``) and after "NBL" (links to ``!nblwalk``).

Our own commands link to ``!py -m pytriage.pyext.<command>``, which works whether or not pytriage.js (the
``!pytriage`` alias) is loaded; the link's text stays the short form the user reads.
"""

import re
from typing import List

_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"))
_ADDRESS = r"[0-9a-f]{8}`[0-9a-f]{8}|[0-9a-f]{8,16}"
_OURS = {"!pytriage": "pytriage", "!pooltag": "pooltag", "!nblwalk": "nblwalk"}
# first words of the debugger commands a link may run (ours, extensions and dot-commands are always allowed)
_DEBUGGER_WORDS = {"k", "kn", "kv", "kb", "kp", "kpn", "ln", "lm", "lmvm", "dt", "db", "dq", "dps", "dqs", "r", "u",
                   "ub", "uf", "dx", "x"}
# commands that are whole without an argument (a bare `.trap` or `.cxr` would only reset the context)
_COMPLETE_ALONE = {"k", "kn", "kv", "kb", "kp", "kpn", "lm", "r", "!pytriage", "!analyze"}
_SECTION = re.compile(r"^[A-Z][A-Z0-9 ()/_-]*:\s*$|^[A-Z][A-Z0-9 _-]*\(.*\):\s*$")
# a 64-bit address's backtick is not a quote: addresses are matched first so they never pair up as one
_BACKTICKED = re.compile(r"(?P<address>[0-9a-f]{8}`[0-9a-f]{8})|`(?P<command>[^`]+)`")
_POOL_BLOCK = re.compile(r"(pool block )(%s)" % _ADDRESS)
_NBL = re.compile(r"(\bNBL (?:#\d+ )?)(%s)" % _ADDRESS)


def escape(text: str) -> str:
    """Text as DML shows it literally."""
    for raw, entity in _ESCAPES:
        text = text.replace(raw, entity)
    return text


def debugger_command(command: str) -> str:
    """What a link runs: ``!nblwalk X`` becomes ``!py -m pytriage.pyext.nblwalk X``; others run as typed."""
    word, _, rest = command.strip().partition(" ")
    if word in _OURS:
        return ("!py -m pytriage.pyext.%s %s" % (_OURS[word], rest)).rstrip()
    return command.strip()


def is_linkable(command: str) -> bool:
    """A complete debugger command: no ``<placeholder>``, no shell command such as ``verifier``, and an
    argument unless the command stands alone (``kn`` does; a bare ``.trap`` resets the context)."""
    command = command.strip()
    if not command or "<" in command or ">" in command or "\n" in command:
        return False
    words = command.split()
    if len(words) == 1 and words[0] not in _COMPLETE_ALONE:
        return False
    word = words[0]
    return word.startswith("!") or word.startswith(".") or word in _DEBUGGER_WORDS


def link(command: str, text: str) -> str:
    """``<exec>`` running ``command`` (our short forms expanded), showing ``text`` (both escaped here)."""
    return '<exec cmd="%s">%s</exec>' % (escape(debugger_command(command)), escape(text))


def _link_backticks(line: str) -> str:
    """Escape ``line``, linking each backticked debugger command; other backticks stay text (addresses)."""
    parts: List[str] = []
    last = 0
    for m in _BACKTICKED.finditer(line):
        inner = m.group("command")
        if inner is None or not is_linkable(inner):
            continue
        parts.append(_link_addresses(line[last:m.start()]))
        parts.append("`%s`" % link(inner, inner))
        last = m.end()
    parts.append(_link_addresses(line[last:]))
    return "".join(parts)


def _link_addresses(text: str) -> str:
    """Escape ``text``, linking pool-block addresses to !pooltag and NBL addresses to !nblwalk."""
    pieces: List[str] = []
    last = 0
    matches = sorted(list(_POOL_BLOCK.finditer(text)) + list(_NBL.finditer(text)), key=lambda m: m.start())
    for m in matches:
        if m.start() < last:
            continue
        command = "!pooltag" if m.re is _POOL_BLOCK else "!nblwalk"
        pieces.append(escape(text[last:m.start(2)]))
        pieces.append(link("%s %s" % (command, m.group(2)), m.group(2)))
        last = m.end()
    pieces.append(escape(text[last:]))
    return "".join(pieces)


def to_dml(text: str) -> str:
    """The command's text output as DML with links (see the module docstring); same characters otherwise."""
    out: List[str] = []
    in_next = False
    for line in text.split("\n"):
        if _SECTION.match(line):
            in_next = line.startswith("NEXT COMMANDS")
            out.append(escape(line))
            continue
        bare = line.strip()
        if in_next and bare and not bare.startswith("`") and is_linkable(bare):
            indent = line[:len(line) - len(line.lstrip())]
            out.append(indent + link(bare, bare))
            continue
        out.append(_link_backticks(line))
    return "\n".join(out)
