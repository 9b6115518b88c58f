"""pytest fixtures over ``taskflow.testing``, for an application's own tests (opt-in).

Enable them with ``pytest_plugins = ["taskflow.pytest_plugin"]`` in the root
``conftest.py``.  They need one fixture of the application's own: ``task_manager``, returning
its ``TaskManager``.  They are not registered automatically (no ``pytest11``
entry point), so installing taskflow changes nobody's test run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskflow.manager import TaskManager
from taskflow.testing import CapturedTasks, capture, inline_tasks


@pytest.fixture
def taskflow_inline(task_manager: TaskManager) -> Iterator[TaskManager]:
    """Each request returns once its tasks are over (``taskflow.testing.inline_tasks``)."""
    with inline_tasks(task_manager):
        yield task_manager


@pytest.fixture
def taskflow_captured(task_manager: TaskManager) -> Iterator[CapturedTasks]:
    """``add_task()`` and ``enqueue()`` are recorded, not run (``taskflow.testing.capture``)."""
    with capture(task_manager) as captured:
        yield captured
