"""``python -m iii_trio.runtime`` is the ``iii-trio`` command."""

import sys

from iii_trio.runtime.cli.main import main

sys.exit(main())
