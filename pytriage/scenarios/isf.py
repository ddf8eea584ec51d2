"""Write volatility3-style ISF JSON symbol tables for the scenario's modules.

Why ISF: it is the documented, tool-independent JSON form of a PDB's types and symbols (volatility3's
"Intermediate Symbol Format"), and the corpus already carries one for the real kernel; the symbols layer
reads both, so scenario dumps symbolize through the same code path as real ones. Files are laid out the
way volatility3 looks them up: ``windows/<pdb name>/<GUID>-<age>.json``.
"""

import json
import os
from typing import Dict, List, Tuple

ISF_FORMAT = "6.2.0"

BASE_TYPES = {
    "unsigned char": {"kind": "char", "size": 1, "signed": False, "endian": "little"},
    "unsigned short": {"kind": "int", "size": 2, "signed": False, "endian": "little"},
    "unsigned long": {"kind": "int", "size": 4, "signed": False, "endian": "little"},
    "unsigned long long": {"kind": "int", "size": 8, "signed": False, "endian": "little"},
    "long": {"kind": "int", "size": 4, "signed": True, "endian": "little"},
    "wchar": {"kind": "int", "size": 2, "signed": False, "endian": "little"},
    "void": {"kind": "void", "size": 0, "signed": False, "endian": "little"},
    "pointer": {"kind": "int", "size": 8, "signed": False, "endian": "little"},
}


def _base(name: str) -> Dict[str, str]:
    return {"kind": "base", "name": name}


def _ptr(subtype: Dict[str, object]) -> Dict[str, object]:
    return {"kind": "pointer", "subtype": subtype}


def _struct(name: str) -> Dict[str, str]:
    return {"kind": "struct", "name": name}


def _array(count: int, subtype: Dict[str, object]) -> Dict[str, object]:
    return {"kind": "array", "count": count, "subtype": subtype}


def _bits(position: int, length: int, base: str) -> Dict[str, object]:
    return {"kind": "bitfield", "bit_position": position, "bit_length": length, "type": _base(base)}


def _pool_types() -> Dict[str, object]:
    """The pool structures the spec's "pool" section lays out (pytriage/scenarios/pool.py)."""
    u64 = _base("unsigned long long")
    return {
        "_POOL_HEADER": {"kind": "struct", "size": 16, "fields": {
            "PreviousSize": {"offset": 0, "type": _bits(0, 8, "unsigned short")},
            "PoolIndex": {"offset": 0, "type": _bits(8, 8, "unsigned short")},
            "BlockSize": {"offset": 2, "type": _bits(0, 8, "unsigned short")},
            "PoolType": {"offset": 2, "type": _bits(8, 8, "unsigned short")},
            "Ulong1": {"offset": 0, "type": _base("unsigned long")},
            "PoolTag": {"offset": 4, "type": _base("unsigned long")},
            "ProcessBilled": {"offset": 8, "type": _ptr(_struct("_EPROCESS"))},
            "AllocatorBackTraceIndex": {"offset": 8, "type": _base("unsigned short")},
            "PoolTagHash": {"offset": 10, "type": _base("unsigned short")}}},
        "_POOL_TRACKER_BIG_PAGES": {"kind": "struct", "size": 0x18, "fields": {
            "Va": {"offset": 0, "type": u64},
            "Key": {"offset": 8, "type": _base("unsigned long")},
            "Pattern": {"offset": 12, "type": _bits(0, 8, "unsigned long")},
            "PoolType": {"offset": 12, "type": _bits(8, 12, "unsigned long")},
            "SlushSize": {"offset": 12, "type": _bits(20, 12, "unsigned long")},
            "NumberOfBytes": {"offset": 16, "type": u64}}},
        "_POOL_TRACKER_TABLE": {"kind": "struct", "size": 0x38, "fields": {
            "Key": {"offset": 0, "type": _base("long")},
            "NonPagedBytes": {"offset": 8, "type": u64},
            "NonPagedAllocs": {"offset": 16, "type": u64},
            "NonPagedFrees": {"offset": 24, "type": u64},
            "PagedBytes": {"offset": 32, "type": u64},
            "PagedAllocs": {"offset": 40, "type": u64},
            "PagedFrees": {"offset": 48, "type": u64}}},
    }


