"""Run tox, offering it every interpreter pyenv installed, then say loudly
which environments ran, passed, failed or were skipped for want of an
interpreter (tox.ini's skip_missing_interpreters keeps a missing one from
failing the run, and tox's own summary is easy to miss).

    python scripts/tox-report.py [tox run arguments ...]     (make tox)

pyenv's shims (python3.X on PATH) do not make tox find those versions: a
shim runs only the version pyenv has selected.  So the interpreters under
$PYENV_ROOT/versions (default ~/.pyenv) are passed to tox's --discover.
The exit code is tox's.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile


def pyenv_interpreters():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = []
    for pattern in ("versions/3.*/bin/python3", "versions/pypy3*/bin/pypy3"):
        found += sorted(glob.glob(os.path.join(root, pattern)))
    return [path for path in found if os.access(path, os.X_OK)]


def summary(report):
    """(name, state, detail) per environment tox was asked for."""
    rows = []
    for name, env in report.get("testenvs", {}).items():
        if name.startswith("."):   # .pkg: tox's packaging environment
            continue
        result = env.get("result", {})
        python = env.get("python", {})
        version = ".".join(str(p) for p in python.get("version_info", [])[:3])
        detail = "%s %s" % (python.get("implementation", ""), version) if version else ""
        if python.get("executable"):
            detail += " (%s)" % python["executable"]
        if not result:
            continue   # not asked for (tox run -e ...)
        if result.get("skipped"):
            rows.append((name, "SKIPPED", "no interpreter found"))
        elif result.get("success"):
            rows.append((name, "PASSED", detail))
        else:
            rows.append((name, "FAILED", "%s, exit %s" % (detail, result.get("exit_code"))))
    return rows


def main(argv):
    offered = pyenv_interpreters()
    print("tox-report: interpreters offered to tox besides PATH: %s"
          % (", ".join(offered) or "none (no pyenv versions)"), flush=True)
    with tempfile.TemporaryDirectory(prefix="pygear-tox-") as tmp:
        path = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "tox", "run", "--result-json", path]
        if offered:
            cmd += ["--discover"] + offered
        code = subprocess.call(cmd + argv)
        try:
            with open(path) as f:
                report = json.load(f)
        except (OSError, ValueError):
            print("tox-report: tox wrote no result (exit %d)" % code)
            return code or 1
    rows = summary(report)
    width = max([len(name) for name, _, _ in rows] + [4])
    bar = "=" * 72
    print("\n%s\ntox environments: what ran\n%s" % (bar, bar))
    for name, state, detail in rows:
        print("  %-*s  %-7s  %s" % (width, name, state, detail))
    counts = {state: sum(1 for _, s, _ in rows if s == state)
              for state in ("PASSED", "FAILED", "SKIPPED")}
    print("%s\n%d passed, %d failed, %d SKIPPED%s\n%s" % (
        bar, counts["PASSED"], counts["FAILED"], counts["SKIPPED"],
        " (not tested on: %s)" % ", ".join(n for n, s, _ in rows if s == "SKIPPED")
        if counts["SKIPPED"] else "", bar))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
