"""pygear's own suite uses its pytest plugin (pygear.testing), so the plugin
is tested by use.  When pygear is pip-installed the pytest11 entry point has
loaded it already; from a bare checkout, load it here."""
import pytest

from pygear.testing import entry_point_installed, unique_name

from . import cli_jobs
from .clikit import cli_env

if not entry_point_installed():
    pytest_plugins = ["pygear.testing"]


@pytest.fixture
def client(gearman_client):
    """The plugin's Client, under the short name the tests use."""
    return gearman_client


@pytest.fixture
def worker(gearman_worker):
    return gearman_worker


@pytest.fixture
def env(gearmand):
    """For the command-line tests: see clikit.cli_env."""
    return cli_env(gearmand)


@pytest.fixture
def upper(gearman_worker_process):
    """A RAW function served by two worker processes (cli_jobs.upper)."""
    name = unique_name("upper")
    gearman_worker_process.start({name: cli_jobs.upper}, serializer="raw", count=2)
    return name


@pytest.fixture
def servers():
    """Start private gearmands on demand (a test may kill and restart
    them); all stopped at teardown."""
    from pygear._server import GearmandProcess
    started = []

    def start():
        g = GearmandProcess().start()
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@pytest.fixture
def workers():
    """Start tests.faultkit worker processes on demand; all stopped at teardown."""
    from .faultkit import WorkerProc
    procs = []

    def start(*args, **kwargs):
        p = WorkerProc(*args, **kwargs)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()
