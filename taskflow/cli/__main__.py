"""``python -m taskflow.cli``: the ``taskflow`` command."""

import sys

from taskflow.cli.entry import main

sys.exit(main())
