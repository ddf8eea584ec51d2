"""A batch worker that misbehaves on purpose, chosen by the dump's file name, around the real worker.

``python -m tests.batch.misbehaving_child`` is ``python -m pytriage.batch.child`` except that a dump whose file
name contains

- ``hang`` never returns (a triage looping on a corrupt structure): the parent must kill it at ``--timeout``;
- ``crash`` kills the worker with SIGSEGV after a line on stderr (a fault in a C extension);
- ``hog`` asks for 1 GB at once (a triage growing without bound): the RLIMIT_AS cap must turn it into an error;
- ``chatty`` prints to stdout first (as a stray ``print`` in the triage would): the protocol must not see it;

and every dump takes ``$PYTRIAGE_TEST_SLOW`` seconds longer when that is set (so a test can press Ctrl-C while
dumps are in flight). ``$PYTRIAGE_TEST_PIDS``, when set, is a folder where each worker leaves a file named by
its pid, so a test can check that no worker outlives the batch.
"""

import os
import signal
import sys
import time

from pytriage.batch import child

_real_triage_path = child.triage_path


def triage_path(path, symbols, engine):
    name = os.path.basename(path)
    if "hang" in name:
        while True:
            time.sleep(0.5)
    if "crash" in name:
        sys.stderr.write("simulated fault in a C extension\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)
    if "chatty" in name:
        print("chatter on stdout", flush=True)
    if "hog" in name:
        blob = bytearray(1 << 30)
        del blob
    slow = os.environ.get("PYTRIAGE_TEST_SLOW")
    if slow:
        time.sleep(float(slow))
    return _real_triage_path(path, symbols, engine)


child.triage_path = triage_path

if __name__ == "__main__":
    pids = os.environ.get("PYTRIAGE_TEST_PIDS")
    if pids:
        open(os.path.join(pids, str(os.getpid())), "w").close()
    sys.exit(child.main())
