"""A generated folder of kernel dumps, the kind a support team receives, with the answer key written beside it.

Why: issue 10 asks that ``pytriage batch DIR`` be shown on "a generated folder of 50+ scenario dumps (mixed
scenarios, names and tags randomised, some corrupt or truncated, one not a dump at all, a nested folder)".
``make_farm(root, seed, count)`` writes such a folder and returns a ``FarmManifest`` that says, per file, what
the batch must report: the network bucket and culprit of every good dump, the exact error of every damaged one,
which file is not a dump at all. Every expectation comes from the generator's own inputs (which scenario, the
renamed culprit from ``tests/scenarios/variants.mutate``'s map, the crash time written, the bytes cut or
smashed), never from running the triage.

How the folder is made:

- A *family* is one variant of a built-in scenario drawn by ``variants.mutate`` (third-party drivers renamed and
  moved, their pool tags replaced): the same bug in the same driver, seen on many machines. Each family is
  built once; each of its dumps is that dump with another crash time (``DUMP_HEADER64.SystemTime``, the only
  place the builder writes ``os.system_time``, so the copy is byte for byte what a build with that time gives;
  a test checks it). So a family is one network bucket with several distinct dumps, and groups have counts.
- The renamed drivers of all families are distinct, so two families never share a bucket by accident.
- Each scenario stands for its own Windows build: the built-in scenarios reuse Microsoft modules' symbol-store
  keys (``ntkrnlmp.pdb`` with one GUID but each scenario's own symbols), which no real store could hold
  together. The farm gives every module a variant did not rename a GUID and TimeDateStamp derived from the
  scenario and module name, and merges all families' symbol stores into one tree for ``--symbols``; a key
  that would still hold two different files is an error, not a silent overwrite.
- Damage: truncated dumps (cut inside the stored pages: the bitmap header then claims more pages than the file
  holds), corrupted headers (an unknown ``DumpType``; a smashed bitmap signature), one text file named like a
  dump, one byte-identical duplicate of a good dump. File names are random, some without ``.dmp``, in nested
  folders.
"""

import hashlib
import json
import os
import random
import shutil
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from pytriage.scenarios import build_from_file, builtin_path
from pytriage.scenarios.spec import parse_spec
from tests.scenarios.variants import VariantMap, mutate

# What each built-in scenario is about (docs/triage.md's table for the six seeds, the scenario's own summary
# for the others): the network bucket's PROBLEM part and the culprit binary as the seed spec names it.
# nbl-zoo is a walk test with no faulting driver: no culprit, bucket UNKNOWN_unknown.
SCENARIOS: Dict[str, Tuple[str, Optional[str]]] = {
    "vpn-lwf-doublefault": ("KERNEL_STACK_OVERFLOW", "dnelwf64.sys"),
    "expool-not-on-stack": ("POOL_OVERRUN", "vnetflt.sys"),
    "wfp-callout-nbl": ("WFP_NBL_REFERENCE_MISUSE", "inspect.sys"),
    "pool-overrun-pattern": ("POOL_OVERRUN", "contosofw.sys"),
    "special-pool-guard": ("SPECIAL_POOL_OVERRUN", "contosonic.sys"),
    "nwifi-completion": ("NBL_COMPLETION_STACK_CORRUPT", "vwifimf.sys"),
    "basic": ("LWF_AV", "contosolwf.sys"),
    "unwind-zoo": ("DRIVER_AV", "unwindzoo.sys"),
    "pool-zoo": ("POOL_OVERRUN", "vwifimf.sys"),
    "nbl-zoo": ("UNKNOWN", None),
}
SEED_SCENARIOS = ("vpn-lwf-doublefault", "expool-not-on-stack", "wfp-callout-nbl", "pool-overrun-pattern",
                  "special-pool-guard", "nwifi-completion")
# Families per scenario, and how likely each family is to get one more of the dumps beyond its first.
FAMILIES = {name: (2 if name in SEED_SCENARIOS else 1) for name in SCENARIOS}
WEIGHT = {name: (3 if name in SEED_SCENARIOS else 1) for name in SCENARIOS}

