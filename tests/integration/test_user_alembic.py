"""The application's own Alembic on a database that also holds taskflow's tables.

A scratch application project is written to ``tmp_path``: its ``alembic.ini``,
an async ``env.py`` as Alembic's ``async`` template makes it, and a models
module with one table of its own.  Two set-ups are supported:

* (a) taskflow's lineage runs apart (``taskflow db upgrade``, version table
  ``taskflow_alembic_version``), and the app's autogenerate is filtered with
  ``taskflow.alembic``;
* (b) taskflow's revisions join the app's history as the branch ``taskflow``
  (``version_locations``), brought up with ``alembic upgrade heads``.

Without the filter the app's autogenerate proposes dropping every taskflow
table; each test checks that first, so it fails if the filter stops mattering.
"""

from __future__ import annotations

import ast
import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from taskflow import TaskManager, cli
from taskflow.alembic import BRANCH_LABEL, versions_path
from taskflow.db import migrate
from taskflow.db.engine import create_engine_for
from taskflow.db.revision import EXPECTED_REVISION, VERSION_TABLE
from taskflow.db.tables import metadata
from taskflow.settings import resolve_database_url

TASKFLOW_TABLES = {table.name for table in metadata.sorted_tables}
APP_TABLE = "app_users"
LEGACY_TABLE = "legacy_reports"  # in the database, not in the app's models

MODELS = f"""
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
users = Table(
    "{APP_TABLE}",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(200), nullable=False, index=True),
)
"""

ENV = """
import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import async_engine_from_config

from app_models import metadata
{imports}

config = context.config


def do_run_migrations(connection):
    context.configure(connection=connection, target_metadata=metadata{options})
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations():
    engine = async_engine_from_config(
        config.get_section(config.config_ini_section, {{}}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


asyncio.run(run_async_migrations())
"""

FILTERS = {
    "none": ("", ""),
    "hooks": (
        "from taskflow.alembic import include_name, include_object",
        ", include_name=include_name, include_object=include_object",
    ),
    # The app keeps a filter of its own (a legacy table it does not model).
    "composed": (
        "from taskflow.alembic import exclude_taskflow\n\n"
        "def skip_legacy(name, type_, parent_names):\n"
        f"    return not (type_ == 'table' and name == '{LEGACY_TABLE}')\n",
        ", **exclude_taskflow(include_name=skip_legacy)",
    ),
}

INI = """
[alembic]
script_location = %(here)s/alembic
prepend_sys_path = %(here)s
path_separator = newline
sqlalchemy.url = {url}
{version_locations}
"""


def async_url(url: str) -> str:
    return resolve_database_url(url).url.render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def forget_app_modules() -> Iterator[None]:
    """Each project's ``app_models`` is its own: drop the imported one and the path after."""
    path = list(sys.path)
    yield
    sys.modules.pop("app_models", None)
    sys.path[:] = path


def make_project(
    root: Path, url: str, *, filters: str, joined: Literal["", "in alembic.ini", "in code"] = ""
) -> Config:
    """Write an application's Alembic project under ``root``; returns its ``Config``."""
    (root / "alembic" / "versions").mkdir(parents=True)
    (root / "app_models.py").write_text(MODELS)
    imports, options = FILTERS[filters]
    (root / "alembic" / "env.py").write_text(ENV.format(imports=imports, options=options))
    (root / "alembic" / "script.py.mako").write_text(
        Path(migrate.script_location(), "script.py.mako").read_text()
    )
    # Set-up (b): the app's versions, then taskflow's.  The guide's package
    # resource (taskflow._migrations:versions) exists only in an installed
    # wheel, which .ci/run checks; a checkout names the directory itself.
    locations = (
        f"version_locations =\n    %(here)s/alembic/versions\n    {versions_path()}"
        if joined == "in alembic.ini"
        else ""
    )
    (root / "alembic.ini").write_text(
        INI.format(url=async_url(url).replace("%", "%%"), version_locations=locations)
    )
    config = Config(str(root / "alembic.ini"))
    if joined == "in code":  # as the guide shows for a Config built in code
        config.set_main_option("path_separator", "os")
        own = str(root / "alembic" / "versions")
        config.set_main_option("version_locations", os.pathsep.join([own, versions_path()]))
    return config


def upgrade_ops(script_path: str) -> set[tuple[str, str]]:
    """The ``op.*`` calls of a revision's ``upgrade()``, each with the table it touches."""
    tree = ast.parse(Path(script_path).read_text())
    upgrade = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    found: set[tuple[str, str]] = set()
    for node in ast.walk(upgrade):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "op"
            and node.func.attr != "f"  # op.f(name): a naming helper
        ):
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        if "table_name" in keywords:
            table = keywords["table_name"]
        elif node.func.attr == "create_index":
            table = node.args[1]
        else:
            table = node.args[0]
        assert isinstance(table, ast.Constant), ast.dump(node)
        found.add((node.func.attr, str(table.value)))
    return found


def autogenerate(config: Config, **options: str) -> set[tuple[str, str]]:
    script = command.revision(config, message="app", autogenerate=True, **options)
    assert script is not None and not isinstance(script, list)
    return upgrade_ops(script.path)


