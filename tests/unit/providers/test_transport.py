"""Client factory, status mapping, body limits and the SSRF guard."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import respx

from integrations.providers.errors import (
    UnsafeUpstreamUrl,
    UpstreamBadPayload,
    UpstreamRejected,
    UpstreamUnavailable,
)
from integrations.providers.transport import (
    DEFAULT_TIMEOUT,
    ProviderClient,
    build_client,
    check_base_url,
    parse_json,
    parse_numeric_host,
    send,
)


def resolver_for(mapping):
    def resolve(host, port):
        if host not in mapping:
            raise OSError("NXDOMAIN")
        return mapping[host]

    return resolve


class TestCheckBaseUrl:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1/",
            "http://[::1]:8000/",
            "http://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://192.168.1.5/",
            "http://172.16.0.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
        ],
    )
    def test_it_refuses_non_public_addresses(self, url):
        with pytest.raises(UnsafeUpstreamUrl) as excinfo:
            check_base_url(url, allow_private=False, resolver=resolver_for({}))
        assert excinfo.value.permanent

    def test_it_refuses_a_hostname_resolving_to_loopback(self):
        resolver = resolver_for({"sim.example.test": ["127.0.0.1"]})
        with pytest.raises(UnsafeUpstreamUrl):
            check_base_url("https://sim.example.test/api", allow_private=False, resolver=resolver)

    def test_it_refuses_when_any_resolved_address_is_private(self):
        resolver = resolver_for({"mixed.example.test": ["93.184.216.34", "10.1.2.3"]})
        with pytest.raises(UnsafeUpstreamUrl):
            check_base_url("https://mixed.example.test/", allow_private=False, resolver=resolver)

    def test_it_accepts_a_public_host(self):
        resolver = resolver_for(
            {"api.asleep.ai": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]}
        )
        assert check_base_url("https://api.asleep.ai", allow_private=False, resolver=resolver) == [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
        ]

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8001/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://0x7f000001/",
            "http://sim.local/",
        ],
    )
    def test_it_allows_private_addresses_when_allowed(self, url):
        resolver = resolver_for({"sim.local": ["127.0.0.1"]})
        assert check_base_url(url, allow_private=True, resolver=resolver)

    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0/",
            "http://metadata.google.internal/",
        ],
    )
    def test_it_refuses_metadata_and_unspecified_addresses_even_when_private_is_allowed(self, url):
        resolver = resolver_for({"metadata.google.internal": ["169.254.169.254"]})
        with pytest.raises(UnsafeUpstreamUrl):
            check_base_url(url, allow_private=True, resolver=resolver)

    @pytest.mark.parametrize(
        "url",
        [
            "ftp://api.example.test/",
            "file:///etc/passwd",
            "https://user:pw@api.example.test/",
            "https:///nohost",
            "http://[::1/",
        ],
    )
    def test_it_refuses_bad_schemes_credentials_and_garbage(self, url):
        with pytest.raises(UnsafeUpstreamUrl):
            check_base_url(url, allow_private=True, resolver=resolver_for({}))

    def test_it_reads_an_unresolvable_host_as_unavailable(self):
        with pytest.raises(UpstreamUnavailable):
            check_base_url(
                "https://nx.example.test/", allow_private=False, resolver=resolver_for({})
            )

    @pytest.mark.parametrize(
        ("host", "address"),
        [
            ("0x7f000001", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("10.1", "10.0.0.1"),
            ("192.168.257", "192.168.1.1"),
            ("deadbeef", None),
            ("256.1.1.1", None),
            ("1.2.3.4.5", None),
            ("example.com", None),
        ],
    )
    def test_it_parses_numeric_host_forms(self, host, address):
        parsed = parse_numeric_host(host)
        assert (str(parsed) if parsed else None) == address


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class TestGuardedClient:
    def test_it_refuses_to_connect_to_loopback_in_production(self, local_server):
        with build_client(local_server, allow_private=False) as client:
            with pytest.raises(UnsafeUpstreamUrl):
                send(client, "GET", "/", provider="test")

    def test_it_connects_to_loopback_when_private_is_allowed(self, local_server):
        with build_client(local_server, allow_private=True) as client:
            response = send(client, "GET", "/", provider="test")
        assert parse_json(response, provider="test") == {"ok": True}

    def test_it_checks_the_address_it_connects_to_not_just_the_saved_url(self, local_server):
        # DNS rebinding: the name passed the check once, now it resolves to loopback.
        port = local_server.rsplit(":", 1)[1]
        resolver = resolver_for({"rebind.example.test": ["127.0.0.1"]})
        with build_client(
            f"http://rebind.example.test:{port}", allow_private=False, resolver=resolver
        ) as client:
            with pytest.raises(UnsafeUpstreamUrl):
                send(client, "GET", "/", provider="test")
        with build_client(
            f"http://rebind.example.test:{port}", allow_private=True, resolver=resolver
        ) as client:
            assert send(client, "GET", "/", provider="test").status_code == 200

    def test_it_sets_explicit_timeouts_and_never_follows_redirects(self):
        with build_client("https://api.example.test") as client:
            assert client.timeout == DEFAULT_TIMEOUT
            assert client.follow_redirects is False
            assert client.trust_env is False


class TestSend:
    @pytest.fixture
    def client(self):
        with respx.mock(base_url="https://api.example.test", assert_all_called=False) as mock:
            with build_client("https://api.example.test") as http:
                yield ProviderClient(http), mock

    def test_it_does_not_follow_a_redirect_to_loopback(self, client):
        provider, mock = client
        mock.get("/data").respond(302, headers={"Location": "http://127.0.0.1/admin"})
        loopback = mock.get("http://127.0.0.1/admin")
        with pytest.raises(UpstreamRejected, match="redirect"):
            provider._json("GET", "/data")
        assert not loopback.called

    def test_it_refuses_an_oversized_body(self, client):
        provider, mock = client
        mock.get("/big").respond(200, content=b"x" * 100)
        with pytest.raises(UpstreamBadPayload, match="too large"):
            send(provider.http, "GET", "/big", provider="test", max_bytes=10)

    def test_it_reads_a_connection_cut_mid_body_as_unavailable(self, client):
        provider, mock = client
        mock.get("/cut").mock(side_effect=httpx.RemoteProtocolError("peer closed connection"))
        with pytest.raises(UpstreamUnavailable):
            provider._json("GET", "/cut")

    def test_it_refuses_nan_in_json(self, client):
        provider, mock = client
        mock.get("/nan").respond(200, content=b'{"x": NaN}')
        with pytest.raises(UpstreamUnavailable, match="JSON"):
            provider._json("GET", "/nan")

    def test_it_reads_a_gzip_body_once(self, client):
        import gzip

        provider, mock = client
        mock.get("/gz").respond(
            200, content=gzip.compress(b'{"a": 1}'), headers={"Content-Encoding": "gzip"}
        )
        assert provider._json("GET", "/gz") == {"a": 1}

    def test_it_never_replays_a_cookie_an_upstream_set(self, client):
        provider, mock = client
        mock.get("/login").respond(200, json={}, headers={"Set-Cookie": "session=abc; Path=/"})
        echo = mock.get("/next").respond(200, json={})
        provider._json("GET", "/login")
        provider._json("GET", "/next")
        assert "cookie" not in echo.calls.last.request.headers
        assert not provider.http.cookies
        with pytest.raises(ValueError):
            provider.http.cookies = {"session": "abc"}

    def test_it_parses_json_as_the_standard_library_does(self, client):
        import json

        provider, mock = client
        bodies = [b'{"a": [1, 2.5, "\\u00e9", null, true]}', b"[1e400]"]
        for i, body in enumerate(bodies):
            mock.get(f"/j{i}").respond(200, content=body)
        # orjson reads the first; the stdlib takes over where orjson refuses (an overflow to
        # infinity, which the stdlib reads as inf, as before).
        assert [provider._json("GET", f"/j{i}") for i in range(len(bodies))] == [json.loads(b) for b in bodies]
        # The one difference: an integer beyond 64 bits arrives as the nearest float (no
        # upstream field holds one; any range check refuses it either way).
        mock.get("/big").respond(200, content=b'{"n": 123456789012345678901234567890}')
        assert provider._json("GET", "/big") == {"n": 1.2345678901234568e29}

    def test_it_keeps_retry_after_on_a_503(self, client):
        provider, mock = client
        mock.get("/down").respond(503, headers={"Retry-After": "30"})
        with pytest.raises(UpstreamUnavailable) as excinfo:
            provider._json("GET", "/down")
        assert excinfo.value.retry_after == 30
