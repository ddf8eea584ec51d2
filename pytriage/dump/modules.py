"""Walk nt!PsLoadedModuleList (``_KLDR_DATA_TABLE_ENTRY`` chain) through any virtual reader.

The built-in layout is the x64 Windows 10/11 one (checked against the ntkrnlmp 19041 ISF in the corpus:
DllBase 0x30, SizeOfImage 0x40, FullDllName 0x48, BaseDllName 0x58, CheckSum 0x78, TimeDateStamp 0x9c).
A symbol-provided layout replaces it when the symbols layer has one. The walk stops on the list head,
on a cycle, or after ``max_entries``, and returns what it found with a warning instead of failing.
"""

import struct
from typing import Callable, Dict, Optional

from pytriage.errors import MemoryReadError, PytriageError, format_address
from pytriage.target.model import ModuleList, make_module

KLDR_WIN10_X64: Dict[str, int] = {
    "InLoadOrderLinks": 0x00,
    "DllBase": 0x30,
    "SizeOfImage": 0x40,
    "FullDllName": 0x48,
    "BaseDllName": 0x58,
    "CheckSum": 0x78,
    "TimeDateStamp": 0x9C,
    "size": 0xA0,
}
MAX_MODULES = 4096
MAX_NAME_BYTES = 0x1000


def read_unicode_string(read: Callable[[int, int], bytes], va: int) -> str:
    """UNICODE_STRING {USHORT Length; USHORT MaximumLength; PWSTR Buffer} at ``va``."""
    length, _maximum, buffer = struct.unpack("<HH4xQ", read(va, 16))
    if length == 0 or buffer == 0:
        return ""
    if length > MAX_NAME_BYTES or length % 2:
        raise MemoryReadError(va, "UNICODE_STRING length %d is not plausible" % length)
    return read(buffer, length).decode("utf-16-le", "replace")


def walk_loaded_modules(read: Callable[[int, int], bytes], list_head: int,
                        layout: Optional[Dict[str, int]] = None, max_entries: int = MAX_MODULES) -> ModuleList:
    layout = layout or KLDR_WIN10_X64
    result = ModuleList(source="PsLoadedModuleList at %s" % format_address(list_head))
    seen = {list_head}
    try:
        entry = struct.unpack("<Q", read(list_head, 8))[0]
    except PytriageError as exc:
        result.warnings.append("cannot read PsLoadedModuleList head: %s" % exc)
        return result
    links = layout["InLoadOrderLinks"]
    while entry != list_head:
        if entry in seen:
            result.warnings.append("module list loops back to %s: walk stopped" % format_address(entry))
            break
        if len(result.modules) >= max_entries:
            result.warnings.append("module list longer than %d entries: walk stopped" % max_entries)
            break
        seen.add(entry)
        record = entry - links
        try:
            raw = read(record, layout["size"])
            flink = struct.unpack_from("<Q", raw, links)[0]
            base = struct.unpack_from("<Q", raw, layout["DllBase"])[0]
            size = struct.unpack_from("<I", raw, layout["SizeOfImage"])[0]
            checksum = struct.unpack_from("<I", raw, layout["CheckSum"])[0]
            timestamp = struct.unpack_from("<I", raw, layout["TimeDateStamp"])[0]
            full = read_unicode_string(read, record + layout["FullDllName"])
            base_name = read_unicode_string(read, record + layout["BaseDllName"])
        except PytriageError as exc:
            result.warnings.append("module entry at %s unreadable (%s): walk stopped"
                                   % (format_address(record), exc))
            break
        result.modules.append(make_module(full or base_name, base, size, timestamp, checksum,
                                          len(result.modules), base_name))
        entry = flink
    return result