# The dump format, independently of pytriage's reader: DUMP_HEADER64 is 0x2000 bytes; the bitmap dump header
# follows it ("SDMP"/"FDMP", "DUMP", ..., FirstPage = file offset of the first stored page at +0x20,
# TotalPresentPages at +0x28).
DUMP_TYPE_OFFSET = 0xF98
SYSTEM_TIME_OFFSET = 0xFA8
BITMAP_HEADER = 0x2000
FIRST_PAGE_OFFSET = BITMAP_HEADER + 0x20
PRESENT_PAGES_OFFSET = BITMAP_HEADER + 0x28
PAGE = 0x1000
FILETIME_UNIX_EPOCH = 116444736000000000
CRASH_TIMES = (1704067200, 1735689600)       # crash times drawn in 2024 (epoch seconds)

TRUNCATED = 3
NOT_A_DUMP_TEXT = b"Notes from the field: the dumps below were collected from the VPN pilot machines.\n"


class FarmError(Exception):
    """The farm cannot be generated as asked (say, two families' symbol stores hold different files under one
    key)."""


@dataclass
class Family:
    """One variant of a scenario, built once: every dump of the family is its dump with another crash time."""

    name: str                          # "<scenario>#<index>"
    scenario: str
    dump_path: str                     # the built variant's dump (in the work folder)
    symstore_path: str
    network_bucket: str
    culprit: Optional[str]             # the renamed culprit binary (None: the scenario has no culprit)
    culprit_timestamp: Optional[str]   # "0x5f00002a": the culprit's TimeDateStamp in the variant spec
    bugcheck_code: str                 # "0xD1"
    renamed: Dict[str, str]            # old image name -> new (the variant map's modules)


@dataclass
class FarmFile:
    """One file of the farm and what ``pytriage batch`` must say of it."""

    rel_path: str                      # relative to the farm root, "/" separators
    kind: str                          # scenario | duplicate | truncated | corrupt | not-a-dump
    sha256: str
    family: Optional[str] = None       # Family.name the dump (or its damaged copy) comes from
    status: Optional[str] = None       # "ok", "error"; None for a file that is not a dump (skipped)
    error: Optional[str] = None        # the exact one-line error of an "error" row
    network_bucket: Optional[str] = None
    culprit: Optional[str] = None
    culprit_timestamp: Optional[str] = None
    bugcheck_code: Optional[str] = None
    dump_time: Optional[float] = None  # crash time written in the header, epoch seconds
    skip_reason: Optional[str] = None  # why discovery skips the file


@dataclass
class FarmManifest:
    """The answer key of a generated farm (see the module docstring)."""

    root: str
    symbols: str                       # the merged symbol store (name/KEY/name) for --symbols
    work: str                          # built variants and their specs (replay material)
    seed: int
    files: List[FarmFile] = field(default_factory=list)
    families: Dict[str, Family] = field(default_factory=dict)
    build_seconds: float = 0.0
    used_paths: Set[str] = field(default_factory=set)
    used_names: Set[str] = field(default_factory=set)
    used_times: Set[Tuple[str, float]] = field(default_factory=set)     # (family, crash time) of good dumps

    def path(self, entry: FarmFile) -> str:
        return os.path.join(self.root, *entry.rel_path.split("/"))

    def dumps(self) -> List[FarmFile]:
        """The files discovery must keep (a kernel dump signature), in path order."""
        return sorted((f for f in self.files if f.kind != "not-a-dump"), key=lambda f: self.path(f))

    def skipped(self) -> List[FarmFile]:
        return [f for f in self.files if f.kind == "not-a-dump"]

    def by_sha256(self) -> Dict[str, FarmFile]:
        """One entry per distinct dump content (what the store keys results by)."""
        out: Dict[str, FarmFile] = {}
        for entry in self.dumps():
            out.setdefault(entry.sha256, entry)
        return out

    def expected_groups(self) -> Dict[str, Tuple[int, Optional[str]]]:
        """Network bucket -> (distinct dumps, culprit binary), over the dumps that triage."""
        counts = Counter(e.network_bucket for e in self.by_sha256().values() if e.status == "ok")
        culprits = {e.network_bucket: e.culprit for e in self.by_sha256().values() if e.status == "ok"}
        return {bucket: (n, culprits[bucket]) for bucket, n in counts.items() if bucket is not None}

    def expected_seen(self) -> Dict[str, Tuple[float, float]]:
        """Network bucket -> (first, last) crash time of its dumps."""
        seen: Dict[str, Tuple[float, float]] = {}
        for e in self.by_sha256().values():
            if e.status == "ok" and e.network_bucket is not None and e.dump_time is not None:
                lo, hi = seen.get(e.network_bucket, (e.dump_time, e.dump_time))
                seen[e.network_bucket] = (min(lo, e.dump_time), max(hi, e.dump_time))
        return seen

    def write_json(self, path: str) -> None:
        """The manifest as JSON (to read when a test fails)."""
        doc = {"root": self.root, "symbols": self.symbols, "seed": self.seed, "build_seconds": self.build_seconds,
               "families": {k: vars(v) for k, v in self.families.items()},
               "files": [vars(f) for f in self.files]}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)


