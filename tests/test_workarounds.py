"""The workarounds table (issue 10): one table, asked by the code,
documented in the README as it is in the code."""
import os
import subprocess
import sys

from pygear import _workarounds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_entry_says_what_why_where_and_which_versions():
    assert len(_workarounds.TABLE) >= 15
    for name, w in _workarounds.TABLE.items():
        assert w.name == name and w.what and w.evidence and w.remedy and w.where
        assert isinstance(w.applies(), bool)


def test_each_entry_is_named_where_the_code_deals_with_it():
    sources = ""
    for folder, _, files in os.walk(os.path.join(ROOT, "pygear")):
        for f in files:
            if f.endswith(".py") and f != "_workarounds.py":
                with open(os.path.join(folder, f)) as fh:
                    sources += fh.read()
    missing = [name for name in _workarounds.TABLE if name not in sources]
    assert not missing, "not referred to by the code: %s" % missing


def test_the_readme_table_is_current():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_workarounds_doc.py"),
                          "--check"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
