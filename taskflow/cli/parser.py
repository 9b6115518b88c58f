"""The pieces every command group shares: exit statuses, the parser class, ``--url``.

Every error the command line reports is one line on stderr, ``taskflow:
error: ...``, never a traceback, and one exit status says what kind it was:
2 for a bad invocation or configuration, 1 for a failure.  argparse's own
errors print the usage first; ``OneLineParser`` keeps them to one line as
well, naming the command and where its help is.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, TypeAlias

from taskflow.settings import ENV_DATABASE_URL

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Quoted: the class is generic for type checkers only, subscripting it at runtime fails.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class UsageError(Exception):
    """A value the command cannot use, found after parsing: exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, as the command's own errors are."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"taskflow: error: {self.prog}: {message} (see {self.prog} --help)\n")


def fail(message: str, status: int) -> int:
    """Print ``message`` as the command's one-line error; return ``status``."""
    print(f"taskflow: error: {message}", file=sys.stderr)
    return status


def add_url_option(parser: argparse.ArgumentParser) -> None:
    """``--url``, falling back to ``TASKFLOW_DATABASE_URL``: the same on every command."""
    parser.add_argument(
        "--url",
        metavar="URL",
        help=f"database URL, e.g. postgresql://user@host/db (default: ${ENV_DATABASE_URL})",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: machine output on stdout instead of the table."""
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (for scripts)"
    )
