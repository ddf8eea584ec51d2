"""Symbol names the way the debugger shows them (dbghelp's SYMOPT_UNDNAME), not as the PDB stores them.

Microsoft's engine, checked on the real amdppm.pdb in the dbgeng tier, shows ``FxStubInitTypes`` for
the PDB's ``?FxStubInitTypes@@YAJXZ``, ``_C_specific_handler`` for ``__C_specific_handler`` (one
leading underscore, the C decoration, removed) and never names an address after a string literal
(``??_C@...``). Users compare our ``module!symbol+0xoff`` with WinDbg's, so we show the same names.

Only the common MSVC forms are undecorated: ``?name@scope...@@<signature>`` becomes
``scope::...::name``, ``??0``/``??1`` constructors and destructors ``Class::Class``/``Class::~Class``.
Templates, operators and back-references keep their decorated name rather than a guessed one.
volatility3's ISF tables have already removed the C underscore, so their names skip that step.
"""

from typing import Optional

_STRING_LITERAL = "??_C@"


def is_hidden(raw: str) -> bool:
    """Names the debugger never uses to name an address (string literals)."""
    return raw.startswith(_STRING_LITERAL)


def _cpp_name(raw: str) -> Optional[str]:
    """``?Name@Scope@@...`` -> ``Scope::Name``; None when the form is not one we undecorate safely."""
    special = None
    body = raw[1:]
    if body.startswith("?0") or body.startswith("?1"):
        special, body = body[1], body[2:]
    elif body.startswith("?"):
        return None                        # operators, templates, vftables ...: keep the stored name
    end = body.find("@@")
    if end <= 0:
        return None
    parts = body[:end].split("@")
    if any(not p or p[0].isdigit() or "?" in p or "$" in p for p in parts):
        return None                        # back-references, nested templates
    if special is not None:
        cls = parts[0]
        parts = [cls if special == "0" else "~" + cls] + parts
    return "::".join(reversed(parts))


def display_name(raw: str, strip_c_underscore: bool = True) -> str:
    """What the debugger prints for the stored symbol name ``raw``."""
    if raw.startswith("?"):
        return _cpp_name(raw) or raw
    if strip_c_underscore and raw.startswith("_") and len(raw) > 1:
        return raw[1:]
    return raw
