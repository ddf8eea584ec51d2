"""The contract every symbol/type source implements (PDB, ISF table, image exports, built-in layouts).

The symbolizer holds one ``SymbolSource`` per module and asks it three questions; addresses are RVAs
(offsets from the image base) so a source never needs to know where the module was loaded.
"""

from typing import Iterator, Optional, Tuple

from pytriage.symbols.types import TypeLayout


class SymbolSource:
    """Names and types of one image. Subclasses override what they can answer; the rest answer None."""

    #: what the symbolizer prints as the source (``pdb``, ``isf``, ``export``, ``builtin``)
    kind = "none"
    #: file or description the answers come from, for messages and ``--json``
    origin = ""

    def type_layout(self, name: str) -> Optional[TypeLayout]:
        """The struct/union/enum called ``name`` (``_LIST_ENTRY``), forward references resolved."""
        return None

    def symbol_rva(self, name: str) -> Optional[int]:
        """RVA of the public or global symbol ``name`` (exact, case-sensitive match)."""
        return None

    def nearest_symbol(self, rva: int) -> Optional[Tuple[str, int]]:
        """``(name, symbol_rva)`` of the closest symbol at or below ``rva``, or None."""
        return None

    def symbols(self) -> Iterator[Tuple[str, int]]:
        """Every ``(name, rva)`` the source knows (for ``x``-style wildcard lookups); may be slow."""
        return iter(())

    def close(self) -> None:
        """Release files/mmaps; the source must not be used afterwards."""