# -- building -------------------------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _own_windows_build(doc: Dict, scenario: str, renamed: Set[str]) -> None:
    """Give every module the variant did not rename a PDB GUID and TimeDateStamp of this scenario's own
    (see the module docstring: the built-in scenarios share Microsoft modules' symbol-store keys)."""
    modules = [doc["kernel"]] + list(doc.get("modules", []))
    for module in modules:
        if module["name"].lower() in renamed:
            continue
        digest = hashlib.sha256(("pytriage-farm:%s:%s" % (scenario, module["name"].lower())).encode()).hexdigest()
        module["pdb_guid"] = digest[:32].upper()
        module["timestamp"] = "0x%s" % digest[32:40]


def _merge_store(source: str, dest: str) -> None:
    """Copy the store tree ``source`` into ``dest``; the same key holding other bytes is a FarmError."""
    for folder, _dirs, files in os.walk(source):
        for name in files:
            src = os.path.join(folder, name)
            dst = os.path.join(dest, os.path.relpath(src, source))
            if os.path.exists(dst):
                with open(src, "rb") as a, open(dst, "rb") as b:
                    if a.read() != b.read():
                        raise FarmError("symbol store conflict: %s differs from %s" % (src, dst))
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)


def _build_family(manifest: FarmManifest, scenario: str, index: int) -> Family:
    """Draw a variant whose renamed drivers no other family uses, build it, merge its symbols."""
    with open(builtin_path(scenario), encoding="utf-8") as fh:
        doc = json.load(fh)
    rng = random.Random("farm:%d:%s:%d" % (manifest.seed, scenario, index))
    for _attempt in range(20):
        variant, mapping = mutate(doc, rng)
        new_names = {n.lower() for n in mapping.modules.values()}
        if not new_names & manifest.used_names:
            break
    else:
        raise FarmError("%s: no variant with unused driver names in 20 draws" % scenario)
    manifest.used_names.update(new_names)
    _own_windows_build(variant, scenario, new_names)
    name = "%s#%d" % (scenario, index)
    folder = os.path.join(manifest.work, "%s-%d" % (scenario, index))
    os.makedirs(folder, exist_ok=True)
    spec_path = os.path.join(folder, "variant.json")
    with open(spec_path, "w", encoding="utf-8") as fh:
        json.dump(variant, fh, indent=1)
    built = build_from_file(spec_path, folder, "bitmap")
    _merge_store(built.symstore_path, manifest.symbols)
    problem, culprit = SCENARIOS[scenario]
    return _family(name, scenario, built.dump_path, built.symstore_path, variant, mapping, problem, culprit)


def _family(name: str, scenario: str, dump_path: str, symstore: str, variant: Dict, mapping: VariantMap,
            problem: str, culprit: Optional[str]) -> Family:
    spec = parse_spec(variant)
    binary = mapping.binary(culprit) if culprit else None
    timestamp = None
    if binary is not None:
        module = next(m for m in spec.modules if m.name.lower() == binary.lower())
        timestamp = "0x%08x" % module.timestamp
    return Family(name=name, scenario=scenario, dump_path=dump_path, symstore_path=symstore,
                  network_bucket="%s_%s" % (problem, binary or "unknown"), culprit=binary,
                  culprit_timestamp=timestamp, bugcheck_code="0x%X" % spec.bugcheck_code,
                  renamed=dict(mapping.modules))


