"""A user's project under ``mypy --strict``: correct calls pass, wrong ones fail as marked.

``add_task()`` and ``enqueue()`` check the task's arguments against its
signature (``ParamSpec``) and return the task id as ``str``; the decorators
keep the function's type.  mypy runs in-process with a config of its own,
as in a user's project, and finds taskflow the way it finds any installed,
typed package (``py.typed``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

HERE = Path(__file__).parent
CORRECT = HERE / "user_app.py"
MISTAKES = HERE / "user_mistakes.py"
EXAMPLES = sorted((HERE.parent.parent / "examples").glob("*_app.py"))
EXPECTED = re.compile(r"#\s*expect:\s*([\w\-, ]+)$")
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w\-]+)\]$")


def _expected_errors(path: Path) -> set[tuple[int, str]]:
    expected = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = EXPECTED.search(line)
        if match:
            expected |= {(number, code.strip()) for code in match.group(1).split(",")}
    return expected


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    """Run mypy once over both files; errors per file name as (line, code)."""
    project = tmp_path_factory.mktemp("user_project")
    config = project / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\nshow_error_codes = True\n")
    stdout, stderr, _status = api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(project / ".mypy_cache"),
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            str(CORRECT),
            str(MISTAKES),
            *map(str, EXAMPLES),
        ]
    )
    assert not stderr, stderr
    checked = [CORRECT, MISTAKES, *EXAMPLES]
    errors: dict[str, set[tuple[int, str]]] = {path.name: set() for path in checked}
    for line in stdout.splitlines():
        if ": note: " in line:
            continue  # e.g. where the called function is defined
        match = ERROR.match(line)
        assert match, f"unexpected mypy output: {line}\n{stdout}"
        errors.setdefault(Path(match["file"]).name, set()).add((int(match["line"]), match["code"]))
    return errors


def test_correct_usage_passes_strict_mypy(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    assert mypy_errors[CORRECT.name] == set()


def test_wrong_arguments_are_type_errors(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    expected = _expected_errors(MISTAKES)
    assert len(expected) >= 7
    assert mypy_errors[MISTAKES.name] == expected


def test_the_examples_pass_strict_mypy(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    assert EXAMPLES
    assert {path.name: mypy_errors[path.name] for path in EXAMPLES} == {
        path.name: set() for path in EXAMPLES
    }


def test_no_other_file_has_errors(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    """taskflow itself, as a user's mypy reads it, has nothing to report."""
    assert set(mypy_errors) == {CORRECT.name, MISTAKES.name, *(path.name for path in EXAMPLES)}
