"""Real and scripted registries for tests.

* ``registry``: a real CNCF distribution (Debian ``docker-registry``), anonymous, one per session.
* ``basic_auth_registry``: the same with htpasswd (bcrypt) authentication.
* ``token_auth_registry``: the same with bearer-token authentication, tokens issued by a small JWT service
  started here (ES256, signed with a throwaway certificate the registry is configured to trust).
* ``registry_factory``: start more registries with these options.
* ``fake_registry``: a scripted HTTP server for behaviour a real registry will not show on demand (wrong bytes,
  5xx, Retry-After, oversized bodies, pagination); ``silent_server`` accepts connections and never answers;
  ``closed_port`` is an address nobody listens on.

Everything binds 127.0.0.1 only. A missing binary skips (or fails under ``PROVENANCE_REQUIRE_ALL=1``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from provenance.core.oci import RegistryClient
from provenance.core.types import Digest, MediaType
from tests.support import missing_component, require_binary

REGISTRY_BINARY = "docker-registry"
REGISTRY_HINT = "apt-get install docker-registry"
_STARTUP_TIMEOUT = 15.0


# --------------------------------------------------------------------------------------------------------------
# A real registry process


@dataclass
class RegistryServer:
    """A running ``docker-registry`` process on 127.0.0.1."""

    host: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    username: str | None = None
    password: str | None = None
    token_service: TokenService | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def client(self, **kwargs: object) -> RegistryClient:
        """A plain-HTTP client for this registry; pass ``username``/``password`` for the auth variants."""
        kwargs.setdefault("insecure", True)
        return RegistryClient(self.host, **kwargs)  # type: ignore[arg-type]

    def authed_client(self, **kwargs: object) -> RegistryClient:
        """A client with this registry's test credentials."""
        return self.client(username=self.username, password=self.password, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _registry_config(port: int, root: Path, auth: str) -> str:
    # http.secret only silences a warning about load-balanced upload sessions.
    return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root / "data"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
{auth}"""


def start_registry(
    workdir: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    token_service: TokenService | None = None,
) -> RegistryServer:
    """Start ``docker-registry serve`` in ``workdir`` and wait until ``/v2/`` answers.

    Skips (or fails under PROVENANCE_REQUIRE_ALL=1) when the binary is missing; fails when it does not start.
    """
    binary = require_binary(REGISTRY_BINARY, REGISTRY_HINT)
    workdir.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd is not None:
        htpasswd_path = workdir / "htpasswd"
        htpasswd_path.write_text(f"{htpasswd[0]}:{bcrypt_hash(htpasswd[1])}\n")
        auth = f"auth:\n  htpasswd:\n    realm: provenance-test\n    path: {htpasswd_path}\n"
    elif token_service is not None:
        auth = (
            "auth:\n  token:\n"
            f"    realm: {token_service.url}/token\n"
            f"    service: {token_service.service}\n"
            f"    issuer: {token_service.issuer}\n"
            f"    rootcertbundle: {token_service.cert_path}\n"
        )
    last_error = ""
    for _ in range(3):  # the port may be taken between choosing and binding it
        port = free_port()
        config = workdir / "config.yml"
        config.write_text(_registry_config(port, workdir, auth))
        log_path = workdir / f"registry-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = RegistryServer(
            host=f"127.0.0.1:{port}",
            root=workdir,
            process=process,
            log_path=log_path,
            username=htpasswd[0] if htpasswd else None,
            password=htpasswd[1] if htpasswd else None,
            token_service=token_service,
        )
        if _wait_until_up(server):
            return server
        server.stop()
        last_error = server.log()[-2000:]
        if "address already in use" not in last_error:
            break
    pytest.fail(f"docker-registry did not start:\n{last_error}", pytrace=False)


def _wait_until_up(server: RegistryServer) -> bool:
    deadline = time.monotonic() + _STARTUP_TIMEOUT
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return False
            try:
                # 401 is "up" for the authenticated variants.
                if http.get(f"{server.url}/v2/").status_code in (200, 401):
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    return False


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for htpasswd: the ``bcrypt`` package, else libc crypt, else ``htpasswd -B``; or skip."""
    # Cost 4, the minimum: distribution checks the hash on every request, and these are throwaway passwords.
    try:
        import bcrypt  # type: ignore[import-not-found]

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # stdlib until 3.13; Debian's libxcrypt supports bcrypt

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))  # noqa: S324 (bcrypt, cost 4)
        if hashed and hashed.startswith("$2"):
            return hashed
    except (ImportError, AttributeError, OSError):
        pass
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        out = subprocess.run([htpasswd, "-nbBC", "4", "user", password], capture_output=True, check=True, text=True)
        return out.stdout.strip().split(":", 1)[1]
    missing_component("no bcrypt implementation: pip install bcrypt, or apt-get install apache2-utils")
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------------------
# A token service for the bearer-auth registry


