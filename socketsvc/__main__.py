"""`python -m socketsvc`."""

import sys

from socketsvc.cli import main

sys.exit(main())
