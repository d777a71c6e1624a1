import sys

from hlbench.cli import main

sys.exit(main())
