"""The batch worker with tests/fakes/pybag.py installed as ``pybag``: ``--engine dbgeng`` on any OS.

The fake answers from the offline engine in DbgEng's shapes (see its docstring), so the worker runs the real
``PybagTarget.open_dump`` path that a Windows machine with pybag would run.
"""

import sys

from pytriage.batch import child
from tests.fakes import pybag as fake_pybag

if __name__ == "__main__":
    sys.modules["pybag"] = fake_pybag
    sys.exit(child.main())
