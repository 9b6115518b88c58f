"""fastapi-taskflow's ``periodic`` module names: ``ScheduledEntry`` and ``PeriodicScheduler``.

Schedules are declared with ``@task_manager.schedule(...)``; these are the
types behind it, importable where code written for fastapi-taskflow
expects them.
"""

from __future__ import annotations

from taskflow.runtime.scheduler import PeriodicScheduler, SchedulerStats
from taskflow.schedules import CronTrigger, IntervalTrigger, ScheduledEntry

__all__ = [
    "CronTrigger",
    "IntervalTrigger",
    "PeriodicScheduler",
    "ScheduledEntry",
    "SchedulerStats",
]
