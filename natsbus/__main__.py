"""``python -m natsbus``: the ``natsbus`` command."""

import sys

from natsbus.cli import main

sys.exit(main())
