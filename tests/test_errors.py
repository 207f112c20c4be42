"""The exception hierarchy (pure logic, no server needed)."""
import pickle

import pytest

import pygear
from pygear.errors import RETURN_NAMES, error_for


def test_one_class_per_return_code_under_the_seed_names():
    for code, name in enumerate(RETURN_NAMES):
        cls = getattr(pygear, name)
        assert issubclass(cls, pygear.GearmanError)
        assert cls.code == code
        assert pygear.describe_returncode(code) == name
    for name in ("TIMEOUT", "NO_SERVERS", "COULD_NOT_CONNECT", "GETADDRINFO",
                 "LOST_CONNECTION", "WORK_FAIL", "WORK_EXCEPTION",
                 "NO_REGISTERED_FUNCTIONS", "INVALID_ARGUMENT", "UNKNOWN_STATE"):
        assert issubclass(getattr(pygear, name), pygear.GearmanError)


def test_builtin_bases():
    assert issubclass(pygear.TIMEOUT, TimeoutError)
    assert issubclass(pygear.COULD_NOT_CONNECT, ConnectionError)
    assert issubclass(pygear.LOST_CONNECTION, ConnectionError)
    assert issubclass(pygear.LibraryNotFound, OSError)
    assert issubclass(pygear.LibraryNotFound, pygear.GearmanError)
    assert not issubclass(pygear.WORK_FAIL, ConnectionError)


def test_error_is_pygears_own_not_work_error():
    assert pygear.ERROR is not pygear.WORK_ERROR
    assert issubclass(pygear.ERROR, pygear.GearmanError)
    assert pygear.WORK_ERROR.name == "WORK_ERROR"


def test_error_carries_code_name_and_message():
    exc = error_for(47, "waiting failed: timeout reached")
    assert isinstance(exc, pygear.TIMEOUT)
    assert exc.code == 47 and exc.name == "TIMEOUT"
    assert "timeout reached" in str(exc)
    with pytest.raises(TimeoutError):
        raise exc


def test_errors_pickle_round_trip():
    exc = error_for(pygear.WORK_EXCEPTION.code, "boom", {"type": "ValueError"})
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is pygear.WORK_EXCEPTION
    assert again.payload == {"type": "ValueError"}
    assert str(again) == "boom"


def test_describe_unknown_code():
    assert pygear.describe_returncode(999).startswith("UNKNOWN")
