"""The observers and loggers under the module path fastapi-taskflow uses.

They live in ``taskflow.observe``; this module keeps ``from
taskflow.loggers import FileLogger`` working for code written against it.
"""

from __future__ import annotations

from taskflow.observe import *  # noqa: F403  (the same names, by design)
from taskflow.observe import __all__ as __all__
