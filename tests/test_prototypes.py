"""Every prototype in pygear/_lib.py against libgearman's own headers:
names, parameter count, and each parameter's and the result's type; the
return-code table against gearman_strerror; _lib.pyi against the table."""
import ctypes
import glob
import os
import re
import subprocess
import sys

import pytest

from pygear import _lib, errors

HEADERS = "/usr/include/libgearman-1.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_headers = pytest.mark.skipif(
    not os.path.isdir(HEADERS),
    reason="libgearman headers not installed (apt-get install libgearman-dev)")

# C type (as the headers spell it, const and spacing dropped) -> the ctypes
# declaration pygear must use for it.
C_TO_CTYPES = {
    "gearman_client_st*": _lib.client_p,
    "gearman_worker_st*": _lib.worker_p,
    "gearman_job_st*": _lib.job_p,
    "gearman_task_st*": _lib.task_p,
    "gearman_return_t": ctypes.c_int,
    "gearman_return_t*": ctypes.POINTER(ctypes.c_int),
    "char*": ctypes.c_char_p,
    "gearman_job_handle_t": ctypes.c_char_p,      # char[64], passed as a pointer
    "size_t": ctypes.c_size_t,
    "in_port_t": ctypes.c_uint16,
    "int": ctypes.c_int,
    "uint32_t": ctypes.c_uint32,
    "bool": ctypes.c_bool,
    "void*": ctypes.c_void_p,
    "gearman_verbose_t": ctypes.c_int,
    "gearman_client_options_t": ctypes.c_int,
    "gearman_worker_options_t": ctypes.c_int,
    "gearman_log_fn*": _lib.log_fn,
    "gearman_workload_fn*": _lib.task_fn,
    "gearman_created_fn*": _lib.task_fn,
    "gearman_data_fn*": _lib.task_fn,
    "gearman_warning_fn*": _lib.task_fn,
    "gearman_universal_status_fn*": _lib.task_fn,
    "gearman_complete_fn*": _lib.task_fn,
    "gearman_exception_fn*": _lib.task_fn,
    "gearman_fail_fn*": _lib.task_fn,
    "gearman_worker_fn*": _lib.worker_fn,
    "gearman_string_t": _lib.gearman_string_t,
    "void": None,
}
# Where a const void * is a byte buffer pygear passes in (workloads, echo
# data, replies) it is declared c_char_p; where libgearman hands one out it
# is c_void_p (copied with string_at).
BUFFER_IN = ctypes.c_char_p


def _normal(ctype):
    ctype = re.sub(r"\bconst\b", " ", ctype)
    ctype = re.sub(r"\b(struct|enum)\b", " ", ctype)
    return re.sub(r"\s+", "", ctype)


def header_prototypes():
    text = ""
    for path in sorted(glob.glob(os.path.join(HEADERS, "*.h"))):
        with open(path) as f:
            text += f.read() + "\n"
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
    text = re.sub(r"\bGEARMAN_API\b|\bGEARMAN_LOCAL\b", " ", text)
    protos = {}
    pattern = re.compile(r"([A-Za-z_][\w\s\*]*?)\b(gearman_\w+)\s*\(([^;{}()]*)\)\s*;")
    for match in pattern.finditer(text):
        result, name, params = match.group(1), match.group(2), match.group(3).strip()
        result = result.split(";")[-1].split("}")[-1]
        if params in ("", "void"):
            types = []
        else:
            types = []
            for param in params.split(","):
                param = param.strip()
                # drop the parameter name, keep the type (and its stars)
                m = re.match(r"(.*?[\s\*])(\w+)(\[\])?$", param)
                if m and _normal(m.group(1)) not in ("", "const", "struct", "enum") and \
                        not _normal(param) in C_TO_CTYPES:
                    param = m.group(1) + ("*" if m.group(3) else "")
                types.append(_normal(param))
        protos.setdefault(name, (_normal(result), types))
    return protos


@needs_headers
def test_every_prototype_matches_its_header():
    protos = header_prototypes()
    problems = []
    for name, restype, argtypes, since in _lib._PROTOTYPES:
        if name not in protos:
            problems.append("%s is not declared in %s" % (name, HEADERS))
            continue
        c_result, c_params = protos[name]
        if len(argtypes) != len(c_params):
            problems.append("%s takes %d parameters in the headers, %d in _lib.py"
                            % (name, len(c_params), len(argtypes)))
            continue
        want = C_TO_CTYPES.get(c_result, "?")
        if c_result == "void*" and restype is ctypes.c_void_p:
            want = ctypes.c_void_p
        if c_result == "char*" and restype is ctypes.c_char_p:
            want = ctypes.c_char_p
        if want != restype:
            problems.append("%s returns %s: expected %r, declared %r"
                            % (name, c_result, want, restype))
        for i, (c_param, declared) in enumerate(zip(c_params, argtypes)):
            want = C_TO_CTYPES.get(c_param, "?")
            if c_param == "void*" and declared is BUFFER_IN:
                want = BUFFER_IN
            if want != declared:
                problems.append("%s parameter %d is %s: expected %r, declared %r"
                                % (name, i + 1, c_param, want, declared))
    assert not problems, "\n".join(problems)
    assert len(_lib._PROTOTYPES) == len(_lib.SYMBOLS) > 60


def test_return_code_table_matches_gearman_strerror():
    _lib.load()
    for code, name in enumerate(errors.RETURN_NAMES):
        assert _lib.strerror(code) == "GEARMAN_" + name
        assert errors.ERROR_CLASSES[code].name == name
        assert errors.ERROR_CLASSES[code].code == code
    assert _lib.strerror(len(errors.RETURN_NAMES)) == "GEARMAN_MAX_RETURN"


def test_struct_layouts_match_headers():
    # string.h: gearman_string_t {const char *c_str; size_t size;}
    assert ctypes.sizeof(_lib.gearman_string_t) == 2 * ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(_lib.sigset_t) >= 128 or sys.platform == "darwin"


def test_stub_is_generated_from_the_table():
    """_lib.pyi is what scripts/gen_lib_stub.py writes from _PROTOTYPES."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_lib_stub.py"),
                          "--check"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
