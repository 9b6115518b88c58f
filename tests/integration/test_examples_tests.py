"""``examples/test_basic_app.py``, the testing guide's example, passes as a user would run it.

In a pytest process of its own: the example's conftest chooses the
database before the app module is imported, and its module-level app and
manager must not meet this suite's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Starlette 1.x's TestClient prefers the httpx2 package and warns when it finds httpx.
TESTCLIENT_WARNING = "ignore:Using `httpx` with `starlette.testclient`"


def test_the_example_tests_pass(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TASKFLOW_DATABASE_URL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "examples" / "test_basic_app.py"),
            "-p",
            "no:cacheprovider",
            "-q",
            "-W",
            TESTCLIENT_WARNING,
        ],
        cwd=tmp_path,  # a tasks.db made by mistake would land here, not in the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert list(tmp_path.iterdir()) == []
