#!/usr/bin/env python3
"""Write the workarounds table of README.md from pygear/_workarounds.py
(between the ``<!-- workarounds -->`` markers).  ``--check`` exits 1 when
the README is out of date (tests/test_workarounds.py runs it)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pygear import _workarounds  # noqa: E402

README = os.path.join(ROOT, "README.md")
START = "<!-- workarounds: generated, do not edit -->"
END = "<!-- /workarounds -->"


def table() -> str:
    rows = ["| what goes wrong | evidence | what pygear does | where | applies to |",
            "|---|---|---|---|---|"]
    for w in _workarounds.TABLE.values():
        versions = ("gearmand (any version)" if w.server_side else
                    "libgearman up to %s%s" % (_workarounds.NEWEST_CHECKED,
                                               ", fixed in %s" % w.fixed_in if w.fixed_in else ""))
        rows.append("| **%s**: %s | %s | %s | `%s` | %s |" % (
            w.name, w.what.replace("|", "\\|"), w.evidence, w.remedy, w.where, versions))
    return "\n".join(rows)


def render(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + START + "\n" + table() + "\n" + END + tail


def main() -> int:
    with open(README) as f:
        text = f.read()
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md's workarounds table is out of date: run scripts/gen_workarounds_doc.py")
            return 1
        return 0
    with open(README, "w") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
