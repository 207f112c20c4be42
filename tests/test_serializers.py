"""Serializers (pure logic); their use on the wire is in test_client/test_worker."""
import pytest

import pygear
from pygear.serializers import decode, encode


def test_json_is_the_default(gearmand):
    with pygear.Client() as c:
        assert c._settings.serializer is pygear.JSON


@pytest.mark.parametrize("value", [None, 0, 1.5, "text", [1, "a"], {"k": {"n": None}}])
def test_json_round_trip(value):
    assert decode(pygear.JSON, encode(pygear.JSON, value, "x")) == value


def test_json_empty_payload_reads_as_none():
    assert pygear.JSON.loads(b"") is None


def test_raw_bytes_pass_through_and_str_is_utf8():
    assert encode(pygear.RAW, b"\0\xff", "x") == b"\0\xff"
    assert encode(pygear.RAW, "é", "x") == "é".encode("utf-8")
    assert encode(pygear.RAW, bytearray(b"ab"), "x") == b"ab"
    assert decode(pygear.RAW, b"\0") == b"\0"
    with pytest.raises(TypeError):
        encode(pygear.RAW, 5, "x")


def test_pickle_round_trip():
    value = {"set": {1, 2}, "tuple": (1, 2)}
    assert decode(pygear.PICKLE, encode(pygear.PICKLE, value, "x")) == value


def test_failing_dumps_becomes_type_error():
    class Bad:
        def dumps(self, obj):
            raise RuntimeError("nope")

        def loads(self, data):
            return data
    with pytest.raises(TypeError, match="nope"):
        encode(Bad(), 1, "workload")


def test_dumps_must_return_str_or_bytes():
    class Odd:
        dumps = staticmethod(lambda obj: 42)
        loads = staticmethod(lambda data: data)
    with pytest.raises(TypeError):
        encode(Odd(), 1, "workload")
