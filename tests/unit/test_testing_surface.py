"""``taskflow.testing`` is public: declared, documented, and its pytest plugin opt-in."""

from __future__ import annotations

from pathlib import Path

import taskflow.testing

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_is_documented() -> None:
    assert sorted(taskflow.testing.__all__) == [
        "CapturedTask",
        "CapturedTasks",
        "capture",
        "inline_tasks",
    ]
    for name in taskflow.testing.__all__:
        assert getattr(taskflow.testing, name).__doc__, name


def test_the_pytest_plugin_is_not_registered_for_everyone() -> None:
    # Installing taskflow must not change anyone's test run: fixtures are opted into.
    for name in ("pyproject.toml", "setup.py"):
        assert "pytest11" not in (ROOT / name).read_text()
