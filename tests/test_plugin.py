"""The pytest plugin (pygear.testing) as a user's own suite sees it: small
external test files run with pytester."""
from __future__ import annotations

import os

import pytest

import pygear.testing

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Installed, the pytest11 entry point loads the plugin by itself (loading it
# again with -p would register it twice); from a checkout, name it.
PLUGIN_ARGS = [] if pygear.testing.entry_point_installed() else ["-p", "pygear.testing"]

THREE_LINES = """
def test_gearmand_answers(gearmand):
    import pygear
    assert pygear.Admin(gearmand.host, gearmand.port).version()
"""

USER_SUITE = """
import pygear

def reverse(job):
    return job.workload()[::-1]

def test_fixture_fields(gearmand):
    assert gearmand.host and gearmand.port > 0
    assert gearmand.address.endswith(":%d" % gearmand.port)

def test_worker_process(gearmand, gearman_client, gearman_worker_process):
    gearman_worker_process.start({"user_reverse": reverse})
    assert gearman_client.do("user_reverse", "hello") == "olleh"

def test_client_and_worker(gearman_client, gearman_worker):
    gearman_worker.add_function("user_echo", 0, lambda job: job.workload())
    gearman_client.do_background("user_echo", {"x": 1})
    gearman_worker.work()
"""


@pytest.fixture
def no_gearman_server(monkeypatch):
    monkeypatch.delenv("GEARMAN_SERVER", raising=False)


def test_three_line_file_with_a_private_gearmand(pytester, no_gearman_server):
    pytester.makepyfile(THREE_LINES)
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=1)


def test_user_suite_uses_every_fixture(pytester, gearmand, monkeypatch):
    # Against the outer suite's server, named as a user would name theirs.
    monkeypatch.setenv("GEARMAN_SERVER", gearmand.address)
    pytester.makepyfile(USER_SUITE)
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.assert_outcomes(passed=3)


def test_in_a_fresh_python_process(pytester, no_gearman_server, monkeypatch):
    """As a user runs it: a new interpreter, the plugin found by entry point
    or by -p."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    pytester.makepyfile(THREE_LINES)
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, timeout=100)
    result.assert_outcomes(passed=1)


def test_skips_with_a_reason_when_there_is_no_gearmand(pytester, no_gearman_server,
                                                       monkeypatch):
    monkeypatch.setattr(pygear.testing, "find_gearmand", lambda: None)
    pytester.makepyfile(THREE_LINES)
    result = pytester.runpytest(*PLUGIN_ARGS, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no gearmand*GEARMAN_SERVER*"])


def test_report_header_names_the_library(pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*PLUGIN_ARGS)
    result.stdout.fnmatch_lines(["pygear: *gearmand: *"])
