"""The real pipeline, end to end: a repository source scanned by real Celery worker processes on PostgreSQL and
Redis, evidence stored, policies evaluated; then a re-scan of the unchanged repository.

Starts its own ``docker-registry`` (127.0.0.1, a temporary directory) and writes N images straight into its
storage (fast: one shared config and layer, a distinct manifest per image); the first ``--signed`` of them get a
cosign signature and two attestations (SLSA provenance, SPDX) by the project's test Sigstore. Creates its own
database on the PostgreSQL of ``DATABASE_URL`` (dropped afterwards) and a private queue on the Redis of
``CELERY_BROKER_URL``, starts ``--workers`` worker processes of ``--concurrency`` each (production settings:
DEBUG off), and prints: wall time, images/s, SQL statements per image (counted in the workers), CPU ms per image
of the workers, PostgreSQL, the registry and Redis, the workers' peak RSS, chunks; then the same images through a
loop of ``cosign verify`` + ``verify-attestation`` (one and two at a time) and the web process's peak RSS under
gunicorn serving the scanned fleet. ``--registry-latency MS`` puts a delaying proxy in front of the registry.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test CELERY_BROKER_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/scan_pipeline.py [--images 500] [--signed 100] [--workers 1] [--concurrency 2]

Needs docker-registry, PostgreSQL and Redis; exits with a message without them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402

IDENTITY = "https://github.com/provenance-bench/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
REPOSITORY = "bench/fleet"


class Storage:
    """Writes blobs, manifests and tags the way docker-registry's filesystem driver lays them out."""

    def __init__(self, root: Path) -> None:
        self.v2 = root / "docker" / "registry" / "v2"

    def blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.v2 / "blobs" / "sha256" / digest[:2] / digest / "data"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return f"sha256:{digest}"

    def _link(self, path: Path, digest: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "link").write_text(digest)

    def layer(self, repository: str, data: bytes) -> dict[str, object]:
        digest = self.blob(data)
        self._link(self.v2 / "repositories" / repository / "_layers" / "sha256" / digest[7:], digest)
        return {"digest": digest, "size": len(data)}

    def manifest(self, repository: str, data: bytes, tag: str | None = None) -> str:
        digest = self.blob(data)
        manifests = self.v2 / "repositories" / repository / "_manifests"
        self._link(manifests / "revisions" / "sha256" / digest[7:], digest)
        if tag is not None:
            self._link(manifests / "tags" / tag / "current", digest)
            self._link(manifests / "tags" / tag / "index" / "sha256" / digest[7:], digest)
        return digest


