"""A user's file written with the README's idioms passes ``mypy --strict``
(issue 10, item 19): ``except pygear.TIMEOUT:`` and the other error classes
are real classes to a type checker, and the public API is typed.
"""
import os
import subprocess
import sys

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extra (CPython only)")
pytestmark = pytest.mark.timeout(300)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDIOMS = os.path.join("tests", "typing", "user_idioms.py")


def test_user_idioms_pass_mypy_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "mypy-cache"), IDIOMS],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=280)
    assert done.returncode == 0, done.stdout.decode("utf-8", "replace")