def kernel_types() -> Dict[str, object]:
    """Types the scenario kernel lays out in memory (x64 Windows 10 19041 layouts).

    Each is the complete 19041 type, not a subset of it: ``tests/scenarios/test_kernel_state.py`` checks
    every field against the corpus ntkrnlmp.pdb ISF, except ``_KLDR_DATA_TABLE_ENTRY``, which lists only
    the fields the builder fills (its size and their offsets are checked the same way).
    """
    return {
        "_LIST_ENTRY": {"kind": "struct", "size": 16, "fields": {
            "Flink": {"offset": 0, "type": _ptr(_struct("_LIST_ENTRY"))},
            "Blink": {"offset": 8, "type": _ptr(_struct("_LIST_ENTRY"))}}},
        "_UNICODE_STRING": {"kind": "struct", "size": 16, "fields": {
            "Length": {"offset": 0, "type": _base("unsigned short")},
            "MaximumLength": {"offset": 2, "type": _base("unsigned short")},
            "Buffer": {"offset": 8, "type": _ptr(_base("wchar"))}}},
        "_KLDR_DATA_TABLE_ENTRY": {"kind": "struct", "size": 0xA0, "fields": {
            "InLoadOrderLinks": {"offset": 0x00, "type": _struct("_LIST_ENTRY")},
            "DllBase": {"offset": 0x30, "type": _ptr(_base("void"))},
            "EntryPoint": {"offset": 0x38, "type": _ptr(_base("void"))},
            "SizeOfImage": {"offset": 0x40, "type": _base("unsigned long")},
            "FullDllName": {"offset": 0x48, "type": _struct("_UNICODE_STRING")},
            "BaseDllName": {"offset": 0x58, "type": _struct("_UNICODE_STRING")},
            "Flags": {"offset": 0x68, "type": _base("unsigned long")},
            "LoadCount": {"offset": 0x6C, "type": _base("unsigned short")},
            "CheckSum": {"offset": 0x78, "type": _base("unsigned long")},
            "TimeDateStamp": {"offset": 0x9C, "type": _base("unsigned long")}}},
        # nt!MmPhysicalMemoryBlock points at one (the builder's K_PHYSICAL_MEMORY in the kernel's .data).
        "_PHYSICAL_MEMORY_RUN": {"kind": "struct", "size": 16, "fields": {
            "BasePage": {"offset": 0, "type": _base("unsigned long long")},
            "PageCount": {"offset": 8, "type": _base("unsigned long long")}}},
        "_PHYSICAL_MEMORY_DESCRIPTOR": {"kind": "struct", "size": 0x20, "fields": {
            "NumberOfRuns": {"offset": 0, "type": _base("unsigned long")},
            "NumberOfPages": {"offset": 8, "type": _base("unsigned long long")},
            "Run": {"offset": 0x10, "type": _array(1, _struct("_PHYSICAL_MEMORY_RUN"))}}},
        **_pool_types(),
    }


def isf_document(pdb_name: str, guid: str, age: int, symbols: Dict[str, int],
                 user_types: Dict[str, object]) -> Dict[str, object]:
    """One ISF table; symbol addresses are RVAs (offsets from the image base), as in volatility3."""
    return {
        "metadata": {
            "format": ISF_FORMAT,
            "producer": {"name": "pytriage-scenarios", "version": "1"},
            "windows": {"pdb": {"GUID": guid, "age": age, "database": pdb_name, "machine_type": 0x8664}},
        },
        "base_types": BASE_TYPES,
        "user_types": user_types,
        "enums": {},
        "symbols": {name: {"address": rva} for name, rva in sorted(symbols.items())},
    }


def write_isf_tree(root: str, tables: List[Tuple[str, str, int, Dict[str, object]]]) -> List[str]:
    """Write ``(pdb_name, guid, age, document)`` tables under ``root``; returns the file paths."""
    paths = []
    for pdb_name, guid, age, doc in tables:
        folder = os.path.join(root, "windows", pdb_name)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "%s-%d.json" % (guid, age))
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
        paths.append(path)
    return paths
