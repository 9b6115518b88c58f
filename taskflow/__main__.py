"""``python -m taskflow``: the ``taskflow`` command, where the console script is not installed."""

import sys

from taskflow.cli.entry import main

sys.exit(main())
