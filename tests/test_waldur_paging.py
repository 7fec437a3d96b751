"""Link-header paging: the token goes to WALDUR_API_URL's scheme, host and port only.

Two local HTTP servers, no Waldur: the API, whose first page's ``Link: <...>; rel="next"`` points where a
test says, and a stranger that records whatever reaches it.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from waldur_client import WaldurClientException

from slurm_sync.waldur.http import SessionClient as _SessionClient

TOKEN = "wt-paging-0123456789abcdef"


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        second = "page=2" in self.path
        body = json.dumps([{"n": 3}] if second else [{"n": 1}, {"n": 2}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if not second and self.server.next_link:
            self.send_header("Link", f'<{self.server.next_link}>; rel="next"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    started = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
        server.seen, server.next_link = [], ""
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(server)
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def _client(api):
    client = _SessionClient(f"http://127.0.0.1:{api.server_address[1]}/api/", TOKEN, verify_ssl=True, timeout=5)
    client.session.trust_env = False  # loopback, whatever *_proxy say
    return client


@pytest.mark.parametrize("link", ["http://127.0.0.1:{port}/api/things/?page=2", "/api/things/?page=2",
                                  "HTTP://127.0.0.1:{port}/api/things/?page=2"])
def test_next_pages_on_the_api_origin_are_followed(servers, link):
    api, _ = servers
    api.next_link = link.format(port=api.server_address[1])
    client = _client(api)
    assert client._get_all(client.api_url + "things/", params={"page_size": 2}) == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [path for path, _ in api.seen] == ["/api/things/?page_size=2", "/api/things/?page=2"]
    assert all(auth == f"token {TOKEN}" for _, auth in api.seen)


@pytest.mark.parametrize("elsewhere", ["other port", "other host", "other scheme"])
def test_a_next_page_elsewhere_stops_paging_and_gets_no_token(servers, elsewhere):
    api, stranger = servers
    api.next_link = {
        "other port": f"http://127.0.0.1:{stranger.server_address[1]}/api/things/?page=2",
        "other host": f"http://localhost:{api.server_address[1]}/api/things/?page=2",  # the same server, by name
        "other scheme": f"https://127.0.0.1:{api.server_address[1]}/api/things/?page=2",
    }[elsewhere]
    client = _client(api)
    with pytest.raises(WaldurClientException) as stopped:
        client._get_all(client.api_url + "things/")
    message = str(stopped.value)
    assert "Link header" in message and "not followed" in message and "WALDUR_API_URL" in message
    assert TOKEN not in message
    assert stranger.seen == [] and [path for path, _ in api.seen] == ["/api/things/"]  # nothing more was sent