def seed(storage: Storage, images: int, signed: int) -> None:
    from provenance.core.testsigstore import IN_TOTO_STATEMENT_V01, in_toto_statement
    from provenance.core.types import MediaType

    sigstore = _sigstore()
    layer = storage.layer(REPOSITORY, b"bench layer\n")
    config = storage.layer(REPOSITORY, json.dumps({"architecture": "amd64", "os": "linux"}).encode())
    empty = storage.layer(REPOSITORY, b"{}")

    def manifest(config_ref: dict[str, object], layers: list[dict[str, object]], **extra: object) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_ref},
                           "layers": layers, **extra}).encode()

    def attach(digest: str, suffix: str, signed_layers: list) -> None:  # type: ignore[type-arg]
        descriptors = [{"mediaType": item.media_type, **storage.layer(REPOSITORY, item.payload),
                        "annotations": item.annotations} for item in signed_layers]
        storage.manifest(REPOSITORY, manifest(empty, descriptors), f"sha256-{digest[7:]}{suffix}")

    for number in range(images):
        body = manifest(config, [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
                        annotations={"bench.number": str(number)})
        digest = storage.manifest(REPOSITORY, body, f"img-{number:05d}")
        if number < signed:
            attach(digest, ".sig", [sigstore.cosign_signature_layer(digest, REPOSITORY, identity=IDENTITY,
                                                                    issuer=ISSUER)])
            statements = [("https://slsa.dev/provenance/v1", {"buildDefinition": {"buildType": "https://x.test/b"}}),
                          ("https://spdx.dev/Document", {"spdxVersion": "SPDX-2.3", "packages": []})]
            attach(digest, ".att", [sigstore.cosign_attestation_layer(
                in_toto_statement(REPOSITORY, digest[7:], kind, predicate, statement_type=IN_TOTO_STATEMENT_V01),
                identity=IDENTITY, issuer=ISSUER,
                predicate_type=kind) for kind, predicate in statements])


_SIGSTORE = []


def _sigstore():  # type: ignore[no-untyped-def]
    from provenance.core.testsigstore import TestSigstore

    if not _SIGSTORE:
        _SIGSTORE.append(TestSigstore.create(name="bench-pipeline"))
    return _SIGSTORE[0]


def start_registry(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    binary = shutil.which("docker-registry")
    if binary is None:
        sys.exit("docker-registry not installed: apt-get install docker-registry")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = workdir / "config.yml"
    # As Debian's shipped /etc/docker/registry/config.yml: blob descriptors cached in memory.
    config.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                      f"  cache:\n    blobdescriptor: inmemory\n"
                      f"  filesystem:\n    rootdirectory: {workdir / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
                      f"  secret: {secrets.token_hex(16)}\n")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                return process, host
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    sys.exit("docker-registry did not start")


def _proxy_main(listener: socket.socket, upstream: tuple[str, int], delay: float) -> None:
    """A TCP proxy that holds every chunk of the registry's answers for ``delay`` seconds (requests pass at
    once): a registry one network round trip away. Runs in its own process."""
    import asyncio

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def pump() -> None:
            while data := await reader.read(65536):
                await queue.put((loop.time() + hold, data))
            await queue.put((loop.time() + hold, b""))

        async def deliver() -> None:
            while True:
                when, data = await queue.get()
                if when > loop.time():
                    await asyncio.sleep(when - loop.time())
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(pump(), deliver())
        except OSError:
            writer.close()

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(pipe(client_reader, up_writer, 0.0), pipe(up_reader, client_writer, delay))

    async def main() -> None:
        server = await asyncio.start_server(serve, sock=listener)
        await server.serve_forever()

    asyncio.run(main())


def start_latency_proxy(registry_host: str, milliseconds: float) -> tuple[multiprocessing.Process, str]:
    """Start the delaying proxy in front of the registry; returns it and the address to use instead."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    proxy_port = listener.getsockname()[1]
    address, _, port = registry_host.rpartition(":")
    process = multiprocessing.get_context("fork").Process(
        target=_proxy_main, args=(listener, (address, int(port)), milliseconds / 1000), daemon=True)
    process.start()
    listener.close()
    return process, f"127.0.0.1:{proxy_port}"


def peak_rss_mb(pids: list[int]) -> float:
    """The largest peak resident set (VmHWM) among the processes and their children."""
    peak = 0
    for pid in pids:
        for proc in [pid, *_children(pid)]:
            try:
                for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                continue
    return peak / 1024


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes and their children (those still alive)."""
    total = 0
    for proc in {p for pid in pids for p in (pid, *_children(pid))}:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def pids_named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (PostgreSQL's backends, redis-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in found] + [g for c in found for g in _children(int(c))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--signed", type=int, default=100, help="images with a signature and two attestations")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each worker process")
    parser.add_argument("--chunk", type=int, default=200, help="PROVENANCE_SCAN_CHUNK")
    parser.add_argument("--cosign", type=int, default=40,
                        help="signed images also verified by a loop of cosign verify + verify-attestation (0: none)")
    parser.add_argument("--registry-latency", type=float, default=0, metavar="MS",
                        help="hold the registry's answers MS milliseconds (a proxy in front of it; its CPU counts as "
                             "the registry's): a registry across a network, where latency rather than this "
                             "machine's two cores limits one worker")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not database_url.startswith("postgres") or not broker.startswith("redis"):
        sys.exit("set DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis): this measures the production setup")

    workdir = Path(tempfile.mkdtemp(prefix="provenance-pipeline-"))
    registry, workers, proxy = None, [], None
    # As production runs (DEBUG off: no query log growing in the workers), with the local registry allowed.
    settings = {"PROVENANCE_CELERY_QUEUE": f"bench-{uuid.uuid4().hex[:8]}", "PROVENANCE_DATA_DIR": str(workdir / "var"),
                "PROVENANCE_SIGSTORE_TUF": "0", "SECRET_KEY": secrets.token_urlsafe(40),
                "PROVENANCE_ALLOW_PRIVATE_REGISTRIES": "1", "PROVENANCE_SECURE_COOKIES": "0",
                "PROVENANCE_SCAN_CHUNK": str(args.chunk), "PROVENANCE_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT)}
    os.environ.update(settings)
    try:
        with scratch_database("pipeline", debug=False):
            env = {**os.environ, "PROVENANCE_SQL_COUNT_DIR": str(workdir / "sql")}
            (workdir / "sql").mkdir()
            registry, host = start_registry(workdir)
            component_pids = [registry.pid]
            if args.registry_latency:
                proxy, host = start_latency_proxy(host, args.registry_latency)
                component_pids.append(proxy.pid)
            started = time.perf_counter()
            seed(Storage(workdir / "data"), args.images, args.signed)
            print(f"seeded {args.images} images ({args.signed} signed and attested) in "
                  f"{time.perf_counter() - started:.1f} s")
            try:
                report(args, env, host, workers, workdir, component_pids)
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    try:
                        worker.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        worker.kill()
    finally:
        if proxy is not None:
            proxy.terminate()
        if registry is not None:
            registry.terminate()
        shutil.rmtree(workdir, ignore_errors=True)


def report(args: argparse.Namespace, env: dict[str, str], host: str, workers: list, workdir: Path,  # type: ignore[type-arg]
           registry_pids: list[int]) -> None:  # type: ignore[type-arg]
    from provenance.policies import services as policy_services
    from provenance.sources import services
    from provenance.sources.models import Scan, ScanChunk, Source
    from provenance.trust import services as trust_services

    root = trust_services.register(name="bench", document=_sigstore().trusted_root_json())
    policy_services.save_policy(f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: bench}}
spec:
  images: [{{glob: "{host}/bench/**"}}]
  authorities:
    - keyless: {{url: "https://fulcio.test", identities: [{{issuer: "{ISSUER}", subject: "{IDENTITY}"}}]}}
""")
    source = services.create_source(name="bench", kind=Source.Kind.REPOSITORY, location=f"{host}/{REPOSITORY}",
                                    trust_root=root, is_insecure=True, expected_identity=IDENTITY,
                                    expected_issuer=ISSUER, is_scheduled=False)
    for i in range(args.workers):
        log = (workdir / f"worker-{i}.log").open("wb")
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "provenance", "worker", "--pool", "prefork", "--concurrency",
             str(args.concurrency), "--queues", env["PROVENANCE_CELERY_QUEUE"], "--without-gossip",
             "--without-mingle", "--loglevel", "WARNING", "--hostname", f"bench{i}-{uuid.uuid4().hex[:6]}@localhost"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    time.sleep(4)  # let the workers connect
    print(f"{args.workers} worker process(es) x {args.concurrency}, chunk {args.chunk}, PostgreSQL + Redis\n")
    print(f"{'run':<10} {'images':>7} {'wall s':>8} {'images/s':>9} {'SQL/image':>10} {'chunks':>7} {'state':>6}")
    components = {"worker": lambda: [w.pid for w in workers], "postgres": lambda: pids_named("postgres"),
                  "registry": lambda: registry_pids, "redis": lambda: pids_named("redis-server")}
    cpu_lines = []
    for label in ("scan", "re-scan"):
        before = _sql(workdir)
        cpu_before = {name: cpu_seconds(pids()) for name, pids in components.items()}
        busy_before = machine_busy()
        started = time.perf_counter()
        scan = services.start_scan(source)
        while not Scan.objects.get(pk=scan.pk).is_finished:
            time.sleep(0.2)
        wall = time.perf_counter() - started
        busy_after = machine_busy()
        cpu = {name: cpu_seconds(pids()) - cpu_before[name] for name, pids in components.items()}
        time.sleep(2)  # the last task's count is written after it returns
        scan.refresh_from_db()
        statements = _sql(workdir) - before
        per_image = "  ".join(f"{name} {seconds * 1000 / max(1, scan.total):.1f}" for name, seconds in cpu.items())
        busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
        cpu_lines.append(f"CPU ms per image, {label + ':':<8} {per_image}; machine {busy:.0%} busy "
                         f"({os.cpu_count()} cores)")
        chunks = ScanChunk.objects.filter(scan=scan).count()
        if label == "scan":
            global _scan_rate
            _scan_rate = scan.total / wall
        print(f"{label:<10} {scan.total:>7} {wall:>8.1f} {scan.total / wall:>9.1f} "
              f"{statements / max(1, scan.total):>10.1f} {chunks:>7} {scan.state:>6}"
              + f"  errors={scan.errors} fetched={scan.fetched} unchanged={scan.unchanged}")
    print()
    for line in cpu_lines:
        print(line)
    pids = [w.pid for w in workers]
    print(f"\nworker peak RSS (largest process): {peak_rss_mb(pids):.0f} MB")
    web_rss(env, workdir, scan.total)
    sample = min(args.cosign, args.signed)
    cosign = shutil.which("cosign")
    if sample and cosign is None:
        print("cosign not on PATH: the cosign loop is left out")
    elif sample:
        print(f"\ncosign verify + verify-attestation (slsaprovenance1) on {sample} of the same signed images:")
        first = _scan_rate
        for parallel in (1, 2):
            rate = cosign_loop(cosign, host, workdir, sample, parallel)
            print(f"  {parallel} at a time: {rate:.2f} images/s; the pipeline's full scan: {first:.1f} images/s "
                  f"({first / rate:.1f}x)")
    if os.environ.get("PROVENANCE_BENCH_SQL_SHAPES"):
        for path in workdir.glob("sql-shapes-*.json"):
            for shape, count in json.loads(path.read_text())[:25]:
                print(f"{count:>9}  {shape}")


_scan_rate = 0.0


def web_rss(env: dict[str, str], workdir: Path, images: int) -> None:
    """The web process as production runs it (gunicorn, DEBUG off) on the scanned fleet: a viewer logs in and
    reads the pages and API users read most (fleet pages, filters, coverage, an artifact, a CSV export of the
    fleet); prints the largest gunicorn process's peak RSS."""

    import httpx
    from django.contrib.auth import get_user_model

    from provenance.accounts.roles import Role
    from provenance.accounts.services import set_role
    from provenance.artifacts.models import Artifact

    password = secrets.token_urlsafe(16)
    user = get_user_model().objects.create_user("bench-viewer", password=password)
    set_role(user, Role.VIEWER)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web_env = {k: v for k, v in env.items() if k != "PROVENANCE_SQL_COUNT_DIR"}
    log = (workdir / "web.log").open("wb")
    web = subprocess.Popen([sys.executable, "-m", "gunicorn", "provenance.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "1"], cwd=ROOT, env=web_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit(f"gunicorn did not start: {(workdir / 'web.log').read_text()[-2000:]}")
                time.sleep(0.2)
            client.get("/login/")
            answer = client.post("/login/", data={"username": "bench-viewer", "password": password,
                                                  "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                                 headers={"Referer": f"{base}/login/"})
            if answer.status_code != 302:
                sys.exit(f"bench viewer could not log in: HTTP {answer.status_code}")
            some = Artifact.objects.order_by("pk").values_list("pk", flat=True)[:20]
            pages = ["/", "/?status=verified", "/?sort=-checked_at&signer=release", "/coverage/",
                     "/api/v1/artifacts/", "/api/v1/artifacts/?status=verified", "/compliance/",
                     *(f"/artifacts/{pk}/" for pk in some)]
            started = time.perf_counter()
            for _ in range(3):
                for page in pages:
                    answer = client.get(page)
                    if answer.status_code != 200:
                        sys.exit(f"GET {page}: HTTP {answer.status_code}\n{(workdir / 'web.log').read_text()[-3000:]}")
            with client.stream("GET", "/compliance/export/?format=csv") as export:
                rows = sum(chunk.count(b"\n") for chunk in export.iter_bytes())
            seconds = time.perf_counter() - started
        print(f"web (gunicorn, 1 worker, DEBUG off): {3 * len(pages)} page and API reads and a CSV export of "
              f"{rows - 1} rows ({images} images scanned) in {seconds:.1f} s; peak RSS {peak_rss_mb([web.pid]):.0f} MB")
    finally:
        web.terminate()
        web.wait(timeout=30)


def cosign_loop(cosign: str, host: str, workdir: Path, count: int, parallel: int) -> float:
    """Images/s of `cosign verify` then `cosign verify-attestation` per image, ``parallel`` images at a time,
    offline against the test Sigstore's CA, log and CT keys (as users would with a private Sigstore)."""
    from concurrent.futures import ThreadPoolExecutor

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    sigstore = _sigstore()
    trust = workdir / "cosign-trust"
    trust.mkdir(exist_ok=True)
    intermediate, root = x509.load_pem_x509_certificates(sigstore.chain_pem)
    (trust / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (trust / "intermediate.pem").write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
    (trust / "rekor.pub").write_bytes(sigstore.rekor_public_key_pem)
    (trust / "ctlog.pub").write_bytes(sigstore.ct_public_key_pem)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COSIGN_")}, "HOME": str(trust),
           "SIGSTORE_REKOR_PUBLIC_KEY": str(trust / "rekor.pub"),
           "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(trust / "ctlog.pub")}
    flags = ["--offline", "--allow-insecure-registry", "--ca-roots", str(trust / "root.pem"), "--ca-intermediates",
             str(trust / "intermediate.pem"), "--certificate-oidc-issuer", ISSUER, "--certificate-identity", IDENTITY]

    def verify(number: int) -> None:
        image = f"{host}/{REPOSITORY}:img-{number:05d}"
        for command in (["verify"], ["verify-attestation", "--type", "slsaprovenance1"]):
            done = subprocess.run([cosign, *command, *flags, image], env=env, capture_output=True, timeout=120)
            if done.returncode != 0:
                raise SystemExit(f"cosign {command[0]} failed on {image}: {done.stderr.decode()[-800:]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(verify, range(count)))
    return count / (time.perf_counter() - started)


def _sql(workdir: Path) -> int:
    return sum(int(p.read_text() or 0) for p in (workdir / "sql").iterdir())


if __name__ == "__main__":
    main()
