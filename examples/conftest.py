"""Test settings for the examples, read before any example app is imported.

The apps read ``TASKFLOW_DATABASE_URL`` when their module is imported, so
the tests' database is chosen here: SQLite in memory, a new empty database
each time an app starts (each ``with TestClient(app)``), and no file left
behind.  Point it at a PostgreSQL or MySQL test database to test on that.
"""

from __future__ import annotations

import os

os.environ.setdefault("TASKFLOW_DATABASE_URL", "sqlite://")
