"""What the loaded libgearman can do over TLS, read from the library itself.

A libgearman built without a TLS library still exports
``gearman_client_set_ssl`` (1.1.19 on): it accepts the call and then talks
plaintext.  So a symbol lookup cannot tell, and neither can a version
number.  This module opens the loaded file and reads its ELF dynamic
section: the libraries it needs (``DT_NEEDED``) and the TLS functions its
code calls (names in the dynamic string table).  ``Client.set_ssl`` and
``Worker.set_ssl`` check the files (``check_files``), then ask
``require()``, so that nothing asked to go over TLS is ever sent in
plaintext; the settings record then applies it to every C handle made.
"""
from __future__ import annotations

import ctypes
import os
import struct
import threading
from typing import Any, Dict, List, Optional, Tuple

from . import _lib
from .errors import NotSupported

# Sonames of TLS libraries a libgearman may be linked with.
TLS_LIBRARIES = ("libssl", "libwolfssl", "libgnutls", "libmbedtls", "libcrypto")
# Functions a TLS-enabled libgearman calls (OpenSSL, wolfSSL, GnuTLS); a
# statically linked TLS library shows here when DT_NEEDED shows nothing.
TLS_CALLS = ("SSL_connect", "SSL_CTX_new", "wolfSSL_connect", "wolfSSL_CTX_new",
             "gnutls_handshake")
SYMBOL = {"client": "gearman_client_set_ssl", "worker": "gearman_worker_set_ssl"}
_HINT = "build gearmand (libgearman) with --enable-ssl"

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10


class NotELF(ValueError):
    """The file is not an ELF shared object pygear can read."""


def _mapped_file(address: int, maps: str = "/proc/self/maps") -> Optional[str]:
    """The file mapped at ``address`` in this process (Linux), else None."""
    try:
        with open(maps) as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) < 6 or not fields[5].startswith("/"):
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if start <= address < end:
                    return fields[5].rstrip("\n")
    except OSError:
        pass
    return None


def library_file() -> Optional[str]:
    """The real path of the loaded libgearman: the mapping that holds its
    ``gearman_version``, else the name it was loaded by when that is a file."""
    dll = _lib.load()
    address = ctypes.cast(dll.gearman_version, ctypes.c_void_p).value
    found = _mapped_file(address) if address else None
    if found and os.path.isfile(found):
        return found
    name = _lib.dll_file
    return os.path.realpath(name) if name and os.path.isfile(name) else None