def with_crash_time(dump: bytes, epoch_seconds: float) -> bytes:
    """The dump with another crash time in DUMP_HEADER64.SystemTime (a FILETIME)."""
    ticks = int(round(epoch_seconds * 1e7)) + FILETIME_UNIX_EPOCH
    return dump[:SYSTEM_TIME_OFFSET] + struct.pack("<Q", ticks) + dump[SYSTEM_TIME_OFFSET + 8:]


_WORDS = ("acme", "contoso", "fabrikam", "north", "south", "lab", "pilot", "fleet", "ring0", "kiosk", "vpn", "wifi",
          "branch", "hq", "edge", "build")


def _random_path(manifest: FarmManifest, rng: random.Random) -> str:
    """A fresh relative path: 1-3 nested folders and a random file name, a fifth of them without ".dmp"."""
    while True:
        depth = rng.randint(1, 3)
        folders = []
        for level in range(depth):
            if level == 0:
                folders.append("%s-%s" % (rng.choice(_WORDS), rng.choice(_WORDS)))
            elif level == 1:
                folders.append("PC-%05d" % rng.randrange(100000))
            else:
                folders.append("2024-%02d-%02d" % (rng.randint(1, 12), rng.randint(1, 28)))
        stem = rng.choice(("MEMORY", "crash_%08x" % rng.getrandbits(32), "%06d-%05d-01" % (rng.randrange(10 ** 6),
                                                                                           rng.randrange(10 ** 5)),
                           "%s_%04x" % (rng.choice(_WORDS), rng.getrandbits(16))))
        ext = rng.choice((".dmp", ".dmp", ".DMP", ".dmp", "", ".bin", ".dmp.1"))
        rel = "/".join(folders + [stem + ext])
        if rel.lower() not in manifest.used_paths:
            manifest.used_paths.add(rel.lower())
            return rel


