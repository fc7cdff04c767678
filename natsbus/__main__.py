"""``python -m natsbus``: the ``natsbus`` command."""

import sys

try:
    from natsbus.cli import main

    status = main()
except KeyboardInterrupt:
    # Ctrl-C before the command handles SIGINT itself (while it imports, or as it starts):
    # end as the command would, without a traceback.
    status = 130
sys.exit(status)
