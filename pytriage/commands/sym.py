"""`pytriage sym DUMP ADDR|NAME`: WinDbg's `ln` and `x` in one command, for users and for debugging symbols.

An address prints ``module!symbol+0xoff`` (``module+0xoff`` without symbols); a name (``module!symbol``
or a bare kernel symbol) prints its address; a wildcard (``module!Fx*``) lists every matching symbol
with its address, like ``x``. ``-v`` adds, for the module involved, where its symbols
came from and why a better source was not used, which is what a user needs when a name looks wrong.
"""

import fnmatch
import re
from typing import Dict, List

from pytriage.commands.render import format_address, hex64, windbg_address
from pytriage.errors import SymbolError
from pytriage.symbols.symbolizer import Symbolizer

_ADDRESS = re.compile(r"^(0x)?[0-9a-fA-F`]+$")


def looks_like_address(text: str) -> bool:
    return "!" not in text and bool(_ADDRESS.match(text.strip()))


def parse_address(text: str) -> int:
    return int(text.strip().replace("`", ""), 16)


MAX_MATCHES = 10000


def is_pattern(text: str) -> bool:
    return "!" in text and any(c in text for c in "*?[")


def lookup_pattern(symbolizer: Symbolizer, query: str) -> Dict[str, object]:
    """``module!Fx*`` like WinDbg's ``x``: every shown name of the module matching the wildcard."""
    module_name, pattern = query.split("!", 1)
    module = symbolizer.target.module_by_name(module_name)
    if module is None:
        raise SymbolError("no module named %s in this target" % module_name)
    matches = [(address, name) for name, address in symbolizer.shown_symbols(module)
               if fnmatch.fnmatchcase(name, pattern)]
    matches.sort()
    return {"schema": "pytriage.sym/1", "query": query, "kind": "pattern",
            "module": module.debugger_name, "truncated": len(matches) > MAX_MATCHES,
            "matches": [{"address": hex64(address), "symbol": name,
                         "text": "%s!%s" % (module.debugger_name, name)} for address, name in matches[:MAX_MATCHES]],
            "module_symbols": symbolizer.module_symbols(module).to_json()}


def lookup(symbolizer: Symbolizer, query: str) -> Dict[str, object]:
    """The JSON record (docs/cli.md, schema ``pytriage.sym/1``) for one query."""
    if is_pattern(query):
        return lookup_pattern(symbolizer, query)
    if looks_like_address(query):
        resolution = symbolizer.resolve(parse_address(query))
        record: Dict[str, object] = {"schema": "pytriage.sym/1", "query": query, "kind": "address"}
        record.update(resolution.to_json())
        module = resolution.module
    else:
        address = symbolizer.address_of(query)
        resolution = symbolizer.resolve(address)
        record = {"schema": "pytriage.sym/1", "query": query, "kind": "name"}
        record.update(resolution.to_json())
        record["address"] = hex64(address)
        module = resolution.module
    record["module_symbols"] = symbolizer.module_symbols(module).to_json() if module is not None else None
    return record


def render_text(record: Dict[str, object], verbose: bool) -> List[str]:
    if record["kind"] == "pattern":
        lines = ["%s %s" % (windbg_address(m["address"]), m["text"])
                 for m in record["matches"]]   # type: ignore[union-attr]
        if record["truncated"]:
            lines.append("(first %d matches shown)" % MAX_MATCHES)
        return lines + _verbose_lines(record, verbose)
    address = int(str(record["address"]), 16)
    if record["kind"] == "address":
        lines = [str(record["text"])]
    else:
        lines = ["%s %s" % (format_address(address), record["text"])]
    return lines + _verbose_lines(record, verbose)


def _verbose_lines(record: Dict[str, object], verbose: bool) -> List[str]:
    lines: List[str] = []
    info = record.get("module_symbols")
    if verbose and isinstance(info, dict):
        lines.append("  symbols of %s: %s%s" % (info["module"], info["source"],
                                                 " (%s)" % info["origin"] if info["origin"] else ""))
        pdb = info.get("pdb")
        if isinstance(pdb, dict):
            lines.append("  CodeView: %s %s age %d" % (pdb["name"], pdb["guid"], pdb["age"]))
        if info.get("image_file"):
            lines.append("  image: %s" % info["image_file"])
        for note in info.get("notes") or []:
            lines.append("  note: %s" % note)
    return lines
