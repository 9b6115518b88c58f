"""Importing taskflow from a directory OpenStack's TaskFlow has written into fails loudly.

The mixed install is built for real: a copy of this package in ``tmp_path``
with OpenStack's files beside it and its dist metadata, imported by a fresh
interpreter that sees only that copy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import taskflow
from taskflow.install_check import FOREIGN_FILES, foreign_files

PACKAGE = Path(taskflow.__file__).parent


def _site(tmp_path: Path) -> Path:
    """A site directory holding a copy of taskflow-sql's package, without its migrations."""
    site = tmp_path / "site"
    shutil.copytree(
        PACKAGE,
        site / "taskflow",
        ignore=shutil.ignore_patterns("__pycache__", "_migrations"),
    )
    return site


def _overwrite_with_openstack(site: Path) -> None:
    package = site / "taskflow"
    (package / "engines").mkdir()
    (package / "engines" / "__init__.py").write_text("")
    (package / "flow.py").write_text("class Flow: ...\n")
    (package / "atom.py").write_text("class Atom: ...\n")
    info = site / "taskflow-5.9.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: taskflow\nVersion: 5.9.1\n")


def _import(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(site)!r}); import taskflow",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_from_a_mixed_directory_explains_the_clash(tmp_path: Path) -> None:
    site = _site(tmp_path)
    _overwrite_with_openstack(site)
    result = _import(site)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: ")
    assert "taskflow-sql and OpenStack's TaskFlow 5.9.1" in last_line
    assert "pip uninstall -y taskflow taskflow-sql && pip install taskflow-sql" in last_line


def test_a_clean_copy_imports(tmp_path: Path) -> None:
    result = _import(_site(tmp_path))
    assert result.returncode == 0, result.stderr


def test_foreign_files_are_named(tmp_path: Path) -> None:
    assert foreign_files(str(PACKAGE)) == []
    (tmp_path / "flow.py").write_text("")
    assert foreign_files(str(tmp_path)) == ["flow.py"]
    assert "flow.py" in FOREIGN_FILES
