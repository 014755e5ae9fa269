"""``python -m opshub`` is the ``opshub`` command."""

import sys

from opshub.cli import main

sys.exit(main())
