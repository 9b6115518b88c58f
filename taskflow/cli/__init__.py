"""The ``taskflow`` command line: tasks, reports, schedules and schema migrations.

``taskflow tasks list|show|retry|cancel|retry-failed``, ``taskflow report``,
``taskflow schedules list|pause|resume|run-now`` and ``taskflow db
upgrade|downgrade|current|check|rebuild-stats``, on any store a ``--url``
(or ``TASKFLOW_DATABASE_URL``) names.  ``main`` is the console script's
entry point; each group lives in a module of its own.
"""

from __future__ import annotations

from taskflow.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
