import sys

from tiercut.cli import main

sys.exit(main())
