"""Visible to tools (issue 10): mypy passes on the package, and a user's
file written with the README's idioms (``except pygear.TIMEOUT:``...)
passes ``mypy --strict``."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
mypy = pytest.importorskip("mypy", reason="mypy is in the test extras (pip install -e '.[test]')")
pytestmark = pytest.mark.timeout(300)


def _mypy(*args):
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *args],
                          capture_output=True, text=True, timeout=280, cwd=ROOT)


def test_the_package_type_checks():
    out = _mypy("pygear")
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_users_file_passes_mypy_strict():
    out = _mypy("--strict", "--follow-imports=silent", "tests/typing/user_idioms.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_error_classes_are_visible_to_a_checker(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pygear\n\ntry:\n    pass\nexcept pygear.NO_SUCH_ERROR:\n    pass\n")
    out = _mypy("--strict", "--follow-imports=silent", str(bad))
    assert out.returncode != 0 and "NO_SUCH_ERROR" in out.stdout
