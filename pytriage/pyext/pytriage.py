"""`!py -m pytriage.pyext.pytriage [options]`
(or `!pytriage` with pytriage.js): `pytriage analyze` on the debugger's target.

Options are the command line's (`pytriage analyze --help`) without the dump file.
"""

import sys

from pytriage.pyext.runner import run

if __name__ == "__main__":
    run("analyze", sys.argv[1:])
