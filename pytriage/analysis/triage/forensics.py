"""Pointer forensics (DESIGN 6): what a bad value *is*, which tells who wrote it.

A crash names a bad address; the bytes of that address are often the only clue to its origin:
0xffffffffffffffe8 is NULL - 0x18 (a container computed from a NULL list entry or stack top),
0x0000003200360035 is the UTF-16 text "562" that overwrote a function pointer, 0x4f4f4f4f4f4f4f4f is an
overrun's fill, ``tcpip!Ipv4Global`` executed as code is a function pointer overwritten with a data pointer.
Each bugcheck parameter, the faulting IP and the failing frames' registers go through ``examine``; the
cheap arithmetic tests run first and memory is only consulted (through ``MemoryOwnerFinder``, which caches)
for canonical kernel addresses.
"""

from dataclasses import dataclass, field
from typing import List, Optional

from pytriage.analysis.bugcheck_kb import irql_name
from pytriage.analysis.memory_owner import MemoryOwner, MemoryOwnerFinder, is_canonical
from pytriage.analysis.nbl.dot11 import text_of
from pytriage.commands.render import hex64
from pytriage.errors import format_address

NULL_WINDOW = 0x10000                 # NULL + a field offset: the first 64 KB are never mapped in kernel mode
NULL_MINUS_WINDOW = 0x1000            # NULL - an offset: CONTAINING_RECORD / pointer - entry size
DISPATCH_LEVEL = 2
KNOWN_PATTERNS = {                    # 4-byte patterns with a well-known meaning
    0xBAADF00D: "uninitialised heap memory (0xbaadf00d)",
    0xDEADBEEF: "a debug marker (0xdeadbeef)",
    0xFEEEFEEE: "freed heap memory (0xfeeefeee)",
    0xABABABAB: "heap guard bytes (0xabababab)",
    0xCDCDCDCD: "uninitialised debug-heap memory (0xcdcdcdcd)",
    0xDDDDDDDD: "freed debug-heap memory (0xdddddddd)",
    0xCCCCCCCC: "uninitialised stack or int 3 padding (0xcccccccc)",
}
ROLES = ("address", "ip", "pointer", "register")


@dataclass
class Clue:
    """One finding about one value. ``severity``: "bad" (explains or is the crash), "notable", "info"."""
    subject: str
    value: int
    kind: str
    text: str
    severity: str
    binaries: List[str] = field(default_factory=list)
    memory: Optional[MemoryOwner] = None

    def to_json(self) -> dict:
        return {"subject": self.subject, "value": hex64(self.value), "kind": self.kind, "text": self.text,
                "severity": self.severity, "binaries": list(self.binaries),
                "memory": self.memory.to_json() if self.memory is not None else None}


def fill_pattern(value: int) -> Optional[str]:
    """A repeated byte (not 00/ff) or a well-known 4-byte pattern, described; else None."""
    raw = value.to_bytes(8, "little")
    if len(set(raw)) == 1 and raw[0] not in (0x00, 0xFF):
        char = chr(raw[0]) if 0x20 <= raw[0] < 0x7F else None
        return "fill pattern: byte 0x%02x repeated%s, typical of a buffer overrun or a memset over a pointer" % (
            raw[0], " (\"%s\")" % (char * 8) if char else "")
    low, high = value & 0xFFFFFFFF, value >> 32
    if low == high and low in KNOWN_PATTERNS:
        return "fill pattern: %s" % KNOWN_PATTERNS[low]
    return None


