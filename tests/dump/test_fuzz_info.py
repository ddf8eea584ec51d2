"""Property: whatever bytes a dump holds, `pytriage info` ends quickly with exit 0 (possibly with
warnings) or exit 2 and one line on stderr; never an internal error (exit 3), a traceback or a hang.

Mutations aim at the structures the reader trusts (headers, triage tables, the page bitmap, page tables
and the module list pages) as well as anywhere in the file, and include truncation.
"""

import json
import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytriage import cli

_BASES = {}
HANG_SECONDS = 20


def _base(name, request):
    if name not in _BASES:
        if name == "triage":
            path = request.getfixturevalue("triage_dump_path")
        else:
            path = request.getfixturevalue("basic_" + name).dump_path
        with open(path, "rb") as fh:
            _BASES[name] = fh.read()
    return _BASES[name]


def _hot_ranges(name, size):
    """Where corruption is most likely to hurt: header, first triage/bitmap structures, the rest."""
    ranges = [(0, 0x2100), (0x2000, 0x4000)]
    if name == "triage":
        ranges += [(0x10828, 0x15d18 + 0x3720), (0x19438, 0x19438 + 0x7270), (0x13a280, 0x13a400)]
    ranges.append((0, size))
    return ranges


mutation = st.tuples(st.integers(0, 3), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=16))


class _Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Hang()


@pytest.mark.parametrize("name", ["triage", "bitmap", "full"])
def test_random_corruption_never_crashes_info(name, request, tmp_path, capsys):
    base = _base(name, request)
    path = str(tmp_path / ("fuzz-%s.dmp" % name))
    ranges = _hot_ranges(name, len(base))

    @settings(max_examples=int(os.environ.get("PYTRIAGE_FUZZ_EXAMPLES", "120")), deadline=None,
              derandomize=not os.environ.get("PYTRIAGE_FUZZ_EXAMPLES"),
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(mutations=st.lists(mutation, min_size=1, max_size=8),
           cut=st.one_of(st.none(), st.integers(0, len(base))),
           as_json=st.booleans())
    def run(mutations, cut, as_json):
        data = bytearray(base)
        for which, where, blob in mutations:
            lo, hi = ranges[min(which, len(ranges) - 1)]
            at = lo + where % max(1, hi - lo)
            data[at:at + len(blob)] = blob
        if cut is not None:
            del data[cut:]
        with open(path, "wb") as fh:
            fh.write(data)
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HANG_SECONDS)
        try:
            code = cli.main(["info", path] + (["--json"] if as_json else []))
        except _Hang:
            pytest.fail("pytriage info hung on a corrupted %s dump" % name)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        out, err = capsys.readouterr()
        assert code in (0, 2), err
        assert "Traceback" not in err
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("pytriage: error: "), err
        else:
            assert err == ""
            if as_json:
                assert json.loads(out)["schema"] == "pytriage.info/1"

    run()
