"""TLS that tells the truth: pygear.features() reads what the loaded
libgearman can do from the file itself, and set_ssl refuses, saying why,
rather than let libgearman talk plaintext."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import pygear
from pygear import _lib, _tls

pytestmark = pytest.mark.timeout(60)

# Sonames of TLS libraries, kept apart from pygear's own list on purpose.
TLS_PREFIXES = ("libssl", "libcrypto", "libwolfssl", "libgnutls", "libmbedtls")
TLS_FUNCTIONS = ("SSL_connect", "SSL_CTX_new", "wolfSSL_connect", "wolfSSL_CTX_new",
                 "gnutls_handshake")

needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None,
                                   reason="readelf not installed (apt-get install binutils)")


def readelf(*args):
    done = subprocess.run(["readelf", "-W", *args], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


def readelf_needed(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", path))


def readelf_symbols(path):
    """Names in the dynamic symbol table (defined and undefined)."""
    names = set()
    for line in readelf("--dyn-syms", path).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[0].endswith(":"):
            names.add(fields[7].split("@")[0])
    return names


class Listener:
    """A plain TCP listener on loopback recording every byte it receives."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        peers = []
        while not self._stop.is_set():
            try:
                peer, _ = self.sock.accept()
                peer.settimeout(0.05)
                peers.append(peer)
                self.connections += 1
            except socket.timeout:
                pass
            for peer in list(peers):
                try:
                    chunk = peer.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    self.data += chunk
                else:
                    peers.remove(peer)
                    peer.close()
        for peer in peers:
            peer.close()

    def received(self, settle=0.3):
        time.sleep(settle)   # let in-flight bytes arrive
        return bytes(self.data)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


# --- features() ------------------------------------------------------------------

def test_features_is_public_and_has_its_keys():
    f = pygear.features()
    assert f is not pygear.features()            # a copy each time
    assert f == pygear.features()
    assert f["version"] == pygear.libgearman_version()
    assert isinstance(f["tls_client"], bool) and isinstance(f["tls_worker"], bool)
    assert isinstance(f["needed"], list) and isinstance(f["tls_calls"], list)
    assert f["ssl_library"] is None or isinstance(f["ssl_library"], str)
    if f["tls_client"] and f["tls_worker"]:
        assert f["tls_reason"] is None
    else:
        assert isinstance(f["tls_reason"], str) and "TLS for" in f["tls_reason"]


def test_library_file_is_the_mapped_libgearman():
    path = pygear.features()["library_file"]
    assert path and os.path.isabs(path) and os.path.isfile(path)
    with open("/proc/self/maps") as maps:
        assert path in maps.read()
    if os.path.isabs(_lib.dll_file):
        assert os.path.samefile(path, _lib.dll_file)


@needs_readelf
def test_features_match_readelf():
    f = pygear.features()
    path = f["library_file"]
    assert re.search(r"\(SONAME\)\s+Library soname: \[libgearman", readelf("-d", path))
    needed = readelf_needed(path)
    assert f["needed"] == needed
    tls_libs = [n for n in needed if n.startswith(TLS_PREFIXES)]
    assert f["ssl_library"] == (tls_libs[0] if tls_libs else None)
    symbols = readelf_symbols(path)
    assert f["tls_calls"] == [c for c in TLS_FUNCTIONS if c in symbols]
    linked = bool(tls_libs) or any(c in symbols for c in TLS_FUNCTIONS)
    assert f["tls_client"] == ("gearman_client_set_ssl" in symbols and linked)
    assert f["tls_worker"] == ("gearman_worker_set_ssl" in symbols and linked)


@needs_readelf
def test_debians_libgearman_can_do_no_tls():
    path = pygear.features()["library_file"]
    if pygear.libgearman_version() != "1.1.20+ds" or \
            any(n.startswith(TLS_PREFIXES) for n in readelf_needed(path)):
        pytest.skip("not Debian's libgearman 1.1.20")
    f = pygear.features()
    assert (f["tls_client"], f["tls_worker"], f["ssl_library"]) == (False, False, None)
    assert "links none" in f["tls_reason"] and "gearman_worker_set_ssl" in f["tls_reason"]