async def _tables(url: str) -> set[str]:
    engine = create_engine_for(resolve_database_url(url))
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _run_sql(url: str, *statements: str) -> list[str]:
    """Run ``statements``; returns the first column of the last one's rows (if any)."""
    engine = create_engine_for(resolve_database_url(url))
    rows: list[str] = []
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
                rows = [str(row[0]) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()
    return rows


async def _taskflow_upgrade(url: str) -> None:
    engine = create_engine_for(resolve_database_url(url))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def tables(url: str) -> set[str]:
    return asyncio.run(_tables(url))


def run_sql(url: str, *statements: str) -> list[str]:
    return asyncio.run(_run_sql(url, *statements))


def drops_everything_of_taskflow(ops: set[tuple[str, str]], *, version_table: bool) -> bool:
    dropped = {table for op, table in ops if op == "drop_table"}
    expected = TASKFLOW_TABLES | ({VERSION_TABLE} if version_table else set())
    return expected <= dropped and any(
        op == "drop_index" and table.startswith("taskflow_") for op, table in ops
    )


# --- (a) taskflow's lineage apart, the app's autogenerate filtered ---


def test_the_apps_autogenerate_leaves_taskflow_alone(db_url: str, tmp_path: Path) -> None:
    asyncio.run(_taskflow_upgrade(db_url))
    run_sql(db_url, f"CREATE TABLE {LEGACY_TABLE} (id INTEGER PRIMARY KEY)")

    unfiltered = autogenerate(make_project(tmp_path / "none", db_url, filters="none"))
    assert drops_everything_of_taskflow(unfiltered, version_table=True), sorted(unfiltered)

    hooks = autogenerate(make_project(tmp_path / "hooks", db_url, filters="hooks"))
    assert {table for _op, table in hooks} == {APP_TABLE, LEGACY_TABLE}, sorted(hooks)
    assert ("create_table", APP_TABLE) in hooks and ("drop_table", LEGACY_TABLE) in hooks

    composed = autogenerate(make_project(tmp_path / "composed", db_url, filters="composed"))
    assert composed == {("create_table", APP_TABLE), ("create_index", APP_TABLE)}, sorted(composed)


def test_downgrade_base_leaves_the_empty_version_table_and_the_apps_tables(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_project(tmp_path / "app", db_url, filters="hooks")
    assert cli.main(["db", "upgrade", "--url", db_url]) == 0
    autogenerate(config)
    command.upgrade(config, "head")
    assert tables(db_url) == TASKFLOW_TABLES | {VERSION_TABLE, APP_TABLE, "alembic_version"}

    assert cli.main(["db", "downgrade", "base", "--url", db_url]) == 0
    assert f"downgraded from {EXPECTED_REVISION} to base" in capsys.readouterr().out
    # Alembic empties its version table and keeps it; the app's tables are untouched.
    assert tables(db_url) == {VERSION_TABLE, APP_TABLE, "alembic_version"}
    assert run_sql(db_url, f"SELECT version_num FROM {VERSION_TABLE}") == []
    assert cli.main(["db", "upgrade", "--url", db_url]) == 0
    assert tables(db_url) >= TASKFLOW_TABLES


# --- (b) taskflow's revisions as a branch of the app's own history ---


def test_taskflow_as_a_branch_of_the_apps_history(db_url: str, tmp_path: Path) -> None:
    config = make_project(tmp_path / "app", db_url, filters="hooks", joined="in alembic.ini")
    # The directory in alembic.ini is taskflow's versions.
    found = ScriptDirectory.from_config(config).get_revision(EXPECTED_REVISION)
    assert found is not None
    assert Path(found.path).parent.resolve() == Path(versions_path()).resolve()
    command.upgrade(config, "heads")  # taskflow's branch: the app has no revision yet
    assert tables(db_url) >= TASKFLOW_TABLES
    assert VERSION_TABLE not in tables(db_url)  # one history, the app's version table

    # Without the filter the app's first revision would drop taskflow's tables.
    unfiltered = make_project(tmp_path / "unfiltered", db_url, filters="none", joined="in code")
    ops = autogenerate(
        unfiltered,
        head="base",
        branch_label="app",
        version_path=str(tmp_path / "unfiltered" / "alembic" / "versions"),
    )
    assert drops_everything_of_taskflow(ops, version_table=False), sorted(ops)

    app_revision = command.revision(
        config,
        message="app users",
        autogenerate=True,
        head="base",
        branch_label="app",
        version_path=str(tmp_path / "app" / "alembic" / "versions"),
    )
    assert app_revision is not None and not isinstance(app_revision, list)
    assert upgrade_ops(app_revision.path) == {
        ("create_table", APP_TABLE),
        ("create_index", APP_TABLE),
    }
    command.upgrade(config, "heads")

    assert tables(db_url) == TASKFLOW_TABLES | {APP_TABLE, "alembic_version"}
    heads = set(run_sql(db_url, "SELECT version_num FROM alembic_version"))
    assert heads == {EXPECTED_REVISION, app_revision.revision}
    # The branch label reaches taskflow's lineage alone.
    command.downgrade(config, f"{BRANCH_LABEL}@base")
    assert tables(db_url) == {APP_TABLE, "alembic_version"}
    assert run_sql(db_url, "SELECT version_num FROM alembic_version") == [app_revision.revision]
    command.upgrade(config, f"{BRANCH_LABEL}@head")
    assert set(run_sql(db_url, "SELECT version_num FROM alembic_version")) == heads

    # The schema is taskflow's own, and a manager starts on it as it is.
    async def start_and_check() -> list[str]:
        manager = TaskManager(database_url=db_url, create_tables=False)
        await manager.startup()
        await manager.shutdown()
        engine = create_engine_for(resolve_database_url(db_url))
        try:
            return await migrate.check(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(start_and_check()) == []
