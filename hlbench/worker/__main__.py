import sys

from hlbench.worker.main import main

sys.exit(main(sys.argv[1:]))
