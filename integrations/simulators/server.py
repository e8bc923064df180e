"""Run the simulators as real HTTP servers (uvicorn): for the demo, the CLI and tests.

- ``run("asleep", port=8101, **kwargs)`` serves one simulator until interrupted.
- ``serve_all(...)`` serves all four (default ports 8101-8104) until interrupted.
- ``start_in_thread("usleep")`` / ``start_in_subprocess("asleep")`` start one on a free
  loopback port and return a ``RunningSimulator`` with its ``url``; ``stop()`` (or a
  ``with`` block) ends it.

Grand Challenge is always served over https (gcapi refuses anything else) with a
self-signed certificate for 127.0.0.1/localhost made at start-up into a temp dir; clients
pass ``verify=False`` (or ``verify=cert_path``).

``kwargs`` go to the provider's ``create_app``: knobs (``error_rate=0.2``, ``seed=3`` ...)
and seeding (``keys=[...]``/``tokens=[...]``, ``users=N``, ``nights=M``).

CLI: ``python -m integrations.simulators.server asleep --port 8101 --config '{"latency": 0.05}'``
or ``... all --demo [--port BASE]``. A started server prints ``SIMULATOR <provider> <url>``
on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn

from . import asleep, beddit, grand_challenge, usleep
from .harness import Simulator

FACTORIES: dict[str, Callable[..., Any]] = {
    "asleep": asleep.create_app,
    "beddit": beddit.create_app,
    "usleep": usleep.create_app,
    "grand_challenge": grand_challenge.create_app,
}
DEFAULT_PORTS = {"asleep": 8101, "beddit": 8102, "usleep": 8103, "grand_challenge": 8104}
TLS_PROVIDERS = {"grand_challenge"}
# Credentials and data ``--demo`` provisions (local demo only, not secrets).
DEMO: dict[str, dict[str, Any]] = {
    "asleep": {"keys": ["demo-asleep-key"], "users": 5, "nights": 30},
    "beddit": {"users": 5, "nights": 30},
    "usleep": {"tokens": ["demo-usleep-token"]},
    "grand_challenge": {"tokens": ["demo-grand-challenge-token"]},
}

_cert_lock = threading.Lock()
_cert_paths: tuple[str, str] | None = None


def self_signed_cert() -> tuple[str, str]:
    """(certfile, keyfile): a self-signed cert for localhost/127.0.0.1/::1, made once a process."""
    global _cert_paths
    with _cert_lock:
        if _cert_paths and all(os.path.exists(p) for p in _cert_paths):
            return _cert_paths
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        folder = tempfile.mkdtemp(prefix="sim-tls-")
        certfile, keyfile = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        with open(certfile, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(keyfile, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        os.chmod(keyfile, 0o600)
        _cert_paths = (certfile, keyfile)
        return _cert_paths


def create_app(provider: str, **kwargs: Any) -> Any:
    """The ASGI app of ``provider``; ``app.state.sim`` is its Simulator."""
    try:
        return FACTORIES[provider](**kwargs)
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; one of {sorted(FACTORIES)}") from None


def _uses_tls(provider: str, tls: bool | None) -> bool:
    return provider in TLS_PROVIDERS if tls is None else tls


def _server(
    app: Any, provider: str, *, tls: bool, log_level: str, host: str = "127.0.0.1", port: int = 0
) -> uvicorn.Server:
    ssl: dict[str, Any] = {}
    if tls:
        certfile, keyfile = self_signed_cert()
        ssl = {"ssl_certfile": certfile, "ssl_keyfile": keyfile}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        lifespan="off",
        timeout_graceful_shutdown=2,
        **ssl,
    )
    return uvicorn.Server(config)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this; without it every keep-alive response waits ~40 ms
    # (Nagle + delayed ACK on the split header/body writes).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections queue from now on, before uvicorn starts accepting
    return sock


def _url(provider: str, host: str, port: int, tls: bool) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{h}:{port}"


class RunningSimulator:
    """A simulator serving on loopback; ``url`` is its base URL (no trailing slash)."""

    def __init__(
        self,
        provider: str,
        url: str,
        *,
        sim: Simulator | None,
        stop: Callable[[], None],
        cert: str | None = None,
    ) -> None:
        self.provider = provider
        self.url = url
        self.sim = sim  # the live Simulator object when in-thread, None for a subprocess
        self.cert = cert
        self._stop = stop
        self.control = httpx.Client(base_url=url, verify=False, timeout=30)

    @property
    def api_url(self) -> str:
        """The base URL clients are configured with (Grand Challenge: ``.../api/v1/``)."""
        return self.url + "/api/v1/" if self.provider == "grand_challenge" else self.url

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A control call (``/_sim/...``); raises on an error status, returns the JSON."""
        r = self.control.request(method, path, **kwargs)
        r.raise_for_status()
        return r.json()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        return self.call("POST", "/_sim/config", json=knobs)

    def reset(self, data: bool = False) -> None:
        self.call("POST", "/_sim/reset", json={"data": data})

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        return self.call("GET", "/_sim/log", params={"since": since})["entries"]

    def credential(self, **spec: Any) -> str:
        return self.call("POST", "/_sim/credentials", json=spec)["value"]

    def add_users(self, **spec: Any) -> list[dict[str, Any]]:
        return self.call("POST", "/_sim/users", json=spec)["users"]

    def truth(self, **params: Any) -> Any:
        return self.call("GET", "/_sim/truth", params=params)

    def warm(self, timezones: list[str] | None = None) -> dict[str, Any]:
        """Render every stored night ahead (Asleep, Beddit): ``{"rendered": n, "seconds": s}``.

        Asleep reports are rendered for ``timezones`` (default UTC). No client timeout:
        ~0.2-0.5 ms a night, so 90,000 Beddit nights take most of a minute.
        """
        body = {} if timezones is None else {"timezones": timezones}
        return self.call("POST", "/_sim/warm", json=body, timeout=None)

    def arm_barrier(self, index: int) -> None:
        self.call("POST", "/_sim/barrier", json={"index": index})

    def wait_barrier(self, index: int, timeout: float = 10) -> bool:
        return self.call("POST", "/_sim/barrier/wait", json={"index": index, "timeout": timeout})[
            "reached"
        ]

    def release_barrier(self, index: int | None = None) -> None:
        self.call(
            "POST",
            "/_sim/barrier/release",
            json={"all": True} if index is None else {"index": index},
        )

    def stop(self) -> None:
        self.control.close()
        self._stop()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(
    provider: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: bool | None = None,
    log_level: str = "warning",
    **kwargs: Any,
) -> RunningSimulator:
    """Serve ``provider`` from a daemon thread on a free port (or ``port``)."""
    app = create_app(provider, **kwargs)
    sim: Simulator = app.state.sim
    use_tls = _uses_tls(provider, tls)
    server = _server(app, provider, tls=use_tls, log_level=log_level)
    sock = _bind(host, port)
    actual = sock.getsockname()[1]
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as e:  # surface start-up failures to the caller
            errors.append(e)

    thread = threading.Thread(target=target, name=f"sim-{provider}-{actual}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        server.should_exit = True
        raise RuntimeError(
            f"simulator {provider} did not start: {errors[0] if errors else 'timeout'}"
        )

    def stop() -> None:
        sim.stopping.set()  # end hangs and barriers at once
        server.should_exit = True
        thread.join(10)
        sock.close()

    return RunningSimulator(
        provider,
        _url(provider, host, actual, use_tls),
        sim=sim,
        stop=stop,
        cert=self_signed_cert()[0] if use_tls else None,
    )


def start_in_subprocess(
    provider: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: bool | None = None,
    python: str | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> RunningSimulator:
    """Serve ``provider`` from a child process (survives anything done to the test's threads)."""
    cmd = [
        python or sys.executable,
        "-m",
        "integrations.simulators.server",
        provider,
        "--host",
        host,
        "--port",
        str(port),
        "--config",
        json.dumps(kwargs, default=str),
    ]
    if tls is not None:
        cmd.append("--tls" if tls else "--no-tls")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = root + os.pathsep + child_env.get("PYTHONPATH", "")
    # stderr goes to a file, not a pipe nobody drains (a full pipe would block the server).
    errlog = tempfile.NamedTemporaryFile(prefix=f"sim-{provider}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=errlog,
        text=True,
        env=child_env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("SIMULATOR "):
        proc.kill()
        proc.wait(5)
        with open(errlog.name) as f:
            err = f.read()
        raise RuntimeError(f"simulator {provider} did not start: {line!r} {err[-2000:]}")
    url = line.split()[2]

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
        errlog.close()
        if os.path.exists(errlog.name):
            os.unlink(errlog.name)

    sim = RunningSimulator(
        provider,
        url,
        sim=None,
        stop=stop,
        cert=self_signed_cert()[0] if _uses_tls(provider, tls) else None,
    )
    sim.process = proc  # type: ignore[attr-defined]
    sim.stderr_path = errlog.name  # type: ignore[attr-defined]
    return sim


def run(
    provider: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    tls: bool | None = None,
    log_level: str = "info",
    **kwargs: Any,
) -> None:
    """Serve one simulator in the foreground until interrupted."""
    app = create_app(provider, **kwargs)
    use_tls = _uses_tls(provider, tls)
    server = _server(app, provider, tls=use_tls, log_level=log_level)
    sock = _bind(host, DEFAULT_PORTS.get(provider, 0) if port is None else port)
    print(
        f"SIMULATOR {provider} {_url(provider, host, sock.getsockname()[1], use_tls)}", flush=True
    )
    server.run(sockets=[sock])


def serve_all(
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    *,
    demo: bool = False,
    log_level: str = "info",
    providers: list[str] | None = None,
    **kwargs: Any,
) -> None:
    """Serve every simulator (one thread each) until interrupted; ``demo`` seeds demo data."""
    ports = {**DEFAULT_PORTS, **(ports or {})}
    running = []
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)  # stop cleanly on SIGTERM too
    try:
        for provider in providers or list(FACTORIES):
            extra = {**(DEMO[provider] if demo else {}), **kwargs}
            sim = start_in_thread(provider, host, ports[provider], log_level=log_level, **extra)
            running.append(sim)
            print(f"SIMULATOR {provider} {sim.url}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for sim in running:
            sim.stop()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an upstream simulator.")
    parser.add_argument("provider", choices=[*FACTORIES, "all"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--config", default="{}", help="JSON: knobs and create_app arguments")
    parser.add_argument("--demo", action="store_true", help="provision demo credentials and users")
    parser.add_argument("--tls", dest="tls", action="store_true", default=None)
    parser.add_argument("--no-tls", dest="tls", action="store_false")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    kwargs = json.loads(args.config)
    if args.provider == "all":
        ports = None
        if args.port is not None:  # a base port: asleep, beddit, usleep, grand_challenge in turn
            ports = {p: args.port + i for i, p in enumerate(FACTORIES)}
        serve_all(args.host, ports, demo=args.demo, log_level=args.log_level, **kwargs)
        return
    if args.demo:
        kwargs = {**DEMO[args.provider], **kwargs}
    run(args.provider, args.host, args.port, tls=args.tls, log_level=args.log_level, **kwargs)


if __name__ == "__main__":
    main()
