"""``TaskManager(freeze_gc_at_startup=True)``: the start-up heap leaves the collector's reach."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from taskflow import TaskManager
from taskflow.exceptions import ConfigurationError


@pytest.fixture
def unfrozen() -> object:
    gc.unfreeze()
    yield None
    gc.unfreeze()  # the rest of the test session collects as usual


async def test_startup_freezes_what_is_alive_and_later_objects_are_collected(
    tmp_path: Path, unfrozen: object
) -> None:
    manager = TaskManager(
        database_url=f"sqlite:///{tmp_path / 'tasks.db'}", freeze_gc_at_startup=True
    )
    await manager.startup()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 1000, frozen  # the imported modules' objects, at least
        assert gc.is_tracked(manager) and manager not in gc.get_objects()

        class Cycle:
            pass

        made = Cycle()
        made.me = made  # type: ignore[attr-defined]
        del made
        assert gc.collect() >= 1  # objects made after the start are collected as usual
    finally:
        await manager.shutdown()


async def test_off_by_default(tmp_path: Path, unfrozen: object) -> None:
    manager = TaskManager(database_url=f"sqlite:///{tmp_path / 'tasks.db'}")
    await manager.startup()
    try:
        assert gc.get_freeze_count() == 0
    finally:
        await manager.shutdown()


def test_a_value_other_than_true_or_false_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="freeze_gc_at_startup must be True or False"):
        TaskManager(freeze_gc_at_startup="yes")  # type: ignore[arg-type]
