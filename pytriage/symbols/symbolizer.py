"""Address <-> name and type layouts for a whole target, module by module (DESIGN 4).

For each module the symbolizer finds, once and lazily, the best source it can:

1. the image's identity: the CodeView record from the image in dump memory, else from the image file
   fetched from the symbol store by TimeDateStamp/SizeOfImage;
2. the PDB for that identity from the symbol store (``pdb``);
3. else a volatility3 ISF table for that identity in a local symbol directory (``isf``);
4. else the image's export names, from memory or from the store's image file (``export``);
5. else nothing: addresses print as ``module+0xoff`` and the reason is kept for ``--json``/``-v``.

Never a silent wrong name: an export is only used for addresses below the next export, and a symbol
source whose identity does not match the image (GUID/age) is not used at all.
"""

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pytriage.errors import PytriageError, SymbolError, format_address
from pytriage.symbols.builtin import builtin_layouts
from pytriage.symbols.exports import ExportSymbols, exports_from_file, exports_from_memory
from pytriage.symbols.identity import CodeViewInfo, codeview_from_file, codeview_from_memory
from pytriage.symbols.isf import isf_candidates, load_isf
from pytriage.symbols.source import SymbolSource
from pytriage.symbols.types import TypeLayout
from pytriage.symbols.undecorate import display_name, is_hidden
from pytriage.target.model import Module

_QUALIFIED = re.compile(r"^([^!\s]+)!(.+)$")
_KERNEL_PDBS = ("ntkrnlmp.pdb", "ntoskrnl.pdb", "ntkrnlpa.pdb", "ntkrpamp.pdb")
_MAX_KERNEL_TABLES = 64


def _shown_name(source_kind: str, raw: str) -> Optional[str]:
    """How the debugger shows the stored name ``raw`` of a ``source_kind`` source; None when it never
    names an address by it. Export names are shown as exported; PDB names lose their C underscore
    (ISF tables from volatility3 already did that); string literals are never shown."""
    if source_kind == "export":
        return raw
    if is_hidden(raw):
        return None
    return display_name(raw, source_kind == "pdb")


def _kernel_isf_files(directory: str) -> List[str]:
    """Kernel ISF tables under ``directory`` in any of the layouts ``isf_candidates`` knows (bounded)."""
    found: List[str] = []
    for pdb in _KERNEL_PDBS:
        for folder in (os.path.join(directory, "windows", pdb), os.path.join(directory, pdb)):
            if os.path.isdir(folder):
                found.extend(os.path.join(folder, n) for n in sorted(os.listdir(folder))
                             if n.endswith((".json", ".json.xz")))
    if os.path.isdir(directory):
        found.extend(os.path.join(directory, n) for n in sorted(os.listdir(directory))
                     if n.lower().startswith(_KERNEL_PDBS) and n.endswith((".json", ".json.xz")))
    return found[:_MAX_KERNEL_TABLES]