@dataclass
class TokenService:
    """Issues registry JWTs (ES256, ``x5c`` header) at ``GET /token``; checks basic credentials if set."""

    url: str
    cert_path: Path
    service: str
    issuer: str
    username: str
    password: str
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    expires_in: int = 300
    server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_token_service(workdir: Path, *, username: str, password: str) -> TokenService:
    """Start a token service on 127.0.0.1 with a fresh P-256 key and self-signed certificate."""
    jwt = pytest.importorskip("jwt")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provenance-test-token-issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    workdir.mkdir(parents=True, exist_ok=True)
    cert_path = workdir / "token-root.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    service = TokenService(
        url="",
        cert_path=cert_path,
        service="provenance-test-registry",
        issuer="provenance-test-issuer",
        username=username,
        password=password,
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            service.requests.append(query)
            if parts.path != "/token":
                self._send(404, {"error": "not found"})
                return
            expected = "Basic " + base64.b64encode(f"{service.username}:{service.password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                return
            access = []
            for scope in query.get("scope", []):
                kind, _, rest = scope.partition(":")
                repo, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": repo, "actions": [a for a in actions.split(",") if a]})
            issued = int(time.time())
            claims = {
                "iss": service.issuer,
                "sub": service.username,
                "aud": service.service,
                "exp": issued + service.expires_in,
                "nbf": issued - 10,
                "iat": issued,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
            token = jwt.encode(claims, key, algorithm="ES256", headers={"x5c": x5c})
            self._send(200, {"token": token, "expires_in": service.expires_in})

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="token-service", daemon=True
    ).start()
    service.server = server
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    return service


# --------------------------------------------------------------------------------------------------------------
# A scripted HTTP server


@dataclass
class Scripted:
    """One canned answer. ``stream`` sends the body without Content-Length (read until close)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    declared_length: int | None = None  # send this Content-Length instead of the real one (then close)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 answering from per-route scripts.

    ``add(method, path, *answers)`` queues answers for a path (query string ignored); each request takes the
    next one and the last one repeats. Unscripted paths answer 404. ``requests`` records what arrived.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Scripted]] = {}
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append(RecordedRequest(self.command, self.path, dict(self.headers.items()), body))
                answer = owner._next(self.command, urlsplit(self.path).path)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.stream:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                elif answer.declared_length is not None:
                    self.send_header("Content-Length", str(answer.declared_length))
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-registry", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def add(self, method: str, path: str, *answers: Scripted) -> None:
        with self._lock:
            self.routes.setdefault((method.upper(), path), []).extend(answers)

    def _next(self, method: str, path: str) -> Scripted:
        with self._lock:
            queue = self.routes.get((method, path))
            if not queue:
                body = b'{"errors":[{"code":"NAME_UNKNOWN","message":"not scripted"}]}'
                return Scripted(404, body, {"Content-Type": "application/json"})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def client(self, **kwargs: object) -> RegistryClient:
        """A client for this server; fast retries unless overridden."""
        kwargs.setdefault("insecure", True)
        kwargs.setdefault("backoff", 0.01)
        kwargs.setdefault("timeout", 2.0)
        return RegistryClient(self.host, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RegistryServer]]:
    """Start extra registries: ``registry_factory(htpasswd=(user, password))`` or ``token_service=...``.

    Every registry started is stopped at the end of the session.
    """
    started: list[RegistryServer] = []

    def start(**kwargs: object) -> RegistryServer:
        server = start_registry(tmp_path_factory.mktemp("registry"), **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    """An anonymous real registry (distribution 2.8) for the session. Use unique repository names per test."""
    return registry_factory()


@pytest.fixture(scope="session")
def basic_auth_registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    """A real registry requiring HTTP Basic auth (htpasswd, bcrypt); credentials on ``.username/.password``."""
    return registry_factory(htpasswd=("provenance", secrets.token_urlsafe(12)))


@pytest.fixture(scope="session")
def token_auth_registry(
    registry_factory: Callable[..., RegistryServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A real registry requiring bearer tokens from a local token service (``.token_service``)."""
    username, password = "provenance", secrets.token_urlsafe(12)
    service = start_token_service(tmp_path_factory.mktemp("token"), username=username, password=password)
    try:
        server = registry_factory(token_service=service)
        server.username, server.password = username, password
        yield server
    finally:
        service.stop()


@pytest.fixture
def fake_registry() -> Iterator[ScriptedServer]:
    """A scripted HTTP server; script answers with ``fake_registry.add(method, path, Scripted(...))``."""
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a server that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)  # keep it open, say nothing
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, name="silent-server", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.fixture
def closed_port() -> str:
    """``127.0.0.1:PORT`` where nothing listens (connections are refused)."""
    return f"127.0.0.1:{free_port()}"


