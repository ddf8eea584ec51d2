"""`!py -m pytriage.pyext.nblwalk [options]`
(or `!nblwalk` with pytriage.js): `pytriage nblwalk` on the debugger's target.

Options are the command line's (`pytriage nblwalk --help`) without the dump file.
"""

import sys

from pytriage.pyext.runner import run

if __name__ == "__main__":
    run("nblwalk", sys.argv[1:])
