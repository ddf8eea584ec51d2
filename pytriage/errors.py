"""Typed errors that carry the file offset or the address they are about.

The CLI turns every ``PytriageError`` into one line and exit code 2, so messages here are written to be
read by a kernel engineer as they are: what was wrong, and where (file offset or virtual address).
"""

from typing import Optional


class PytriageError(Exception):
    """Base of every error the tool reports as a one-line message (never a traceback)."""


class DumpFormatError(PytriageError):
    """The dump file is truncated, corrupt or of a kind we do not read.

    ``offset`` is the file offset the problem was found at, when there is one.
    """

    def __init__(self, message: str, offset: Optional[int] = None) -> None:
        self.offset = offset
        if offset is not None:
            message = "%s: at offset 0x%x" % (message, offset)
        super().__init__(message)


class UnsupportedDumpError(DumpFormatError):
    """A well-formed dump whose memory we cannot read (ARM64, 32-bit, kernel summary ...).

    Header facts are still available; only memory access raises this.
    """


class MemoryReadError(PytriageError):
    """A virtual or physical address could not be read from the target.

    ``address`` is the first byte that could not be read; ``reason`` says why (not present in the
    dump, page not mapped, transition PTE ...).
    """

    def __init__(self, address: int, reason: str, physical: bool = False) -> None:
        self.address = address
        self.reason = reason
        self.physical = physical
        kind = "physical address" if physical else "address"
        super().__init__("cannot read %s %s: %s" % (kind, format_address(address), reason))


class SymbolError(PytriageError):
    """A symbol file is missing, malformed or does not describe what was asked."""


class UnwindError(PytriageError):
    """A module's unwind data (exception directory, UNWIND_INFO) is missing, unreadable or malformed.

    ``address`` is the virtual address the problem is about (the UNWIND_INFO, the RUNTIME_FUNCTION entry
    or the instruction pointer being unwound), when there is one.
    """

    def __init__(self, message: str, address: Optional[int] = None) -> None:
        self.address = address
        if address is not None:
            message = "%s (at %s)" % (message, format_address(address))
        super().__init__(message)


class SpecError(PytriageError):
    """A scenario spec is invalid; the message names the JSON path of the bad value."""


def first_line(text: object) -> str:
    """The first non-blank line of ``text`` (an exception's message may span lines), stripped; "" if none."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def format_address(value: int) -> str:
    """Format a 64-bit address the way WinDbg does: ``fffff804`7ba00000``."""
    value &= 0xFFFFFFFFFFFFFFFF
    return "%08x`%08x" % (value >> 32, value & 0xFFFFFFFF)
