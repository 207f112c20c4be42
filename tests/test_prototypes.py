"""Every prototype in pygear/_lib.py against libgearman's own headers."""
import ctypes
import glob
import os
import re

import pytest

from pygear import _lib

HEADERS = "/usr/include/libgearman-1.0"


def header_prototypes():
    text = ""
    for path in sorted(glob.glob(os.path.join(HEADERS, "*.h"))):
        with open(path) as f:
            text += f.read() + "\n"
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    protos = {}
    for match in re.finditer(r"\b(gearman_\w+)\s*\(([^;{}()]*(?:\([^()]*\)[^;{}()]*)*)\)\s*;", text):
        name, params = match.group(1), match.group(2).strip()
        if params in ("", "void"):
            count = 0
        else:
            count = params.count(",") + 1
        protos.setdefault(name, count)
    return protos


@pytest.mark.skipif(not os.path.isdir(HEADERS),
                    reason="libgearman headers not installed (apt-get install libgearman-dev)")
def test_prototypes_match_headers():
    protos = header_prototypes()
    checked = 0
    for name, restype, argtypes, since in _lib._PROTOTYPES:
        assert name in protos, "%s is not declared in %s" % (name, HEADERS)
        assert len(argtypes) == protos[name], (
            "%s takes %d parameters in the headers, %d in _lib.py"
            % (name, protos[name], len(argtypes)))
        checked += 1
    assert checked > 100


def test_struct_layouts_match_headers():
    # status.h / interface/status.h: enum + {rc, bool, bool, u32, u32, u32}
    assert ctypes.sizeof(_lib.gearman_status_t) == 24
    # argument.h: two gearman_string_t {const char*, size_t}
    assert ctypes.sizeof(_lib.gearman_argument_t) == 4 * ctypes.sizeof(ctypes.c_void_p)
    # task_attr.h: kind, priority, union { time_t }
    assert ctypes.sizeof(_lib.gearman_task_attr_t) == 16
