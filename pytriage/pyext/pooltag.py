"""`!py -m pytriage.pyext.pooltag [options]`
(or `!pooltag` with pytriage.js): `pytriage pooltag` on the debugger's target.

Options are the command line's (`pytriage pooltag --help`) without the dump file.
"""

import sys

from pytriage.pyext.runner import run

if __name__ == "__main__":
    run("pooltag", sys.argv[1:])
