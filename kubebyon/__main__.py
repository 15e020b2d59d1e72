import sys

from kubebyon.cli import main

sys.exit(main())
