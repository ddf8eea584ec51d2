"""Volatility3 ISF ("Intermediate Symbol Format") JSON tables as a type and symbol source.

Why: ISF is the documented, tool-independent JSON form of a PDB's types and symbols. volatility3 publishes
tables for thousands of Windows kernels, so a user without Microsoft's PDB (offline, air-gapped) can
still get exact kernel layouts; the corpus carries one for ntkrnlmp 19041.804, and our scenario builder
writes them for its synthetic modules. ``.json`` and ``.json.xz`` are read (lzma is stdlib).

ISF keeps members in a JSON object, so declaration order is lost: fields come back sorted by offset
(then bit position), which is also the order WinDbg's ``dt`` shows for non-overlapping members.
Symbol addresses in ISF are offsets from the image base (RVAs), which is what ``SymbolSource`` wants.
"""

import bisect
import json
import lzma
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pytriage.errors import SymbolError
from pytriage.symbols.source import SymbolSource
from pytriage.symbols.types import BASE_TYPES, EnumLayout, Field, StructLayout, TypeLayout, TypeRef

# ISF base type names that are not C names.
_ISF_BASE_ALIASES = {"wchar": "wchar_t", "f32": "float", "f64": "double", "pointer": "unsigned long long"}
_MAX_DEPTH = 64
_MAX_ISF_BYTES = 1 << 30


def _c_base_name(name: str) -> str:
    return _ISF_BASE_ALIASES.get(name, name)


class IsfTable(SymbolSource):
    """One ISF document (one PDB's worth of types and symbols)."""

    kind = "isf"

    def __init__(self, document: Dict[str, Any], origin: str = "") -> None:
        if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
            raise SymbolError("%s: not an ISF symbol table (no metadata object)" % (origin or "ISF"))
        self.origin = origin
        self._doc = document
        self._base_types = self._section("base_types")
        self._user_types = self._section("user_types")
        self._enums = self._section("enums")
        self._symbols = self._section("symbols")
        self._layouts: Dict[str, Optional[TypeLayout]] = {}
        self._by_address: Optional[List[Tuple[int, str]]] = None
        pdb = document["metadata"].get("windows", {}).get("pdb", {}) if isinstance(
            document["metadata"].get("windows"), dict) else {}
        self.pdb_name = str(pdb.get("database", ""))
        self.guid = str(pdb.get("GUID", "")).upper().replace("-", "")
        self.age = pdb.get("age") if isinstance(pdb.get("age"), int) else None

    def _section(self, name: str) -> Dict[str, Any]:
        value = self._doc.get(name, {})
        if not isinstance(value, dict):
            raise SymbolError("%s: ISF section %r is not an object" % (self.origin or "ISF", name))
        return value

    # -- types ------------------------------------------------------------------------------------------
    def type_layout(self, name: str) -> Optional[TypeLayout]:
        if name in self._layouts:
            return self._layouts[name]
        layout: Optional[TypeLayout] = None
        if name in self._user_types:
            layout = self._struct(name)
        elif name in self._enums:
            layout = self._enum(name)
        self._layouts[name] = layout
        return layout

    def _bad(self, what: str) -> SymbolError:
        return SymbolError("%s: malformed ISF: %s" % (self.origin or "ISF", what))

    def _struct(self, name: str) -> StructLayout:
        raw = self._user_types[name]
        if not isinstance(raw, dict) or not isinstance(raw.get("fields", {}), dict):
            raise self._bad("user type %s" % name)
        fields = []
        for order, (field_name, desc) in enumerate(raw.get("fields", {}).items()):
            if not isinstance(desc, dict) or not isinstance(desc.get("offset"), int):
                raise self._bad("%s.%s has no integer offset" % (name, field_name))
            type_desc = desc.get("type")
            bit_position = bit_length = None
            if isinstance(type_desc, dict) and type_desc.get("kind") == "bitfield":
                bit_position, bit_length = type_desc.get("bit_position"), type_desc.get("bit_length")
                if not isinstance(bit_position, int) or not isinstance(bit_length, int):
                    raise self._bad("%s.%s bitfield without position/length" % (name, field_name))
                type_desc = type_desc.get("type")
            ref = self._type_ref(type_desc, "%s.%s" % (name, field_name), 0)
            fields.append((desc["offset"], bit_position or 0, order,
                           Field(field_name, desc["offset"], ref, bit_position, bit_length)))
        fields.sort(key=lambda item: item[:3])
        kind = raw.get("kind", "struct")
        size = raw.get("size", 0)
        if kind not in ("struct", "union", "class") or not isinstance(size, int):
            raise self._bad("user type %s has kind %r size %r" % (name, kind, size))
        return StructLayout(name, kind, size, tuple(f for _, _, _, f in fields),
                            source="isf:%s" % (self.pdb_name or os.path.basename(self.origin)))

    def _enum(self, name: str) -> EnumLayout:
        raw = self._enums[name]
        constants = raw.get("constants", {}) if isinstance(raw, dict) else None
        if not isinstance(constants, dict):
            raise self._bad("enum %s" % name)
        values = tuple(sorted(((str(k), int(v)) for k, v in constants.items() if isinstance(v, int)),
                              key=lambda item: (item[1], item[0])))
        return EnumLayout(name, int(raw.get("size", 4)), _c_base_name(str(raw.get("base", "int"))), values,
                          source="isf:%s" % (self.pdb_name or os.path.basename(self.origin)))

    def _type_ref(self, desc: Any, where: str, depth: int) -> TypeRef:
        if depth > _MAX_DEPTH:
            raise self._bad("%s: type nesting deeper than %d" % (where, _MAX_DEPTH))
        if not isinstance(desc, dict):
            raise self._bad("%s: type is not an object" % where)
        kind = desc.get("kind")
        if kind == "base":
            name = _c_base_name(str(desc.get("name", "")))
            size = BASE_TYPES.get(name, (None,))[0]
            if size is None:
                raw = self._base_types.get(desc.get("name"), {})
                size = raw.get("size", 0) if isinstance(raw, dict) else 0
            return TypeRef("base", name, int(size))
        if kind == "pointer":
            target = self._type_ref(desc.get("subtype", {"kind": "base", "name": "void"}), where, depth + 1)
            return TypeRef("pointer", size=8, target=target)
        if kind == "array":
            count = desc.get("count", 0)
            target = self._type_ref(desc.get("subtype"), where, depth + 1)
            if not isinstance(count, int) or count < 0:
                raise self._bad("%s: array count %r" % (where, count))
            return TypeRef("array", size=count * target.size, target=target, count=count)
        if kind in ("struct", "union", "class"):
            name = str(desc.get("name", ""))
            raw = self._user_types.get(name, {})
            size = raw.get("size", 0) if isinstance(raw, dict) else 0
            real_kind = raw.get("kind", kind) if isinstance(raw, dict) else kind
            return TypeRef(real_kind if real_kind in ("struct", "union", "class") else kind, name, int(size))
        if kind == "enum":
            name = str(desc.get("name", ""))
            raw = self._enums.get(name, {})
            return TypeRef("enum", name, int(raw.get("size", 4)) if isinstance(raw, dict) else 4)
        if kind == "function":
            return TypeRef("function")
        if kind == "bitfield":       # a bitfield nested anywhere but directly in a field: keep its base type
            return self._type_ref(desc.get("type"), where, depth + 1)
        raise self._bad("%s: unknown type kind %r" % (where, kind))

    def type_names(self) -> List[str]:
        return sorted(set(self._user_types) | set(self._enums))

    # -- symbols ----------------------------------------------------------------------------------------
    def symbol_rva(self, name: str) -> Optional[int]:
        entry = self._symbols.get(name)
        if isinstance(entry, dict) and isinstance(entry.get("address"), int):
            return entry["address"]
        return None

    def _address_index(self) -> List[Tuple[int, str]]:
        if self._by_address is None:
            self._by_address = sorted((entry["address"], name) for name, entry in self._symbols.items()
                                      if isinstance(entry, dict) and isinstance(entry.get("address"), int))
        return self._by_address

    def nearest_symbol(self, rva: int) -> Optional[Tuple[str, int]]:
        index = self._address_index()
        pos = bisect.bisect_right(index, (rva, "\uffff")) - 1
        if pos < 0:
            return None
        address, name = index[pos]
        return name, address

    def symbols(self) -> Iterator[Tuple[str, int]]:
        for address, name in self._address_index():
            yield name, address


