"""``pytriage`` whose batch workers are tests/batch/misbehaving_child.py: the real CLI, signals and all.

``python -m tests.batch.slow_cli batch DIR ...`` lets a test press Ctrl-C (send SIGINT) in a real ``pytriage
batch`` process while dumps are in flight (``$PYTRIAGE_TEST_SLOW`` seconds each).
"""

import sys

from pytriage import cli
from pytriage.batch import task

if __name__ == "__main__":
    task.DEFAULT_CHILD_MODULE = "tests.batch.misbehaving_child"
    sys.exit(cli.main(sys.argv[1:]))
