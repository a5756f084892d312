import sys

from hface.cli import main

sys.exit(main())
