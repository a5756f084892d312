"""``python -m hface`` runs the command line."""

import sys

from hface.cli import main

sys.exit(main())
