"""A few scenario dumps for the batch tests, built once per test session, and what `pytriage analyze` says of them.

Three built-in scenarios (three different buckets and culprits) are built as bitmap dumps; more *distinct* dumps
of the same crash are made by writing another crash time into ``DUMP_HEADER64.SystemTime`` (new bytes, new
content hash, the same triage apart from ``dump.crash_time``). The expected triage record of any dump is what
``pytriage analyze --json`` prints for it, run in-process through the CLI's own code path, independent of the
batch worker's.
"""

import contextlib
import io
import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from typing import Dict

from pytriage import cli
from pytriage.dump import structs as S
from pytriage.scenarios import build_builtin

SCENARIOS = ("basic", "nwifi-completion", "wfp-callout-nbl")
SYSTEM_TIME = S.DUMP_HEADER64.offsets["SystemTime"]
FILETIME_UNIX_EPOCH = 116444736000000000


@dataclass
class Built:
    root: str
    dumps: Dict[str, bytes] = field(default_factory=dict)      # scenario -> the dump's bytes
    stores: Dict[str, str] = field(default_factory=dict)       # scenario -> its symbol store

    @property
    def symbols(self) -> str:
        """One symbol path for every scenario (each has its own store)."""
        return ";".join(self.stores[name] for name in SCENARIOS)


_BUILT: Dict[str, Built] = {}


def built_scenarios(tmp_path_factory) -> Built:
    if "built" not in _BUILT:
        root = str(tmp_path_factory.mktemp("batch-scenarios"))
        built = Built(root)
        for name in SCENARIOS:
            scenario = build_builtin(name, os.path.join(root, name), "bitmap")
            with open(scenario.dump_path, "rb") as fh:
                built.dumps[name] = fh.read()
            built.stores[name] = scenario.symstore_path
        _BUILT["built"] = built
    return _BUILT["built"]


def with_crash_time(data: bytes, epoch_seconds: int) -> bytes:
    ticks = epoch_seconds * 10000000 + FILETIME_UNIX_EPOCH
    return data[:SYSTEM_TIME] + struct.pack("<Q", ticks) + data[SYSTEM_TIME + 8:]


def write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def copy(src: str, dst: str) -> str:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def analyze_record(path: str, symbols: str) -> dict:
    """``pytriage analyze PATH --json --symbols SYMBOLS``, through the CLI in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["analyze", path, "--json", "--symbols", symbols])
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())
