"""How the commands print: aligned tables, JSON, times, durations and a progress line.

Tables are plain text with columns padded to their widest cell, as
fastapi-cli prints them, so they read in any terminal and survive a pipe;
``--json`` prints the same data for scripts.  Times are UTC.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

GAP = "  "
ELLIPSIS = "…"
ERASE_LINE = "\r\033[K"  # back to the start of the line, clear to its end


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell."""
    widths = [len(header) for header in headers]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))
    lines = [headers, *rows]
    # The last column is not padded: no trailing spaces on any line.
    padded = (
        GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    )
    return "\n".join(line.rstrip() for line in padded)


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    """``name  value`` lines with the values aligned, for one object."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}{GAP}{value}".rstrip() for name, value in pairs)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout; datetimes and other values as their ``str()``."""
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def when(moment: datetime | None) -> str:
    """A UTC time to the second, ``-`` for none."""
    if moment is None:
        return "-"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration as a person reads it: ``850ms``, ``2.41s``, ``3m05s``, ``-`` for none."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.2f}s"
    minutes, rest = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def percent(value: float | None) -> str:
    """A ratio as a percentage with one decimal, ``-`` for none."""
    return "-" if value is None else f"{value * 100:.1f}%"


def clip(text: str | None, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + ELLIPSIS


class Progress:
    """A counter line on stderr, rewritten in place, only when stderr is a terminal.

    Long operations call ``update``; piped or captured output gets nothing,
    so logs and scripts see only the final result.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.shown = self.stream.isatty()
        self._written = False

    def update(self, done: int, total: int | None = None) -> None:
        """Show ``done`` (of ``total`` when known)."""
        if not self.shown:
            return
        count = f"{done}" if total is None else f"{done}/{total}"
        self.stream.write(f"\r{self.label}: {count}")
        self.stream.flush()
        self._written = True

    def finish(self) -> None:
        """Erase the counter's line: the command's result follows, on stdout."""
        if self._written:
            self.stream.write(ERASE_LINE)
            self.stream.flush()
            self._written = False
