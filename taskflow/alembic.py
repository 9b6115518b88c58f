"""For the application's own Alembic: leave taskflow's tables alone, or run its migrations too.

taskflow's tables usually live in the application's database.  An
``alembic revision --autogenerate`` there compares the app's models with
every table it finds, and would propose dropping each ``taskflow_*`` table
(the whole task history) and its indexes.  Pass these filters to
``context.configure()`` in the app's ``env.py``::

    from taskflow.alembic import include_name, include_object

    context.configure(..., include_name=include_name, include_object=include_object)

or, to keep filters of the app's own, ``context.configure(...,
**exclude_taskflow(include_object=my_include_object))``.

:func:`versions_path` is the directory of taskflow's revisions, for an app
that runs them as a branch of its own history (``version_locations``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypedDict

from sqlalchemy.sql.schema import SchemaItem

__all__ = [
    "BRANCH_LABEL",
    "Filters",
    "IncludeName",
    "IncludeObject",
    "exclude_taskflow",
    "include_name",
    "include_object",
    "is_taskflow_table",
    "versions_path",
]

#: The branch label of taskflow's first revision: ``alembic upgrade taskflow@head``.
BRANCH_LABEL = "taskflow"
_PREFIX = "taskflow_"

IncludeName = Callable[[str | None, str, Mapping[str, str | None]], bool]
IncludeObject = Callable[[SchemaItem, str | None, str, bool, SchemaItem | None], bool]


class Filters(TypedDict):
    """The two keyword arguments of ``context.configure()`` that :func:`exclude_taskflow` builds."""

    include_name: IncludeName
    include_object: IncludeObject


def is_taskflow_table(name: str | None) -> bool:
    """Whether a table is taskflow's: ``taskflow_*``, its version table included."""
    return name is not None and name.startswith(_PREFIX)


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Alembic's ``include_name`` hook: reflect no ``taskflow_*`` table, nor anything on one.

    Filtering at reflection leaves taskflow's tables unread, so their indexes,
    constraints and columns never reach the comparison either.
    """
    if type_ == "table":
        return not is_taskflow_table(name)
    if type_ == "schema":
        return True
    return not is_taskflow_table(parent_names.get("table_name"))


def include_object(
    obj: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: SchemaItem | None
) -> bool:
    """Alembic's ``include_object`` hook: compare nothing of a ``taskflow_*`` table.

    Covers what ``include_name`` cannot see: taskflow's tables on the models'
    side, when the app's ``target_metadata`` holds them (it imported
    ``taskflow.db.tables``).  A foreign key from the app's table *to* a
    taskflow table belongs to the app's table and is still compared.
    """
    if type_ == "table":
        return not is_taskflow_table(name)
    table = getattr(obj, "table", None)
    return not is_taskflow_table(getattr(table, "name", None))


def exclude_taskflow(
    include_name: IncludeName | None = None, include_object: IncludeObject | None = None
) -> Filters:
    """Both hooks, each also asking the app's own filter (if given) for what is not taskflow's.

    Use as ``context.configure(..., **exclude_taskflow(include_object=mine))``.
    """
    names, objects = include_name, include_object

    def name_filter(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
        if not _include_name(name, type_, parent_names):
            return False
        return names is None or names(name, type_, parent_names)

    def object_filter(
        obj: SchemaItem,
        name: str | None,
        type_: str,
        reflected: bool,
        compare_to: SchemaItem | None,
    ) -> bool:
        if not _include_object(obj, name, type_, reflected, compare_to):
            return False
        return objects is None or objects(obj, name, type_, reflected, compare_to)

    return Filters(include_name=name_filter, include_object=object_filter)


# The module-level hooks under other names: exclude_taskflow's parameters shadow them.
_include_name = include_name
_include_object = include_object


def versions_path() -> str:
    """The directory of taskflow's revision scripts, in a wheel or a checkout.

    For an app that runs them within its own Alembic history, as a branch
    labelled ``taskflow``: add it to ``version_locations`` (with the app's
    own versions directory) and run ``alembic upgrade heads``.
    """
    # Imported here: it imports Alembic's command machinery, which the
    # filters above do not need.
    from taskflow.db.migrate import script_location

    return str(Path(script_location()) / "versions")
