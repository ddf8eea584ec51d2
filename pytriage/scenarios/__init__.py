"""Scenario builder: JSON spec -> synthetic kernel dump + symbols (DESIGN 10).

The built-in specs in ``builtin/`` are the demo and the seed cases; ``build_from_file`` accepts a
user-written spec (docs/scenarios.md) or the name of a built-in one.
"""

import json
import os
from typing import List, Tuple

from pytriage.errors import SpecError

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "builtin")


def builtin_names() -> List[Tuple[str, str]]:
    """(name, one-line summary) of every built-in scenario."""
    out = []
    for entry in sorted(os.listdir(BUILTIN_DIR)):
        if entry.endswith(".json"):
            with open(os.path.join(BUILTIN_DIR, entry), encoding="utf-8") as fh:
                out.append((entry[:-5], str(json.load(fh).get("summary", ""))))
    return out


def builtin_path(name: str) -> str:
    names = [n for n, _ in builtin_names()]
    if name not in names:
        raise SpecError("no built-in scenario %r (have: %s)" % (name, ", ".join(names)))
    return os.path.join(BUILTIN_DIR, name + ".json")


def build_from_file(spec_path: str, out_dir: str, dump_type: str = "bitmap"):
    """Build a spec file, or a built-in scenario when ``spec_path`` names one."""
    from pytriage.scenarios.builder import build_scenario
    from pytriage.scenarios.spec import load_spec

    if not os.path.exists(spec_path) and not spec_path.endswith(".json"):
        spec_path = builtin_path(spec_path)
    return build_scenario(load_spec(spec_path), out_dir, dump_type)


def build_builtin(name: str, out_dir: str, dump_type: str = "bitmap"):
    return build_from_file(builtin_path(name), out_dir, dump_type)
