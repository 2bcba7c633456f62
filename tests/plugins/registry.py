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
import os
import secrets
import shutil
import socket
import ssl
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
    ca_pem: str | None = None  # set when the registry serves TLS with a certificate from a private CA

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_pem else 'http'}://{self.host}"

    def client(self, **kwargs: object) -> RegistryClient:
        """A client for this registry (plain HTTP, or TLS trusting its private CA); pass ``username``/``password``
        for the auth variants."""
        if self.ca_pem:
            kwargs.setdefault("ca_certificates", self.ca_pem)
        else:
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


def _private_ca_certificate(workdir: Path) -> tuple[str, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert path, key path)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provenance-test-private-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "tls.crt", workdir / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_path, key_path


def _registry_config(port: int, root: Path, auth: str, tls: str = "") -> str:
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
{tls}{auth}"""


def start_registry(
    workdir: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    token_service: TokenService | None = None,
    tls: bool = False,
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
    ca_pem = None
    tls_config = ""
    if tls:
        ca_pem, cert_path, key_path = _private_ca_certificate(workdir)
        tls_config = f"  tls:\n    certificate: {cert_path}\n    key: {key_path}\n"
    last_error = ""
    for _ in range(3):  # the port may be taken between choosing and binding it
        port = free_port()
        config = workdir / "config.yml"
        config.write_text(_registry_config(port, workdir, auth, tls_config))
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
            ca_pem=ca_pem,
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
    verify: bool | ssl.SSLContext = ssl.create_default_context(cadata=server.ca_pem) if server.ca_pem else True
    with httpx.Client(timeout=1.0, verify=verify) as http:
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
    delay: float = 0.0  # seconds to wait before answering (a registry that hangs)


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
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append(RecordedRequest(self.command, self.path, dict(self.headers.items()), body))
                answer = owner._next(self.command, urlsplit(self.path).path)
                if answer.delay:
                    time.sleep(answer.delay)
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


@pytest.fixture(scope="session")
def tls_registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    """A real registry serving HTTPS with a certificate from a private CA (``.ca_pem``)."""
    return registry_factory(tls=True)


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


@dataclass
class CosignCli:
    """The real cosign binary, offline: key-based, no transparency log, plain-HTTP registries, a private HOME."""

    binary: str
    home: Path

    @property
    def public_key(self) -> bytes:
        return (self.home / "cosign.pub").read_bytes()

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COSIGN_")},
            "HOME": str(self.home),
            "TUF_ROOT": str(self.home / "tuf"),
            "COSIGN_PASSWORD": "test-password",
            **(env or {}),
        }
        done = subprocess.run(
            [self.binary, *args], cwd=self.home, env=environ, capture_output=True, text=True, timeout=120
        )
        if check:
            assert done.returncode == 0, f"cosign {' '.join(args)} failed:\n{done.stderr[-3000:]}"
        return done

    def offline(self) -> list[str]:
        return ["--key", str(self.home / "cosign.key"), "--tlog-upload=false", "--allow-insecure-registry", "--yes"]

    def sign(self, reference: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.run("sign", *self.offline(), *extra, reference, env=env)

    def attest(self, reference: str, predicate: dict[str, object], predicate_type: str, *extra: str,
               env: dict[str, str] | None = None) -> None:
        path = self.home / f"predicate-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(predicate))
        self.run("attest", *self.offline(), "--predicate", str(path), "--type", predicate_type, *extra, reference,
                 env=env)

    def attach_sbom(self, reference: str, sbom: bytes, sbom_type: str = "spdx") -> None:
        path = self.home / f"sbom-{uuid.uuid4().hex[:8]}.json"
        path.write_bytes(sbom)
        self.run("attach", "sbom", "--sbom", str(path), "--type", sbom_type, "--allow-insecure-registry", reference)


@pytest.fixture(scope="session")
def cosign_cli(tmp_path_factory: pytest.TempPathFactory) -> CosignCli:
    """The real cosign (skips, or fails on CI, when absent) with a fresh key pair for the session."""
    binary = require_binary("cosign", "run ../shared/tools/install-cosign")
    cli = CosignCli(binary, tmp_path_factory.mktemp("cosign"))
    cli.run("generate-key-pair")
    return cli


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


@dataclass(frozen=True)
class Attached:
    """A referrer pushed by :func:`push_referrer`: its manifest digest and bytes."""

    digest: Digest
    manifest: bytes


def push_referrer(
    client: RegistryClient,
    repository: str,
    subject: Digest,
    *,
    subject_size: int,
    artifact_type: str,
    layers: list[tuple[str, bytes, dict[str, str]]],
    annotations: dict[str, str] | None = None,
    subject_media_type: str = MediaType.OCI_MANIFEST,
    index_artifact_type: str | None = None,
    config_media_type: str = MediaType.OCI_EMPTY,
) -> Attached:
    """Attach an OCI 1.1 referrer to ``subject`` the way cosign 2 and oras do on a registry without the API.

    Pushes the layers, the referrer manifest by digest, and adds it to the ``sha256-<hex>`` fallback index.
    ``index_artifact_type`` is what the fallback index entry claims (default: the config media type, as cosign
    writes it, which is why discovery must not trust it).
    """
    config = b"{}"
    client.push_blob(repository, config)
    descriptors = []
    for media_type, data, layer_annotations in layers:
        client.push_blob(repository, data)
        entry: dict[str, object] = {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}
        if layer_annotations:
            entry["annotations"] = layer_annotations
        descriptors.append(entry)
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": config_media_type, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": descriptors,
        "subject": {"mediaType": subject_media_type, "digest": str(subject), "size": subject_size},
    }
    if annotations:
        manifest["annotations"] = annotations
    data = json.dumps(manifest).encode()
    digest = client.push_manifest(repository, Digest.of(data), data, MediaType.OCI_MANIFEST)
    add_to_fallback_index(client, repository, subject, {
        "mediaType": MediaType.OCI_MANIFEST, "digest": str(digest), "size": len(data),
        "artifactType": index_artifact_type if index_artifact_type is not None else config_media_type,
    })
    return Attached(digest, data)


def add_to_fallback_index(client: RegistryClient, repository: str, subject: Digest, entry: dict[str, object]) -> Digest:
    """Add ``entry`` to the referrers tag schema index of ``subject`` (creating it); returns the index digest."""
    from provenance.core.errors import NotFoundError

    try:
        index = json.loads(client.get_manifest(repository, subject.tag_prefix).data)
    except NotFoundError:
        index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": []}
    index["manifests"] = [m for m in index["manifests"] if m.get("digest") != entry["digest"]] + [entry]
    data = json.dumps(index).encode()
    return client.push_manifest(repository, subject.tag_prefix, data, MediaType.OCI_INDEX)


def unique_repository(prefix: str = "test") -> str:
    """A repository name no other test uses, for sharing the session registry."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


__all__ = [
    "Attached",
    "CosignCli",
    "RecordedRequest",
    "RegistryServer",
    "SampleImage",
    "Scripted",
    "ScriptedServer",
    "TokenService",
    "add_to_fallback_index",
    "bcrypt_hash",
    "free_port",
    "make_image",
    "make_index",
    "push_image",
    "push_referrer",
    "start_registry",
    "start_token_service",
    "unique_repository",
]