class PointerForensics:
    """``examine(value, subject, role)`` -> clues. ``irql``: the crash's IRQL when the bugcheck gives it."""

    def __init__(self, finder: MemoryOwnerFinder, irql: Optional[int] = None) -> None:
        self.finder = finder
        self.irql = irql

    def examine(self, value: int, subject: str, role: str = "address") -> List[Clue]:
        assert role in ROLES
        value &= 0xFFFFFFFFFFFFFFFF
        shown = format_address(value)
        pointer_like = role != "register"
        if value == 0:
            return [Clue(subject, value, "null", "NULL", "bad")] if role in ("address", "ip") else []
        if value < NULL_WINDOW:
            if role in ("address", "ip"):
                return [Clue(subject, value, "null-offset", "NULL + 0x%x: a field at offset 0x%x read through a NULL "
                             "pointer" % (value, value), "bad")]
            return []
        minus = (1 << 64) - value
        if minus <= NULL_MINUS_WINDOW and (pointer_like or minus % 8 == 0 and minus > 8):
            return [Clue(subject, value, "null-minus", "NULL - 0x%x: an address computed below NULL, such as "
                         "CONTAINING_RECORD on a NULL list entry or a stack pointer popped from NULL (NULL - 0x18 is "
                         "the DOT11 completion entry below an empty pTOS)" % minus, "bad")]
        pattern = fill_pattern(value)
        if pattern is not None:
            return [Clue(subject, value, "fill-pattern", "%s is a %s" % (shown, pattern), "bad")]
        text = text_of(value)
        if text is not None and (value >> 47) != 0x1FFFF:
            if role == "register":          # registers hold text legitimately (a pool tag being allocated)
                return [Clue(subject, value, "text", "%s is %s%s" % (shown, text, " (a pool tag?)"
                                                                      if value < 1 << 32 else ""), "notable")]
            return [Clue(subject, value, "text", "%s is %s: text stored where a pointer belongs" % (shown, text),
                         "bad")]
        if not is_canonical(value):
            return [Clue(subject, value, "non-canonical", "%s is not a canonical x64 address: a corrupted pointer"
                         % shown, "bad" if pointer_like else "notable")]
        if value >> 47 == 0:
            return self._user(value, subject, role)
        return self._kernel(value, subject, role)

    def _user(self, value: int, subject: str, role: str) -> List[Clue]:
        shown = format_address(value)
        if role == "ip":
            return [Clue(subject, value, "user", "%s is a user-mode address: kernel code jumped out of the kernel"
                         % shown, "bad")]
        if role == "address" and self.irql is not None and self.irql >= DISPATCH_LEVEL:
            return [Clue(subject, value, "user-at-raised-irql", "%s is a user-mode address referenced at %s: "
                         "nothing below 0xffff8000`00000000 may be touched there (a garbage pointer, or a user "
                         "buffer used without probing and locking)" % (shown, "IRQL %d (%s)" % (
                                             self.irql, irql_name(self.irql))), "bad")]
        if role == "register":
            return []
        return [Clue(subject, value, "user", "%s is a user-mode address" % shown, "notable")]

    def _kernel(self, value: int, subject: str, role: str) -> List[Clue]:
        memory = self.finder.describe(value)
        binaries = list(memory.binaries)
        if memory.kind == "module":
            if memory.executable is False and role == "ip":
                return [Clue(subject, value, "module-data", "%s is data, not code: executing it is 0xFC "
                             "(ATTEMPTED_EXECUTE_OF_NOEXECUTE_MEMORY); a function pointer was overwritten with a "
                             "data pointer" % memory.symbol, "bad", binaries, memory)]
            if memory.executable is False:
                return [Clue(subject, value, "module-data", "%s: data symbol %s" % (format_address(value),
                                                                                   memory.symbol),
                             "notable" if role == "address" else "info", binaries, memory)]
            return [Clue(subject, value, "module-code", memory.text, "info", binaries, memory)]
        if memory.kind == "pool":
            freed = memory.state == "free"
            return [Clue(subject, value, "pool-free" if freed else "pool",
                         memory.text + (": memory used after it was freed" if freed else ""),
                         "bad" if freed and role != "register" else "notable" if freed else "info", binaries, memory)]
        if memory.kind == "stack":
            return [Clue(subject, value, "stack", memory.text, "info", [], memory)]
        if role == "register":
            return []
        severity = "bad" if role in ("address", "ip") and memory.kind == "unmapped" else "info"
        return [Clue(subject, value, memory.kind, memory.text, severity, binaries, memory)]
