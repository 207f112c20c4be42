"""pygear's own suite uses its pytest plugin (pygear.testing), so the plugin
is tested by use.  When pygear is pip-installed the pytest11 entry point has
loaded it already; from a bare checkout, load it here."""
import pytest

from pygear.testing import entry_point_installed

if not entry_point_installed():
    pytest_plugins = ["pygear.testing"]


@pytest.fixture
def client(gearman_client):
    """The plugin's Client, under the short name the tests use."""
    return gearman_client


@pytest.fixture
def worker(gearman_worker):
    return gearman_worker
