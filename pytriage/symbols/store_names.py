"""Safe file names and store keys: the two path components a symbol store request is built from.

A symbol store files a PDB under ``name.pdb/<GUID><age>/name.pdb`` and an image under
``name.sys/<TimeDateStamp><SizeOfImage>/name.sys``; the directory in the middle is the *key*.

Why names are checked so strictly: they come from the dump, i.e. from the machine that crashed,
possibly corrupted or hostile. Every name is reduced to a safe basename (:func:`sanitize_name`) before
it touches a path, and keys are hex only (:func:`check_key`), so a hostile name ends in
``SymbolError`` or a harmless basename, never in a path component that climbs out of a store.
"""

import re

from pytriage.errors import SymbolError
from pytriage.symbols.guid import normalize_guid

_WINDOWS_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"]
    + ["COM%s" % c for c in "0123456789\u00b9\u00b2\u00b3"]
    + ["LPT%s" % c for c in "0123456789\u00b9\u00b2\u00b3"]
)
_BAD_NAME_CHARS = frozenset('<>:"|?*')
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


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


def check_key(key: str) -> str:
    """``key`` unchanged when it is 1 to 64 hex digits; a caller-supplied key is a path component too."""
    if not isinstance(key, str) or not key or len(key) > 64 or not _HEX.match(key):
        raise SymbolError("invalid symbol store key %r: expected hex digits" % (key,))
    return key
