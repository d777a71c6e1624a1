import sys

try:
    # An interrupt while the CLI's own modules import (before main installs its handlers) is still
    # an interrupt: exit 130 with one line, never a traceback.
    from hlbench.cli import main

    status = main()
except KeyboardInterrupt:
    print("hlbench: interrupted", file=sys.stderr)
    status = 130
sys.exit(status)
