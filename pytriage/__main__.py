import sys

from pytriage.cli import main

sys.exit(main())
