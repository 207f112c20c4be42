"""The command line over several gearmands (issue 11, item 5): `pygear
admin` shows every server (a SERVER column; a "server" key with --json),
and `pygear submit --status HANDLE` asks the server --server names, and
says so when several of the given servers know the handle."""
import json
import re
import types

import pytest

import pygear
from pygear.testing import unique_name

from .clikit import cli_env, pygear_cli
from .faultkit import HeldJob, dead_port, queued_on

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def cluster_env(gearmand_cluster):
    """The cluster's servers as $GEARMAN_SERVERS (what `pygear` uses without --server)."""
    return cli_env(types.SimpleNamespace(address=",".join(gearmand_cluster.addresses)))


def servers_args(addresses):
    return [arg for a in addresses for arg in ("--server", a)]


def spread_jobs(addresses, fn, count):
    """``count`` background jobs over the servers; how many each got."""
    with pygear.Client(",".join(addresses)) as c:
        c.set_timeout(10000)
        return [c.do_background(fn, i)["server"] for i in range(count)]


def test_admin_status_shows_every_server(gearmand_cluster, cluster_env):
    addresses = gearmand_cluster.addresses
    fn = unique_name("cli_status")
    spread_jobs(addresses, fn, 9)
    for args in (servers_args(addresses), []):          # --server x3, or $GEARMAN_SERVERS
        out = pygear_cli(cluster_env, "admin", *args, "status")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.decode().splitlines()
        assert lines[0].split() == ["SERVER", "FUNCTION", "TOTAL", "RUNNING", "WORKERS"]
        rows = [line.split() for line in lines[1:] if fn in line]
        assert sorted(r[0] for r in rows) == sorted(addresses)
        assert all(r[1] == fn and r[2] == "3" for r in rows)
    out = pygear_cli(cluster_env, "admin", "status", "--json")
    rows = [r for r in json.loads(out.stdout) if r["function"] == fn]
    assert sorted(r["server"] for r in rows) == sorted(addresses)
    assert {r["server"]: r["total"] for r in rows} == {a: queued_on(a, fn) for a in addresses}


def test_admin_jobs_tell_equal_handles_apart_by_server(gearmand_cluster, cluster_env):
    addresses = gearmand_cluster.addresses
    placed = spread_jobs(addresses, unique_name("cli_jobs"), 3)
    assert sorted(placed) == sorted(addresses)
    out = pygear_cli(cluster_env, "admin", "jobs", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    # three fresh gearmands: each holds H:<host>:1, told apart by the server key
    firsts = [r for r in rows if r["handle"].endswith(":1")]
    assert sorted(r["server"] for r in firsts) == sorted(addresses)
    out = pygear_cli(cluster_env, "admin", "jobs")
    assert out.stdout.decode().splitlines()[0].split()[0] == "SERVER"
    out = pygear_cli(cluster_env, "admin", "version", "--json")
    assert set(json.loads(out.stdout)) == set(addresses)


def test_admin_with_one_of_several_servers_down_exits_6(gearmand_cluster, cluster_env):
    down = "127.0.0.1:%d" % dead_port()
    out = pygear_cli(cluster_env, "admin", *servers_args(gearmand_cluster.addresses[:1] + [down]),
                     "status")
    assert out.returncode == 6
    assert down in out.stderr.decode()


@pytest.mark.gearmand_cluster(count=2)
def test_submit_status_asks_the_server_given(gearmand_cluster, cluster_env):
    """Both fresh servers hold H:<host>:1: queued on one, running at 3/7 on the other."""
    a, b = gearmand_cluster.addresses
    fn = unique_name("cli_st")
    handles = {}
    for address in (a, b):
        with pygear.Client(address) as c:
            c.set_timeout(5000)
            handles[address] = c.do_background(fn, address)["job_handle"]
    handle = handles[a]
    assert handles[b] == handle
    held = HeldJob(b, fn, 3, 7)
    try:
        out = pygear_cli(cluster_env, "submit", "--status", handle, "--server", a)
        assert out.returncode == 0, out.stderr
        assert re.search(r"known\s+yes", out.stdout.decode())
        assert re.search(r"running\s+no", out.stdout.decode())
        out = pygear_cli(cluster_env, "submit", "--status", handle, "--server", b, "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"handle": handle, "is_known": True,
                                          "is_running": True, "numerator": 3,
                                          "denominator": 7}
        # both servers given (here through $GEARMAN_SERVERS): the handle is ambiguous
        for args in ([], servers_args([a, b])):
            out = pygear_cli(cluster_env, "submit", "--status", handle, *args)
            assert out.returncode == 1
            err = out.stderr.decode()
            assert a in err and b in err and "--server" in err, err
            assert "pass server=" not in err
        # a handle only one of them holds needs no --server
        with pygear.Client(a) as c:
            c.set_timeout(5000)
            only_a = c.do_background(fn, "second")["job_handle"]
        out = pygear_cli(cluster_env, "submit", "--status", only_a, "--json")
        assert json.loads(out.stdout)["is_known"] is True
    finally:
        held.close()


@pytest.mark.gearmand_cluster(count=2)
def test_submit_status_says_which_server_it_could_not_reach(gearmand_cluster, cluster_env):
    live = gearmand_cluster.addresses[0]
    down = "127.0.0.1:%d" % dead_port()
    with pygear.Client(live) as c:
        c.set_timeout(5000)
        handle = c.do_background(unique_name("cli_st_down"), 1)["job_handle"]
    out = pygear_cli(cluster_env, "submit", "--status", handle, "--json",
                     *servers_args([down, live]))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["is_known"] is True
    assert "could not connect to %s" % down in out.stderr.decode()


def test_submit_background_over_several_servers_says_where(gearmand_cluster, cluster_env):
    fn = unique_name("cli_bg")
    out = pygear_cli(cluster_env, "submit", "--background", fn, "data")
    assert out.returncode == 0, out.stderr
    handle = out.stdout.decode().strip()
    err = out.stderr.decode()
    where = re.search(r"queued on (\S+) ", err).group(1)
    assert where in gearmand_cluster.addresses
    assert "--status %s --server %s" % (handle, where) in err
    assert queued_on(where, fn) == 1
    out = pygear_cli(cluster_env, "submit", "--status", handle, "--server", where, "--json")
    assert json.loads(out.stdout)["is_known"] is True