@needs_readelf
@pytest.mark.parametrize("path", [sys.executable, "/usr/sbin/gearmand",
                                  "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                                  "/usr/lib/x86_64-linux-gnu/libgearman.so.8"])
def test_elf_reader_agrees_with_readelf(path):
    path = os.path.realpath(path)
    if not os.path.isfile(path):
        pytest.skip("%s not here" % path)
    try:
        readelf("-d", path)
    except subprocess.CalledProcessError:
        pytest.skip("%s is not ELF" % path)
    assert _tls.read_dynamic(path)[0] == readelf_needed(path)


def test_elf_reader_refuses_what_is_not_elf(tmp_path):
    text = tmp_path / "libnot.so"
    text.write_bytes(b"INPUT(-lgearman)\n")
    with pytest.raises(_tls.NotELF, match="not an ELF file"):
        _tls.read_dynamic(str(text))


def test_require_names_a_kind():
    with pytest.raises(ValueError, match="'client' or 'worker'"):
        _tls.require("admin")


# --- set_ssl ---------------------------------------------------------------------

KINDS = [("client", pygear.Client), ("worker", pygear.Worker)]


@pytest.mark.parametrize("kind,cls", KINDS)
def test_set_ssl_raises_not_supported_saying_why(kind, cls):
    if pygear.features()["tls_" + kind]:
        pytest.skip("this libgearman can do TLS for %ss" % kind)
    with cls() as obj:
        with pytest.raises(pygear.NotSupported) as info:
            obj.set_ssl()
    message = str(info.value)
    assert message.startswith("TLS for %ss needs " % kind)
    assert pygear.features()["library_file"] in message
    assert pygear.libgearman_version() in message
    assert message == _tls._state()[1][kind]


@pytest.mark.parametrize("kind,cls", KINDS)
def test_set_ssl_checks_its_paths_first(kind, cls, tmp_path):
    there = tmp_path / "ca.pem"
    there.write_text("not really a CA\n")
    with cls() as obj:
        with pytest.raises(TypeError, match="ca_file must be a path"):
            obj.set_ssl(ca_file=42)
        with pytest.raises(FileNotFoundError, match="certificate .*no such file"):
            obj.set_ssl(ca_file=str(there), certificate=str(tmp_path / "missing.pem"))
        with pytest.raises(ValueError, match="key must be a non-empty path"):
            obj.set_ssl(key="")
        with pytest.raises(ValueError, match="NUL"):
            obj.set_ssl(key="a\0b")
        with pytest.raises(FileNotFoundError):
            obj.set_ssl(ca_file=str(tmp_path))        # a directory is not a file


def _asked_for_tls(kind, cls, port, tmp_path):
    """Ask ``cls`` for TLS toward ``port``, then make it talk.
    Returns the NotSupported it raised, or None when it accepted."""
    obj = cls()
    try:
        obj.add_server("127.0.0.1", port)
        obj.set_timeout(1500)
        try:
            obj.set_ssl()
        except pygear.NotSupported as exc:
            return exc
        with pytest.raises(pygear.GearmanError):   # the listener never answers
            if kind == "client":
                obj.do_background("tls_probe", "secret")
            else:
                obj.add_function("tls_probe", 0, lambda job: None)
                obj.work()
        return None
    finally:
        obj.close()


@pytest.mark.parametrize("kind,cls", KINDS)
def test_no_plaintext_where_tls_was_asked(kind, cls, listener, tmp_path):
    refused = _asked_for_tls(kind, cls, listener.port, tmp_path)
    got = listener.received()
    if refused is not None:
        assert got == b"", "sent %r after refusing TLS" % got[:16]
        assert "TLS for %ss needs" % kind in str(refused)
        assert "--enable-ssl" in str(refused) or "does not export" in str(refused)
    else:
        assert got[:1] == b"\x16", "not a TLS ClientHello: %r" % got[:16]
    assert b"\0REQ" not in got


def test_the_listener_sees_what_bare_libgearman_sends(listener):
    """Why set_ssl refuses: libgearman's own gearman_client_set_ssl, where the
    library has no TLS, is accepted, and the client then talks plaintext."""
    if pygear.features()["tls_client"]:
        pytest.skip("this libgearman can do TLS")
    _lib.load()
    ptr = _lib.gearman_client_create(None)
    try:
        _lib.gearman_client_set_ssl(ptr, True, None, None, None)
        assert _lib.gearman_client_add_server(ptr, b"127.0.0.1", listener.port) == 0
        _lib.gearman_client_set_timeout(ptr, 1500)
        rc = _lib.gearman_client_echo(ptr, b"secret", 6)
        assert rc != 0        # the listener never answers
    finally:
        _lib.gearman_client_free(ptr)
    got = listener.received()
    assert got.startswith(b"\0REQ")     # a Gearman request (ECHO_REQ), in the clear
