"""Refuse to import from a ``taskflow/`` directory that OpenStack's TaskFlow has written into.

taskflow-sql and OpenStack's TaskFlow (PyPI name ``taskflow``) are both
imported as ``taskflow``.  pip installs either into the same
``site-packages/taskflow/`` directory without a word, each overwriting the
files the other also ships (``__init__.py``, ``exceptions.py``), so a mix of
the two is left and neither works as written.  When this ``__init__.py`` is
ours, that mix is recognised by OpenStack's own files beside it, and the
import fails at once with what to do instead of an error deep inside some
later import.  A few ``os.stat`` calls: cheap enough for every import.

Only builtins are used here, and only ``ImportError`` is raised: in a mixed
directory no other module of the package can be trusted to be ours.
"""

from __future__ import annotations

import os

# Files of OpenStack's TaskFlow that taskflow-sql never ships.
FOREIGN_FILES = ("flow.py", "atom.py", os.path.join("engines", "__init__.py"))
OTHER_DISTRIBUTION = "taskflow"


def foreign_files(package_dir: str) -> list[str]:
    """The files of OpenStack's TaskFlow present in ``package_dir``."""
    return [name for name in FOREIGN_FILES if os.path.exists(os.path.join(package_dir, name))]


def clash_message(package_dir: str, found: list[str]) -> str:
    """What happened, and how to get a working install back."""
    other = "OpenStack's TaskFlow"
    try:
        from importlib.metadata import version

        other += f" {version(OTHER_DISTRIBUTION)}"
    except Exception:  # its metadata may be gone while its files remain
        pass
    return (
        f"{package_dir} holds files of two different packages: taskflow-sql and {other} "
        f"(PyPI name 'taskflow'; its {', '.join(found)} are here). Both are imported as "
        "'taskflow', and installing one overwrites files of the other, so neither works. "
        "Keep them in separate virtual environments. To repair this one: "
        "pip uninstall -y taskflow taskflow-sql && pip install taskflow-sql"
    )


def check_install(package_dir: str) -> None:
    """Raise ``ImportError`` when ``package_dir`` mixes taskflow-sql with OpenStack's TaskFlow."""
    found = foreign_files(package_dir)
    if found:
        raise ImportError(clash_message(package_dir, found), name="taskflow")


check_install(os.path.dirname(os.path.abspath(__file__)))
