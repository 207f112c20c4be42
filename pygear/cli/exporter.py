"""``pygear exporter``: gearmand's state for Prometheus, over HTTP.

Every GET /metrics scrapes the servers afresh (in parallel, each bounded by
--timeout), as ``pygear admin metrics`` does.  GET /healthz answers 200
"ok" while the exporter runs, without asking gearmand: it says the
exporter is alive; whether the servers are is ``gearman_up``.

The HTTP server is the standard library's (threaded) either way.  When
prometheus_client is installed, the page comes from a prometheus_client
registry: the same gearman_* series plus the exporter's own process_* and
python_* ones, and OpenMetrics when the scraper asks for it (Prometheus
does).  Without it, the page is pygear's own 0.0.4 text.
"""
from __future__ import annotations

import argparse
import gzip
import logging
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Tuple

from . import _common as cli
from .. import __version__
from ..metrics import CONTENT_TYPE, DEFAULT_TIMEOUT, ServerMetrics

DEFAULT_LISTEN = "127.0.0.1:9418"   # bakins/gearman-exporter's port
_INDEX = (b"<html><head><title>pygear exporter</title></head><body>"
          b"<h1>pygear exporter</h1><p><a href=\"/metrics\">/metrics</a> "
          b"<a href=\"/healthz\">/healthz</a></p></body></html>\n")


def add_parser(sub, common: Callable) -> None:
    p = sub.add_parser(
        "exporter", help="serve the job servers' state to Prometheus over HTTP",
        description="Serve over HTTP:\n"
        "  /metrics  gearman_up, gearman_jobs, ... of every --server, scraped at\n"
        "            each request; --timeout SECS bounds each server's answer\n"
        "            (default %g)\n"
        "  /healthz  200 \"ok\" while the exporter runs (it does not ask gearmand)\n"
        "SIGTERM exits 0, Ctrl-C 130." % DEFAULT_TIMEOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scrape config:\n"
        "  scrape_configs:\n"
        "    - job_name: gearman\n"
        "      static_configs:\n"
        "        - targets: [\"127.0.0.1:9418\"]\n")
    common(p)
    p.add_argument("-l", "--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help="where to serve HTTP (default %s; port 0 picks a free one)"
                   % DEFAULT_LISTEN)
    p.set_defaults(run=run)


def parse_listen(text: str) -> Tuple[str, int]:
    """``host:port``, ``[v6]:port``; the port is required."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise cli.CliError("bad --listen %r: expected HOST:PORT" % text, cli.EXIT_USAGE)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


class _Page:
    """What /metrics answers: (body, content type) for an Accept header."""

    def __init__(self, source: ServerMetrics) -> None:
        self.source = source
        self.backend = "pygear"
        self._registry: Any = None
        self._choose_encoder: Any = None
        try:
            from prometheus_client import (CollectorRegistry, GCCollector, PlatformCollector,
                                           ProcessCollector)
            from prometheus_client.exposition import choose_encoder
        except ImportError:
            return
        registry = CollectorRegistry()
        registry.register(source.collector())
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._registry, self._choose_encoder = registry, choose_encoder
        self.backend = "prometheus_client %s" % _version_of("prometheus_client")

    def render(self, accept: str) -> Tuple[bytes, str]:
        if self._registry is None:
            return self.source.text().encode("utf-8"), CONTENT_TYPE
        encoder, content_type = self._choose_encoder(accept)
        return encoder(self._registry), content_type


class _Handler(BaseHTTPRequestHandler):
    server_version = "pygear-exporter/%s" % __version__
    protocol_version = "HTTP/1.1"
    page: _Page   # set on the subclass made in run()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body, content_type = self.page.render(self.headers.get("Accept", ""))
            except Exception as exc:   # a bug, not a server being down
                logging.getLogger("pygear.metrics").exception("building /metrics failed")
                self._send(500, ("building /metrics failed: %s\n" % exc).encode(),
                           "text/plain; charset=utf-8")
                return
            self._send(200, body, content_type, compress=True)
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/":
            self._send(200, _INDEX, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str, compress: bool = False) -> None:
        gzipped = compress and "gzip" in self.headers.get("Accept-Encoding", "")
        if gzipped:
            body = gzip.compress(body)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass   # one line per scrape is noise; servers going down are logged


def _version_of(distribution: str) -> str:
    try:
        from importlib import metadata
        return metadata.version(distribution)
    except Exception:
        return "(version unknown)"


def _server_class(host: str) -> type:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return type("_ExporterServer", (ThreadingHTTPServer,),
                {"address_family": family, "daemon_threads": True})


def _log_to_stderr() -> None:
    """Servers going down and coming back (pygear.metrics) on stderr."""
    logger = logging.getLogger("pygear")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.NullHandler)
               for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%s exporter: %%(message)s" % cli.PROG))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def run(args) -> int:
    host, port = parse_listen(args.listen)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    source = ServerMetrics(cli.servers_of(args), timeout=timeout)
    page = _Page(source)
    handler = type("_PageHandler", (_Handler,), {"page": page})
    try:
        httpd = _server_class(host)((host, port), handler)
    except OSError as exc:
        raise cli.CliError("cannot listen on %s: %s" % (args.listen, exc.strerror or exc))
    _log_to_stderr()
    stop = threading.Event()
    previous: Optional[Any] = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                              name="pygear-exporter", daemon=True)
    thread.start()
    bound = httpd.server_address
    where = "[%s]:%d" % bound[:2] if ":" in bound[0] else "%s:%d" % bound[:2]
    sys.stderr.write("%s exporter: serving http://%s/metrics for %s (%s)\n"
                     % (cli.PROG, where, ", ".join(cli.format_server(s) for s in source.servers),
                        page.backend))
    sys.stderr.flush()
    code = cli.EXIT_OK
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        code = cli.EXIT_INTERRUPTED
    finally:
        httpd.shutdown()
        httpd.server_close()
        signal.signal(signal.SIGTERM, previous)
    return code
