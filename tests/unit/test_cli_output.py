"""The command line's formatting, ``--since`` parsing and progress line: no I/O."""

from __future__ import annotations

import argparse
import io
from datetime import datetime, timedelta, timezone

import pytest

from taskflow.cli.output import Progress, clip, fields, percent, seconds, table
from taskflow.cli.report import percentile
from taskflow.cli.since import parse_since

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_table_aligns_columns_without_trailing_spaces() -> None:
    text = table(("ID", "STATUS", "ERROR"), [("a1", "failed", "boom"), ("b", "ok", "")])
    assert text.splitlines() == [
        "ID  STATUS  ERROR",
        "a1  failed  boom",
        "b   ok",
    ]


def test_fields_align_values() -> None:
    assert fields([("ID", "x"), ("Function", "jobs.send")]).splitlines() == [
        "ID        x",
        "Function  jobs.send",
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "-"), (0.25, "250ms"), (2.414, "2.41s"), (185, "3m05s"), (7300, "2h01m")],
)
def test_seconds(value: float | None, shown: str) -> None:
    assert seconds(value) == shown


def test_percent_and_clip() -> None:
    assert (percent(None), percent(0.2), percent(1.0)) == ("-", "20.0%", "100.0%")
    assert clip("first line\nsecond", 20) == "first line"
    assert clip("x" * 30, 10) == "x" * 9 + "…"
    assert clip(None, 5) == ""


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("1h", NOW - timedelta(hours=1)),
        ("2d", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-04-30T08:00", datetime(2026, 4, 30, 8, tzinfo=timezone.utc)),
        ("2026-04-30T10:00+02:00", datetime(2026, 4, 30, 8, tzinfo=timezone.utc)),
        ("2026-04-30", datetime(2026, 4, 30, tzinfo=timezone.utc)),
    ],
)
def test_since_forms(text: str, moment: datetime) -> None:
    assert parse_since(text, now=NOW) == moment


@pytest.mark.parametrize("text", ["", "1", "1.5h", "-1h", "h", "yesterday", "٣h"])
def test_since_refuses_other_forms(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a window such as 30m"):
        parse_since(text, now=NOW)


def test_since_too_far_back() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="reaches too far back"):
        parse_since("99999999d", now=NOW)


def test_percentile_is_nearest_rank() -> None:
    ordered = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert (percentile(ordered, 0.5), percentile(ordered, 0.95)) == (3.0, 10.0)
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_on_a_terminal_only() -> None:
    terminal = Terminal()
    progress = Progress("retried", terminal)
    progress.update(500)
    progress.update(1000, 1200)
    progress.finish()
    assert terminal.getvalue() == "\rretried: 500\rretried: 1000/1200\r\033[K"

    piped = io.StringIO()
    quiet = Progress("retried", piped)
    quiet.update(500)
    quiet.finish()
    assert piped.getvalue() == ""