def read_dynamic(path: str) -> Tuple[List[str], bytes]:
    """(DT_NEEDED names, dynamic string table) of an ELF shared object."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise NotELF("%s is not an ELF file" % path)
    wide = {1: False, 2: True}.get(data[4])
    order = {1: "<", 2: ">"}.get(data[5])
    if wide is None or order is None:
        raise NotELF("%s: unknown ELF class or byte order" % path)
    # e_phoff, e_phentsize, e_phnum; then each program header's
    # (p_type, p_offset, p_vaddr, p_filesz), and a dynamic entry's layout.
    if wide:
        phoff, phentsize, phnum = struct.unpack_from(order + "32xQ14xHH", data, 0)
        phdr, fields, dyn = order + "IIQQQQ", (0, 2, 3, 5), order + "qQ"
    else:
        phoff, phentsize, phnum = struct.unpack_from(order + "28xI10xHH", data, 0)
        phdr, fields, dyn = order + "IIIIII", (0, 1, 2, 4), order + "iI"
    segments = []
    for i in range(phnum):
        header = struct.unpack_from(phdr, data, phoff + i * phentsize)
        segments.append(tuple(header[j] for j in fields))

    def file_offset(address: int) -> int:
        for p_type, p_offset, p_vaddr, p_filesz in segments:
            if p_type == PT_LOAD and p_vaddr <= address < p_vaddr + p_filesz:
                return address - p_vaddr + p_offset
        raise NotELF("%s: address %#x is in no loaded segment" % (path, address))

    dynamic = [s for s in segments if s[0] == PT_DYNAMIC]
    if not dynamic:
        raise NotELF("%s has no dynamic section" % path)
    _, start, _, size = dynamic[0]
    step = struct.calcsize(dyn)
    needed, strtab, strsz = [], None, None
    for pos in range(start, start + size, step):
        tag, value = struct.unpack_from(dyn, data, pos)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(value)
        elif tag == DT_STRTAB:
            strtab = value
        elif tag == DT_STRSZ:
            strsz = value
    if strtab is None or strsz is None:
        raise NotELF("%s has no dynamic string table" % path)
    table_at = file_offset(strtab)
    table = data[table_at:table_at + strsz]
    names = [table[i:table.index(b"\0", i)].decode("utf-8", "replace") for i in needed]
    return names, table


_cache: Dict[str, Tuple[Dict[str, Any], Dict[str, Optional[str]]]] = {}
_cache_lock = threading.Lock()


def _inspect() -> Dict[str, Any]:
    path = library_file()
    found: Dict[str, Any] = {"version": _lib.version, "library_file": path,
                             "needed": [], "ssl_library": None, "tls_calls": []}
    if path is None:
        found["unreadable"] = ("cannot find the file of the loaded libgearman (%s)"
                               % _lib.dll_file)
        return found
    try:
        needed, strings = read_dynamic(path)
    except (OSError, NotELF, struct.error, ValueError) as exc:
        found["unreadable"] = "cannot read %s: %s" % (path, exc)
        return found
    found["needed"] = needed
    found["ssl_library"] = next((n for n in needed if n.startswith(TLS_LIBRARIES)), None)
    names = set(strings.split(b"\0"))
    found["tls_calls"] = [c for c in TLS_CALLS if c.encode() in names]
    return found


def _refusal(kind: str, found: Dict[str, Any]) -> Optional[str]:
    """Why TLS for ``kind`` cannot work with this library, or None."""
    who = "%s (libgearman %s)" % (found["library_file"] or _lib.dll_file, found["version"])
    if not hasattr(_lib.dll, SYMBOL[kind]):
        return ("TLS for %ss needs %s, which %s does not export (the 1.1 headers "
                "declare it, but the library must define it)" % (kind, SYMBOL[kind], who))
    if "unreadable" in found:
        return ("TLS for %ss needs a libgearman linked with a TLS library, and pygear "
                "cannot check that: %s" % (kind, found["unreadable"]))
    if found["ssl_library"] is None and not found["tls_calls"]:
        return ("TLS for %ss needs a libgearman linked with a TLS library; %s links "
                "none (its DT_NEEDED: %s) and calls no TLS function; %s"
                % (kind, who, ", ".join(found["needed"]) or "nothing", _HINT))
    return None


def _state() -> Tuple[Dict[str, Any], Dict[str, Optional[str]]]:
    """(features, refusal per kind) of the loaded library, read once."""
    _lib.load()
    key = "%s@%s" % (_lib.dll_file, _lib.version)
    with _cache_lock:
        if key not in _cache:
            found = _inspect()
            refusals = {kind: _refusal(kind, found) for kind in SYMBOL}
            found.pop("unreadable", None)
            for kind, why in refusals.items():
                found["tls_" + kind] = why is None
            found["tls_reason"] = "; ".join(r for r in refusals.values() if r) or None
            _cache[key] = (found, refusals)
        return _cache[key]


def features() -> Dict[str, Any]:
    """What the loaded libgearman can do (it is loaded if need be).

    ``version``, ``library_file`` (its real path), ``needed`` (its DT_NEEDED
    entries), ``ssl_library`` (the TLS library among them, or None),
    ``tls_calls`` (the TLS functions it calls), ``tls_client``,
    ``tls_worker`` and ``tls_reason`` (why not, or None when both work)."""
    found, _ = _state()
    return dict(found, needed=list(found["needed"]), tls_calls=list(found["tls_calls"]))


def require(kind: str) -> None:
    """Raise NotSupported, saying why, unless TLS works for ``kind``
    (``"client"`` or ``"worker"``)."""
    if kind not in SYMBOL:
        raise ValueError("kind must be 'client' or 'worker', not %r" % (kind,))
    _, refusals = _state()
    reason = refusals[kind]
    if reason:
        raise NotSupported(reason)


def check_files(**paths: Optional[str]) -> Dict[str, Optional[bytes]]:
    """Each path None or an existing file, as bytes for C."""
    out: Dict[str, Optional[bytes]] = {}
    for what, path in paths.items():
        if path is None:
            out[what] = None
            continue
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError("%s must be a path (str), not %s" % (what, type(path).__name__))
        path = os.fspath(path)
        if not isinstance(path, str) or not path or "\0" in path:
            raise ValueError("%s must be a non-empty path without NUL bytes" % what)
        if not os.path.isfile(path):
            raise FileNotFoundError("%s %r: no such file" % (what, path))
        out[what] = os.fsencode(path)
    return out