def load_isf(path: str) -> IsfTable:
    """Read ``.json`` or ``.json.xz``; any problem is one ``SymbolError`` naming the file."""
    try:
        if os.path.getsize(path) > _MAX_ISF_BYTES:
            raise SymbolError("%s: ISF file larger than 1 GiB" % path)
        if path.endswith(".xz"):
            with lzma.open(path, "rb") as fh:
                raw = fh.read(_MAX_ISF_BYTES + 1)
        else:
            with open(path, "rb") as fh:
                raw = fh.read(_MAX_ISF_BYTES + 1)
        if len(raw) > _MAX_ISF_BYTES:
            raise SymbolError("%s: ISF document larger than 1 GiB" % path)
        document = json.loads(raw.decode("utf-8"))
    except SymbolError:
        raise
    except (OSError, lzma.LZMAError, EOFError) as exc:
        raise SymbolError("%s: cannot read ISF table: %s" % (path, exc)) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SymbolError("%s: not valid ISF JSON: %s" % (path, str(exc).splitlines()[0][:120])) from None
    return IsfTable(document, origin=path)


def isf_candidates(directory: str, pdb_name: str, guid: str, age: int) -> List[str]:
    """File names an ISF table for ``pdb_name``/GUID/age may have under ``directory``.

    volatility3's layout ``windows/<pdb>/<GUID>-<age>.json.xz`` (and without ``windows/``), and the flat
    ``<pdb>-<GUID>-<age>.json.xz`` the corpus uses.
    """
    key = "%s-%d" % (guid.upper(), age)
    names = []
    for folder in (os.path.join(directory, "windows", pdb_name), os.path.join(directory, pdb_name)):
        for ext in (".json", ".json.xz"):
            names.append(os.path.join(folder, key + ext))
    for ext in (".json", ".json.xz"):
        names.append(os.path.join(directory, "%s-%s%s" % (pdb_name, key, ext)))
    return names
