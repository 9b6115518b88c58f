"""Build hook: the wheel ships the top-level ``migrations/`` directory as ``taskflow/_migrations``.

Everything else is declared in ``pyproject.toml``.  The scripts stay where
``alembic.ini`` points in a checkout, and are copied into the package at
build time, rather than mapped with a ``package-dir`` entry
(``"taskflow._migrations" = "migrations"``): with such a remap, setuptools
makes an editable install (``pip install -e .``) an import hook, which type
checkers cannot follow, so mypy would not find taskflow in that environment.
Without it, the editable install is a plain path entry (a ``.pth`` file).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SHIPPED = ("*.py", "script.py.mako")


class BuildPyWithMigrations(build_py):
    """``build_py``, then ``migrations/`` copied to ``taskflow/_migrations`` in the build."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install finds the checkout's migrations/ in place
        target = Path(self.build_lib, "taskflow", "_migrations")
        for pattern in SHIPPED:
            for source in sorted(MIGRATIONS.rglob(pattern)):
                if "__pycache__" in source.parts:
                    continue
                destination = target / source.relative_to(MIGRATIONS)
                self.mkpath(str(destination.parent))
                self.copy_file(str(source), str(destination), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithMigrations})
