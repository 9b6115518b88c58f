"""Built-in observers: a log file, stdout, and memory (for tests)."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from taskflow.observe.events import LifecycleEvent, LogEvent
from taskflow.observe.observer import TaskObserver

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _prefix(task_id: str, func_name: str) -> str:
    return f"[{task_id[:8]}] [{func_name}]"


def _log_line(event: LogEvent) -> str:
    return f"{_prefix(event.task_id, event.func_name)} {event.message}"


def _lifecycle_line(event: LifecycleEvent) -> str:
    when = event.timestamp.strftime(TIME_FORMAT)
    return f"{_prefix(event.task_id, event.func_name)} {when} -- {event.status.value.upper()}"


class FileLogger(TaskObserver):
    """Plain-text lines in a file: ``[id8] [func] message`` (works with tail, grep, shippers).

    Args:
        mode: ``"rotate"`` rotates at ``max_bytes`` keeping ``backup_count``
            files (one process); ``"watched"`` reopens the file when an
            external tool (logrotate) moves it (several processes).
        log_lifecycle: also write ``[id8] [func] <time> -- STATUS`` lines.
    """

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = 10 * 1024 * 1024,
        backup_count: int = 5,
        mode: str = "rotate",
        log_lifecycle: bool = False,
        min_level: str = "info",
    ) -> None:
        super().__init__(min_level=min_level)
        if mode not in ("rotate", "watched"):
            raise ValueError(f"mode must be 'rotate' or 'watched', got {mode!r}")
        self.path = path
        self.log_lifecycle = log_lifecycle
        handler: logging.Handler
        if mode == "rotate":
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
            )
        else:
            handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler = handler
        self._logger = logging.getLogger(f"taskflow.file_logger.{path}")
        self._logger.propagate = False
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(handler)

    async def on_log(self, event: LogEvent) -> None:
        """Write the line."""
        self._logger.info(_log_line(event))

    async def on_lifecycle(self, event: LifecycleEvent) -> None:
        """Write a status line when ``log_lifecycle`` is on."""
        if self.log_lifecycle and self._should_log_lifecycle(event.status):
            self._logger.info(_lifecycle_line(event))

    async def close(self) -> None:
        """Flush and close the file."""
        self._handler.flush()
        self._logger.removeHandler(self._handler)
        self._handler.close()


class StdoutLogger(TaskObserver):
    """Lines on stdout, for containers whose log agent reads it."""

    def __init__(self, *, log_lifecycle: bool = True, min_level: str = "info") -> None:
        super().__init__(min_level=min_level)
        self.log_lifecycle = log_lifecycle

    async def on_log(self, event: LogEvent) -> None:
        """Print the line."""
        when = event.timestamp.strftime(TIME_FORMAT)
        print(f"{_prefix(event.task_id, event.func_name)} {when} {event.message}", file=sys.stdout)

    async def on_lifecycle(self, event: LifecycleEvent) -> None:
        """Print a status line when ``log_lifecycle`` is on."""
        if self.log_lifecycle and self._should_log_lifecycle(event.status):
            print(_lifecycle_line(event), file=sys.stdout)


class InMemoryLogger(TaskObserver):
    """Keeps every event in lists, for assertions in tests."""

    def __init__(self, *, min_level: str = "debug") -> None:
        super().__init__(min_level=min_level)
        self.log_events: list[LogEvent] = []
        self.lifecycle_events: list[LifecycleEvent] = []

    async def on_log(self, event: LogEvent) -> None:
        """Keep the event."""
        self.log_events.append(event)

    async def on_lifecycle(self, event: LifecycleEvent) -> None:
        """Keep the event (lifecycle events are not filtered)."""
        self.lifecycle_events.append(event)

    def clear(self) -> None:
        """Forget every event recorded so far."""
        self.log_events.clear()
        self.lifecycle_events.clear()
