"""``--since``: a window back from now (``30m``, ``1h``, ``2d``) or an ISO 8601 time.

Parsed by argparse before any connection is made, so a bad value is a bad
invocation (exit status 2) that names the forms accepted.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta, timezone

from taskflow.models import utcnow

WINDOW = re.compile(r"([0-9]+)([smhdw])")  # not \d: it matches every script's digits
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
FORMS = "a window such as 30m, 1h, 2d or 1w, or an ISO 8601 time such as 2026-05-01T08:00"


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """The UTC moment ``text`` names; an ISO time without a zone is taken as UTC.

    Raises:
        argparse.ArgumentTypeError: ``text`` is neither form, or reaches
            before the year 1.
    """
    now = now or utcnow()
    match = WINDOW.fullmatch(text.strip())
    if match is not None:
        try:
            return now - timedelta(**{UNITS[match[2]]: int(match[1])})
        except (OverflowError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} reaches too far back") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {FORMS}, got {text!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def since_argument(text: str) -> datetime:
    """``parse_since`` as an argparse ``type=``."""
    return parse_since(text)


def positive_int(text: str) -> int:
    """An argparse ``type=`` for ``--limit``: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
