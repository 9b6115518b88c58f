"""NULL written as a literal, not bound as ``None``, by the inline SQLite writer.

Python's ``sqlite3`` module binds int, float and str directly, but sends
every other value, ``None`` included, through its adapter protocol: a
registry lookup, then a search for ``__adapt__`` on its protocol class that
builds, formats and discards an ``AttributeError``.  That is about 2,500
machine instructions per ``None`` (counted with callgrind), and a new task
row has a dozen NULL columns: binding them cost 7% of a request that adds one
task (``benchmarks/README.md``).

So a statement is cut at its parameter marks once, and for each set of
columns that are NULL in every row of a batch, a variant with ``NULL`` in
those places is built and cached; ``executemany`` then binds only the other
values.  The rows of a batch are mostly alike (new tasks, finished tasks),
so nearly all of their NULLs become literals, and a batch is still one
statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import is_not
from typing import Any

Row = tuple[Any, ...]

# Compared with ``is not``, this is never the value: a column that must stay
# bound (a guard in a WHERE clause, where ``= NULL`` would match nothing).
_ALWAYS_BOUND = object()
# Patterns are few in practice (new task, finished task, retry...); the cap
# only keeps a pathological workload from growing the cache without end.
_MAX_VARIANTS = 256


class NullLiteralStatement:
    """One statement with qmark parameters, and its variants by NULL pattern."""

    def __init__(self, sql: str, *, nullable: int) -> None:
        """``nullable``: how many leading parameters may be written as NULL.

        The parameters after them are always bound.  The statement must have
        no ``?`` other than its parameter marks (ours are compiled from the
        model set, with no string literal containing one).
        """
        self._parts = sql.split("?")
        width = len(self._parts) - 1
        if not 0 <= nullable <= width:
            raise ValueError(f"{nullable} nullable parameters, but the statement has {width}")
        self._probe = (None,) * nullable + (_ALWAYS_BOUND,) * (width - nullable)
        self._variants: dict[tuple[bool, ...], str] = {}

    def bind(self, rows: Sequence[Row]) -> tuple[str, list[Row]]:
        """The variant with NULL where a column is None in every row; the rows' other values.

        Column by column, in C-level loops: finding per-row patterns in
        Python cost more than the NULLs it saved.  A None in a column that
        some row fills is bound as usual.
        """
        if not rows:
            return self._variant((True,) * len(self._probe)), []
        columns = list(zip(*rows, strict=True))
        if len(columns) != len(self._probe):
            raise ValueError(f"rows of {len(columns)} values for {len(self._probe)} parameters")
        bound = tuple(
            any(map(is_not, column, repeat(probe)))
            for column, probe in zip(columns, self._probe, strict=True)
        )
        if not any(bound):
            bound = (True, *bound[1:])  # one value per row, or executemany runs nothing
        kept = compress(columns, bound)
        return self._variant(bound), list(zip(*kept, strict=True))

    def _variant(self, bound: tuple[bool, ...]) -> str:
        sql = self._variants.get(bound)
        if sql is None:
            parts = self._parts
            pieces = [parts[0]]
            for is_bound, part in zip(bound, parts[1:], strict=True):
                pieces.append("?" if is_bound else "NULL")
                pieces.append(part)
            sql = "".join(pieces)
            if len(self._variants) >= _MAX_VARIANTS:
                self._variants.clear()
            self._variants[bound] = sql
        return sql
