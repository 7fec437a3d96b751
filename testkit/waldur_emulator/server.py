"""The HTTP front: a stdlib ThreadingHTTPServer answering JSON under ``/api/``.

Per call: read the body, apply injected latency/faults, check the token, check the
provider's role permissions (row 15), dispatch under the store lock, answer JSON,
and append the call to the request log.
"""
import json
import logging
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from testkit.waldur_emulator import errors, handlers  # noqa: F401  (importing handlers registers the routes)
from testkit.waldur_emulator.requestlog import RequestRecord
from testkit.waldur_emulator.routes import Request, Response, dispatch

API_PREFIX = "/api/"
log = logging.getLogger(__name__)


class _Dropped(Exception):
    """An injected fault: the connection closes with no answer."""


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, emulator):
        super().__init__(address, RequestHandler)
        self.emulator = emulator

    def handle_error(self, request, client_address):
        """A client that went away (a killed worker, a dropped connection) is no emulator error."""
        import sys
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            log.debug("client %s went away", client_address)
            return
        super().handle_error(request, client_address)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes on a kept-alive connection: without TCP_NODELAY the
    # body waits for the client's delayed ACK, 40 ms per GET (measured), which a real server never costs
    disable_nagle_algorithm = True
    server_version = "WaldurEmulator/1.0"

    def do_GET(self):
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("%s - %s", self.address_string(), format % args)

    # ------------------------------------------------------------------
    def _handle(self):
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        arrived = emulator.log.enter()
        try:
            self._handle_call(emulator, parts, query, raw, arrived)
        finally:
            emulator.log.leave()

    def _handle_call(self, emulator, parts, query, raw, arrived):
        body = None
        fault = emulator.faults.decide(parts.path)
        if fault.delay:
            time.sleep(fault.delay)
        try:
            body = self._parse_json(raw)
            if fault.fails and not fault.after:
                self._strike(fault)
            response = self._answer(emulator, parts.path, query, body)
            if fault.fails:  # after: the work is done, the answer is lost
                self._strike(fault)
        except errors.ApiError as error:
            response = Response(error.status, error.body, error.headers)
        except _Dropped:
            emulator.log.append(RequestRecord(self.command, parts.path, query, 0, body, arrived))
            self.close_connection = True
            return
        except Exception:  # a bug in the emulator: answer like Django would, keep serving
            log.error("emulator error on %s %s\n%s", self.command, self.path, traceback.format_exc())
            response = Response(500, "Internal Server Error")
        emulator.log.append(RequestRecord(self.command, parts.path, query, response.status, body, arrived,
                                          time.monotonic()))
        self._send(response)

    @staticmethod
    def _strike(fault):
        if fault.drop:
            raise _Dropped()
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        raise errors.ApiError(fault.status, {"detail": "Injected fault."}, headers)

    @staticmethod
    def _parse_json(raw):
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as error:
            raise errors.bad_request(f"JSON parse error - {error}") from None

    def _answer(self, emulator, path, query, body):
        if not path.startswith(API_PREFIX):
            raise errors.not_found_route()
        if not self._authorized(emulator.token):
            raise errors.invalid_token()
        store = emulator.store
        if not store.provider_permissions_loaded:
            raise errors.forbidden()
        host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
        request = Request(self.command, path[len(API_PREFIX):], query, body, store,
                          list_url=f"http://{host}{path}")
        with store.lock:
            return dispatch(request)

    def _authorized(self, token):
        keyword, _, value = (self.headers.get("Authorization") or "").partition(" ")
        return keyword.lower() == "token" and value.strip() == token

    def _send(self, response: Response):
        if response.body is None:
            payload, content_type = b"", "application/json"
        elif isinstance(response.body, str) and response.status >= 500:
            payload, content_type = response.body.encode(), "text/html; charset=utf-8"
        else:
            payload, content_type = json.dumps(response.body).encode(), "application/json"
        self.send_response(response.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def serve_in_thread(emulator, host="127.0.0.1", port=0):
    """Start the server on a daemon thread; returns (server, thread)."""
    server = EmulatorHTTPServer((host, port), emulator)
    thread = threading.Thread(target=server.serve_forever, name="waldur-emulator", daemon=True)
    thread.start()
    return server, thread