def _write(manifest: FarmManifest, rel: str, data: bytes) -> str:
    path = os.path.join(manifest.root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _crash_time(rng: random.Random) -> float:
    return float(rng.randrange(*CRASH_TIMES))


def _good_dump(manifest: FarmManifest, family: Family, rng: random.Random, source: Dict[str, bytes]) -> FarmFile:
    if family.name not in source:
        with open(family.dump_path, "rb") as fh:
            source[family.name] = fh.read()
    when = _crash_time(rng)
    while (family.name, when) in manifest.used_times:      # two good dumps of a family never share their bytes
        when = _crash_time(rng)
    manifest.used_times.add((family.name, when))
    data = with_crash_time(source[family.name], when)
    rel = _random_path(manifest, rng)
    _write(manifest, rel, data)
    entry = FarmFile(rel_path=rel, kind="scenario", sha256=_sha256(data), family=family.name, status="ok",
                     network_bucket=family.network_bucket, culprit=family.culprit,
                     culprit_timestamp=family.culprit_timestamp, bugcheck_code=family.bugcheck_code, dump_time=when)
    manifest.files.append(entry)
    return entry


def _damaged(manifest: FarmManifest, family: Family, rng: random.Random, source: Dict[str, bytes],
             how: str) -> FarmFile:
    when = _crash_time(rng)
    data = with_crash_time(source[family.name], when)
    first, present = struct.unpack_from("<QQ", data, FIRST_PAGE_OFFSET)
    # What the header still tells (an error row keeps the bugcheck and crash time): all but an unknown DumpType.
    header: Dict[str, object] = {"bugcheck_code": family.bugcheck_code, "dump_time": when}
    if how == "truncated":
        kept = rng.randrange(present)
        data = data[:first + kept * PAGE + rng.randrange(PAGE)]
        error = "bitmap header claims %d pages but the file holds only %d (truncated?): at offset 0x%x" % (
            present, kept, PRESENT_PAGES_OFFSET)
    elif how == "dump-type":
        value = rng.choice((0x2A, 0x63, 0x1F00))
        data = data[:DUMP_TYPE_OFFSET] + struct.pack("<I", value) + data[DUMP_TYPE_OFFSET + 4:]
        error = "unknown DumpType %d: at offset 0x%x" % (value, DUMP_TYPE_OFFSET)
        header = {}
    else:                                                # the bitmap header's signature smashed
        junk = bytes(rng.choice(b"QXZ") for _ in range(4))
        data = data[:BITMAP_HEADER] + junk + data[BITMAP_HEADER + 4:]
        error = "bad bitmap dump signature %r/%r (expected SDMP or FDMP, DUMP): at offset 0x%x" % (
            junk, b"DUMP", BITMAP_HEADER)
    rel = _random_path(manifest, rng)
    _write(manifest, rel, data)
    entry = FarmFile(rel_path=rel, kind="truncated" if how == "truncated" else "corrupt", sha256=_sha256(data),
                     family=family.name, status="error", error=error, **header)  # type: ignore[arg-type]
    manifest.files.append(entry)
    return entry


def make_farm(root: str, seed: int, count: int = 52, broken: bool = True, symbols: Optional[str] = None,
              work: Optional[str] = None) -> FarmManifest:
    """Write ``count`` good scenario dumps (distinct contents) under ``root`` and, when ``broken``, the damaged
    files and the duplicate too; merge every family's symbol store into ``symbols`` (default ``root`` +
    ".symbols"); the built variants go to ``work`` (default ``root`` + ".work"). Deterministic for a seed."""
    root = os.path.abspath(root)
    manifest = FarmManifest(root=root, symbols=os.path.abspath(symbols or root + ".symbols"),
                            work=os.path.abspath(work or root + ".work"), seed=seed)
    for folder in (manifest.root, manifest.symbols, manifest.work):
        os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    rng = random.Random("farm:%d" % seed)
    families = [(name, i) for name in SCENARIOS for i in range(FAMILIES[name])]
    if count < len(families):
        families = rng.sample(families, count)
    for scenario, index in families:
        family = _build_family(manifest, scenario, index)
        manifest.families[family.name] = family
    names = sorted(manifest.families)
    plan = list(names) + rng.choices(names, [WEIGHT[manifest.families[n].scenario] for n in names],
                                     k=count - len(names))
    rng.shuffle(plan)
    source: Dict[str, bytes] = {}
    for name in plan:
        _good_dump(manifest, manifest.families[name], rng, source)
    if broken:
        for how in ["truncated"] * TRUNCATED + ["dump-type", "signature"]:
            _damaged(manifest, manifest.families[rng.choice(names)], rng, source, how)
        original = rng.choice([f for f in manifest.files if f.kind == "scenario"])
        with open(manifest.path(original), "rb") as fh:
            data = fh.read()
        rel = _random_path(manifest, rng)
        _write(manifest, rel, data)
        duplicate = FarmFile(**dict(vars(original), rel_path=rel, kind="duplicate"))
        manifest.files.append(duplicate)
        rel = _random_path(manifest, rng)
        if not rel.lower().endswith(".dmp"):
            rel = rel + ".dmp"
        _write(manifest, rel, NOT_A_DUMP_TEXT)
        manifest.files.append(FarmFile(rel_path=rel, kind="not-a-dump", sha256=_sha256(NOT_A_DUMP_TEXT),
                                       skip_reason="not a kernel dump (signature %r)"
                                       % NOT_A_DUMP_TEXT[:4].decode("ascii")))
    manifest.build_seconds = time.perf_counter() - start
    return manifest


def add_dumps(manifest: FarmManifest, count: int, seed: int) -> List[FarmFile]:
    """``count`` more good dumps (new crash times of the farm's families) in new places under the root."""
    rng = random.Random("farm-add:%d:%d" % (manifest.seed, seed))
    source: Dict[str, bytes] = {}
    names = sorted(manifest.families)
    return [_good_dump(manifest, manifest.families[rng.choice(names)], rng, source) for _ in range(count)]
