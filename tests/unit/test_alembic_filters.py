"""``taskflow.alembic``'s filters, object by object (the integration tests run them in Alembic)."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, String, Table, UniqueConstraint
from sqlalchemy.sql.schema import SchemaItem

from taskflow.alembic import exclude_taskflow, include_name, include_object
from taskflow.db.tables import metadata as taskflow_metadata

app = MetaData()
orders = Table(
    "orders",
    app,
    Column("id", Integer, primary_key=True),
    Column("task_id", String(36), ForeignKey("taskflow_tasks.id")),
    UniqueConstraint("task_id", name="uq_orders_task"),
)
Index("ix_orders_task", orders.c.task_id)


def included(item: SchemaItem, name: str | None, type_: str) -> bool:
    return include_object(item, name, type_, False, None)


def test_names_of_taskflow_tables_and_what_hangs_on_them_are_not_reflected() -> None:
    assert not include_name("taskflow_tasks", "table", {"schema_name": None})
    assert not include_name("taskflow_alembic_version", "table", {"schema_name": None})
    assert include_name("orders", "table", {"schema_name": None})
    assert include_name(None, "schema", {})
    on_ours = {
        "table_name": "taskflow_tasks",
        "schema_name": None,
        "schema_qualified_table_name": "taskflow_tasks",
    }
    on_theirs = {
        "table_name": "orders",
        "schema_name": None,
        "schema_qualified_table_name": "orders",
    }
    for type_ in ("index", "unique_constraint", "foreign_key_constraint", "column"):
        assert not include_name("ix_taskflow_tasks_due", type_, on_ours)
        assert include_name("ix_orders_task", type_, on_theirs)


def test_objects_of_taskflow_tables_are_not_compared() -> None:
    for table in taskflow_metadata.sorted_tables:
        assert not included(table, table.name, "table")
        for index in table.indexes:
            assert not included(index, index.name, "index")
        for column in table.columns:
            assert not included(column, column.name, "column")
        for constraint in table.constraints:
            assert not included(constraint, str(constraint.name), "unique_constraint")


def test_the_apps_objects_are_compared_even_when_they_point_at_taskflow() -> None:
    assert included(orders, "orders", "table")
    assert included(orders.c.task_id, "task_id", "column")
    (foreign_key,) = orders.foreign_key_constraints
    assert included(foreign_key, foreign_key.name, "foreign_key_constraint")
    (index,) = orders.indexes
    assert included(index, index.name, "index")


def test_exclude_taskflow_asks_the_apps_own_filters_about_the_rest() -> None:
    asked: list[str | None] = []

    def skip_legacy(name: str | None, type_: str, parent_names: object) -> bool:
        asked.append(name)
        return name != "legacy"

    filters = exclude_taskflow(include_name=skip_legacy)
    assert not filters["include_name"]("taskflow_tasks", "table", {})
    assert not filters["include_name"]("legacy", "table", {})
    assert filters["include_name"]("orders", "table", {})
    assert asked == ["legacy", "orders"]  # never asked about taskflow's
    assert not filters["include_object"](orders, "taskflow_audit", "table", True, None)
    assert filters["include_object"](orders, "orders", "table", True, None)