@dataclass
class ModuleSymbols:
    """What the symbolizer found for one module, and why (shown by ``pytriage sym -v`` and ``--json``)."""
    module: Module
    identity: Optional[CodeViewInfo] = None
    source: Optional[SymbolSource] = None
    image_file: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.source.kind if self.source is not None else "none"

    def to_json(self) -> Dict[str, object]:
        return {
            "module": self.module.debugger_name,
            "source": self.kind,
            "origin": self.source.origin if self.source is not None else None,
            "pdb": None if self.identity is None else {
                "name": self.identity.pdb_name, "guid": self.identity.guid, "age": self.identity.age},
            "image_file": self.image_file,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Resolution:
    """An address resolved to ``module!symbol+0xdisp`` (symbol None when only the module is known)."""
    address: int
    module: Optional[Module]
    symbol: Optional[str]
    displacement: int
    source: str

    def __str__(self) -> str:
        if self.module is None:
            return format_address(self.address)
        if self.symbol is None:
            return "%s+0x%x" % (self.module.debugger_name, self.displacement)
        if self.displacement:
            return "%s!%s+0x%x" % (self.module.debugger_name, self.symbol, self.displacement)
        return "%s!%s" % (self.module.debugger_name, self.symbol)

    def to_json(self) -> Dict[str, object]:
        return {"address": "0x%016x" % self.address,
                "module": self.module.debugger_name if self.module else None,
                "symbol": self.symbol, "displacement": self.displacement, "source": self.source,
                "text": str(self)}


class Symbolizer:
    """Symbols for every module of one target. ``store`` is a ``SymbolStore`` (or None: offline only)."""

    def __init__(self, target, store=None, isf_dirs: Optional[List[str]] = None) -> None:
        self.target = target
        self.store = store
        self.isf_dirs = list(isf_dirs or [])
        self._modules: Dict[int, ModuleSymbols] = {}
        self._display_index: Dict[int, Dict[str, int]] = {}

    # -- per-module sources -----------------------------------------------------------------------------
    def module_symbols(self, module: Module) -> ModuleSymbols:
        found = self._modules.get(module.base)
        if found is None:
            found = self._load(module)
            self._modules[module.base] = found
        return found

    def _load(self, module: Module) -> ModuleSymbols:
        info = ModuleSymbols(module)
        try:
            info.identity = codeview_from_memory(self.target, module.base)
        except SymbolError as exc:
            info.notes.append(str(exc))
        if info.identity is None:
            info.notes.append("image headers not in the dump")
        if self.store is not None and module.timestamp and module.size:
            try:
                info.image_file = self.store.find_image(module.name, module.timestamp, module.size)
            except PytriageError as exc:
                info.notes.append(str(exc))
            if info.image_file and info.identity is None:
                try:
                    info.identity = codeview_from_file(info.image_file)
                except SymbolError as exc:
                    info.notes.append(str(exc))
        if info.identity is not None:
            info.source = self._pdb(info) or self._isf(info)
        elif module.debugger_name == "nt":
            info.source = self._kernel_isf_by_fingerprint(info)
        if info.source is None:
            info.source = self._exports(info)
        if info.source is None:
            info.notes.append("no symbols: addresses show as %s+0xoffset" % module.debugger_name)
        return info

    def _pdb(self, info: ModuleSymbols) -> Optional[SymbolSource]:
        if self.store is None:
            return None
        ident = info.identity
        try:
            path = self.store.find_pdb(ident.pdb_basename, ident.guid, ident.age)
        except PytriageError as exc:
            info.notes.append(str(exc))
            return None
        if not path:
            info.notes.append("%s %s not found on the symbol path" % (ident.pdb_basename, ident.store_key))
            return None
        from pytriage.symbols.pdb.reader import open_pdb  # the PDB reader is only loaded when needed
        try:
            pdb = open_pdb(path)
        except SymbolError as exc:
            info.notes.append(str(exc))
            return None
        # The info stream's age may be above the image's (each incremental link bumps it); the GUID never moves.
        if pdb.guid != ident.guid or pdb.age < ident.age:
            info.notes.append("%s is GUID %s age %d, the image wants %s age %d: not used"
                              % (path, pdb.guid, pdb.age, ident.guid, ident.age))
            pdb.close()
            return None
        return pdb

    def _isf(self, info: ModuleSymbols) -> Optional[SymbolSource]:
        ident = info.identity
        for directory in self.isf_dirs:
            for candidate in isf_candidates(directory, ident.pdb_basename, ident.guid, ident.age):
                if os.path.isfile(candidate):
                    try:
                        table = load_isf(candidate)
                    except SymbolError as exc:
                        info.notes.append(str(exc))
                        continue
                    if table.guid and table.guid != ident.guid:
                        info.notes.append("%s describes GUID %s: not used" % (candidate, table.guid))
                        continue
                    return table
        return None

    def _kernel_isf_by_fingerprint(self, info: ModuleSymbols) -> Optional[SymbolSource]:
        """A kernel ISF table whose symbols sit exactly where the dump header says the kernel's are.

        Triage dumps do not keep the kernel's PE header, so its GUID is unknown; but the header names
        three kernel variables. A table that puts all of them at the same RVAs describes this very kernel
        build (DESIGN 4: never a silent wrong name; a mismatch on any anchor rejects the table).
        """
        anchors = {name: va - info.module.base for name, va in self.target.kernel_anchors().items()
                   if info.module.contains(va)}
        if len(anchors) < 2:
            return None
        for directory in self.isf_dirs:
            for candidate in _kernel_isf_files(directory):
                try:
                    table = load_isf(candidate)
                except SymbolError as exc:
                    info.notes.append(str(exc))
                    continue
                if all(table.symbol_rva(name) == rva for name, rva in anchors.items()):
                    info.notes.append("kernel symbols matched by %s at their RVAs (%s); no CodeView record in"
                                      " the dump" % (", ".join(sorted(anchors)), os.path.basename(candidate)))
                    return table
                table.close()
        return None

    def _exports(self, info: ModuleSymbols) -> Optional[ExportSymbols]:
        exports = exports_from_memory(self.target, info.module.base)
        if exports is None and info.image_file:
            try:
                exports = exports_from_file(info.image_file)
            except SymbolError as exc:
                info.notes.append(str(exc))
        return exports if exports else None

    # -- questions -----------------------------------------------------------------------------------------
    def resolve(self, address: int) -> Resolution:
        module = self.target.module_at(address)
        if module is None:
            return Resolution(address, None, None, 0, "none")
        rva = address - module.base
        info = self.module_symbols(module)
        nearest = self._nearest_shown(info, rva)
        if nearest is not None and info.kind == "export" and not self._inside_export(info.source, rva):
            nearest = None
        if nearest is None:
            return Resolution(address, module, None, rva, info.kind)
        name, symbol_rva = nearest
        return Resolution(address, module, name, rva - symbol_rva, info.kind)

    @staticmethod
    def _nearest_shown(info: ModuleSymbols, rva: int) -> Optional[Tuple[str, int]]:
        """The closest symbol at or below ``rva``, undecorated as the debugger shows it.

        When that symbol is a string literal (``??_C@``: data the debugger never names code by), the
        function containing ``rva`` is not among the symbols we have -- a literal cannot sit inside a
        function's code, so every symbol below it ended before it -- and the address stays unnamed
        (``module+0xoff``) rather than named after a neighbour. Names as ``_shown_name`` shows them.
        """
        if info.source is None:
            return None
        nearest = info.source.nearest_symbol(rva)
        if nearest is None:
            return None
        raw, symbol_rva = nearest
        shown = _shown_name(info.kind, raw)
        return None if shown is None else (shown, symbol_rva)

    @staticmethod
    def _inside_export(source: SymbolSource, rva: int) -> bool:
        # Without sizes, an export only names addresses up to the next export (or 64 KB past the last).
        assert isinstance(source, ExportSymbols)
        nearest = source.nearest_symbol(rva)
        following = source.next_rva(rva)
        limit = following if following is not None else nearest[1] + 0x10000
        return rva < limit

    def format(self, address: int) -> str:
        return str(self.resolve(address))

    def address_of(self, name: str) -> int:
        """``module!symbol`` (or a bare symbol, searched in nt then every module) -> virtual address."""
        match = _QUALIFIED.match(name.strip())
        if match:
            module = self.target.module_by_name(match.group(1))
            if module is None:
                raise SymbolError("no module named %s in this target" % match.group(1))
            modules = [module]
            symbol = match.group(2)
        else:
            modules = sorted(self.target.modules(), key=lambda m: m.debugger_name != "nt")
            symbol = name.strip()
        for module in modules:
            info = self.module_symbols(module)
            rva = info.source.symbol_rva(symbol) if info.source is not None else None
            if rva is None:
                rva = self._shown_names(info).get(symbol)
            if rva is not None:
                return module.base + rva
        raise SymbolError("symbol %s not found%s" % (
            name, "" if match else " in any module (qualify it as module!symbol)"))

    def shown_symbols(self, module: Module) -> List[Tuple[str, int]]:
        """Every ``(name, address)`` of ``module`` as the debugger's ``x module!*`` lists them:
        undecorated, string literals left out."""
        info = self.module_symbols(module)
        if info.source is None:
            return []
        shown = ((_shown_name(info.kind, raw), rva) for raw, rva in info.source.symbols())
        return sorted((name, module.base + rva) for name, rva in shown if name is not None)

    def _shown_names(self, info: ModuleSymbols) -> Dict[str, int]:
        """Undecorated name -> RVA, so users can type what the debugger shows (``FxStubInitTypes``)."""
        cached = self._display_index.get(info.module.base)
        if cached is None:
            cached = {}
            if info.source is not None and info.kind in ("pdb", "isf"):
                for raw, rva in info.source.symbols():
                    name = _shown_name(info.kind, raw)
                    if name is not None:
                        cached.setdefault(name, rva)
            self._display_index[info.module.base] = cached
        return cached

    def type_layout(self, name: str) -> Tuple[TypeLayout, str]:
        """``module!_TYPE`` or ``_TYPE`` -> (layout, where it came from).

        Unqualified names are looked up in nt's symbols, then every module that has type information,
        then the built-in layouts.
        """
        match = _QUALIFIED.match(name.strip())
        type_name = match.group(2) if match else name.strip()
        if match:
            module = self.target.module_by_name(match.group(1))
            if module is None:
                raise SymbolError("no module named %s in this target" % match.group(1))
            candidates = [module]
        else:
            candidates = sorted(self.target.modules(), key=lambda m: m.debugger_name != "nt")
        for module in candidates:
            info = self.module_symbols(module)
            if info.source is None or info.kind not in ("pdb", "isf"):
                continue
            layout = info.source.type_layout(type_name)
            if layout is not None:
                return layout, "%s (%s)" % (module.debugger_name, info.source.origin)
        layout = builtin_layouts().type_layout(type_name)
        if layout is not None:
            return layout, layout.source
        raise SymbolError("type %s not found in %s or the built-in layouts" % (
            type_name, match.group(1) + "'s symbols" if match else "any module's symbols"))

    def close(self) -> None:
        for info in self._modules.values():
            if info.source is not None:
                info.source.close()
        self._modules.clear()
