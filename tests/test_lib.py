"""Finding and loading libgearman."""
import os
import subprocess
import sys

import pytest

import pygear
from pygear import _lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(code, **env):
    full_env = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=60)


def test_version_of_the_loaded_library():
    assert pygear.libgearman_version().startswith("1.")
    assert _lib.dll_file


def test_import_works_without_libgearman_and_client_raises():
    code = (
        "import pygear\n"
        "a = pygear.Admin('127.0.0.1', 1)\n"
        "for cls in (pygear.Client, pygear.Worker):\n"
        "    try:\n"
        "        cls()\n"
        "    except pygear.LibraryNotFound as e:\n"
        "        assert isinstance(e, OSError) and isinstance(e, pygear.GearmanError)\n"
        "        print('MISSING', e)\n"
    )
    out = run_child(code, PYGEAR_LIBGEARMAN="/nonexistent/libgearman.so")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("MISSING") == 2
    assert "/nonexistent/libgearman.so" in out.stdout
    assert "apt-get install libgearman8" in out.stdout
    assert "brew install gearman" in out.stdout


def test_forced_library_is_the_only_one_tried():
    # A real library that is not libgearman: no silent fall-back to the system copy.
    out = run_child("import pygear\n"
                    "try:\n    pygear.Client()\nexcept pygear.LibraryNotFound as e:\n    print('NOT', e)\n",
                    PYGEAR_LIBGEARMAN="libz.so.1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("NOT")


def test_forced_library_by_path_loads():
    out = run_child("import pygear; print(pygear.libgearman_version())",
                    PYGEAR_LIBGEARMAN=_lib.dll._name)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == pygear.libgearman_version()


def test_missing_optional_symbol_raises_not_supported():
    # gearman_worker_set_ssl is declared in 1.1.20's worker.h but not exported.
    if hasattr(_lib.dll, "gearman_worker_set_ssl"):
        pytest.skip("this libgearman exports gearman_worker_set_ssl")
    with pytest.raises(pygear.NotSupported, match="requires libgearman >= "):
        _lib.gearman_worker_set_ssl(None, False, None, None, None)


def test_every_declared_prototype_is_bound():
    for name in _lib.SYMBOLS:
        fn = getattr(_lib, name)
        assert callable(fn)
