"""pytriage.js, the JavaScript extension that makes !pytriage / !pooltag / !nblwalk real debugger commands:
syntax-checked by node and run against a small fake of the debugger's `host` object (tests/pyext/js_host.js),
which records what it registers and which `!py -m` command each alias runs. node comes from `scripts/test`."""

import json
import os
import shutil
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "pytriage", "pyext", "pytriage.js")
HOST = os.path.join(os.path.dirname(__file__), "js_host.js")


def node() -> str:
    found = shutil.which("node") or shutil.which("nodejs")
    assert found, "node is required (scripts/test installs the Debian package nodejs)"
    return found


def test_the_script_is_valid_javascript():
    subprocess.run([node(), "--check", SCRIPT], check=True, capture_output=True)


def test_aliases_forward_to_the_python_entry_modules():
    result = json.loads(subprocess.run([node(), HOST, SCRIPT], check=True, capture_output=True, text=True).stdout)
    assert result["aliases"] == ["pytriage", "pooltag", "nblwalk"]
    assert result["versions"] == [[1, 7]]
    by_alias = {}
    for call in result["calls"]:
        by_alias.setdefault(call["alias"], []).append(call)
    for alias, module in (("pytriage", "pytriage"), ("pooltag", "pooltag"), ("nblwalk", "nblwalk")):
        bare, options, number = by_alias[alias]
        assert bare["executed"] == ["!py -m pytriage.pyext.%s" % module]
        assert options["executed"] == ["!py -m pytriage.pyext.%s -v --json" % module]
        assert number["executed"] == ["!py -m pytriage.pyext.%s 0xffffda8acc2e02b0" % module]
        assert bare["logged"] == ["line one of pytriage.pyext.%s\n" % module, "line two\n"]


@pytest.mark.parametrize("bad", ["function initializeScript( {", "var x = ;"])
def test_node_rejects_a_broken_script(tmp_path, bad):
    """The syntax check can fail: a broken copy of the script is refused."""
    broken = tmp_path / "broken.js"
    broken.write_text(open(SCRIPT, encoding="utf-8").read() + "\n" + bad + "\n", encoding="utf-8")
    assert subprocess.run([node(), "--check", str(broken)], capture_output=True).returncode != 0