@dataclass(frozen=True)
class SampleImage:
    """A tiny single-layer image: config, layer and manifest bytes."""

    config: bytes
    layer: bytes
    manifest: bytes
    media_type: str = MediaType.OCI_MANIFEST

    @property
    def digest(self) -> Digest:
        return Digest.of(self.manifest)

    def descriptor(self, **platform: str) -> dict[str, object]:
        """This image's descriptor for an index entry."""
        entry: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": len(self.manifest),
        }
        if platform:
            entry["platform"] = platform
        return entry


def make_image(seed: str = "", *, media_type: str = MediaType.OCI_MANIFEST) -> SampleImage:
    """Build a distinct tiny image (OCI by default, or Docker v2 with ``media_type``)."""
    seed = seed or uuid.uuid4().hex
    docker = media_type == MediaType.DOCKER_MANIFEST
    layer = f"layer {seed}\n".encode()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(layer))]},
            "config": {"Labels": {"seed": seed}},
        },
        sort_keys=True,
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json"
            if docker
            else "application/vnd.oci.image.config.v1+json",
            "digest": str(Digest.of(config)),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar"
                if docker
                else "application/vnd.oci.image.layer.v1.tar",
                "digest": str(Digest.of(layer)),
                "size": len(layer),
            }
        ],
    }
    return SampleImage(config, layer, json.dumps(manifest).encode(), media_type)


def make_index(*entries: tuple[SampleImage, str]) -> bytes:
    """An OCI index over ``(image, "os/arch")`` pairs."""
    manifests = []
    for image, platform in entries:
        os_name, _, arch = platform.partition("/")
        manifests.append(image.descriptor(os=os_name, architecture=arch))
    return json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": manifests}).encode()


def push_image(client: RegistryClient, repository: str, image: SampleImage, tag: str | Digest | None = None) -> Digest:
    """Push an image's blobs and manifest (under ``tag``, or by digest); return the manifest digest."""
    client.push_blob(repository, image.config)
    client.push_blob(repository, image.layer)
    return client.push_manifest(repository, tag or image.digest, image.manifest, image.media_type)


def unique_repository(prefix: str = "test") -> str:
    """A repository name no other test uses, for sharing the session registry."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


__all__ = [
    "RecordedRequest",
    "RegistryServer",
    "SampleImage",
    "Scripted",
    "ScriptedServer",
    "TokenService",
    "bcrypt_hash",
    "free_port",
    "make_image",
    "make_index",
    "push_image",
    "start_registry",
    "start_token_service",
    "unique_repository",
]
