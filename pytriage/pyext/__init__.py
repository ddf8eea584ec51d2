"""Inside the debugger (DESIGN 9): `!py -m pytriage.pyext.<command> args` under pykd, and the JavaScript
extension (pytriage.js) that turns them into real `!pytriage`, `!pooltag` and `!nblwalk` commands.

The entry modules run the very code the command line runs (``pytriage.cli``), on a target that reads
through the debugger instead of a dump file, so the output is the same byte for byte.
"""
