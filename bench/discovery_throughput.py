"""Discovery throughput: images/s for N images, each with a signature and two attestations, in a local registry,
next to ``cosign verify`` + ``cosign verify-attestation`` per image on a sample, extrapolated.

Starts its own ``docker-registry`` on a free 127.0.0.1 port (in a temporary directory, removed afterwards),
seeds it with the project's OCI client: N images signed (``.sig``) and attested (``.att``: SLSA provenance v1
and SPDX) by the project's test Sigstore; plus a sample of images signed and attested by the real cosign with a
key, offline. Then measures, for all N images:

* discovery only (``provenance.core.discovery.discover``), one image at a time and W images at a time;
* discovery + verification (``provenance.core.verify.verify_evidence``), W images at a time;

and, for the cosign sample, ``cosign verify`` then ``cosign verify-attestation --type slsaprovenance1``
(key-based, ``--insecure-ignore-tlog``) per image, sequentially. Prints medians and ratios.

    .venv/bin/python bench/discovery_throughput.py [--images 1000] [--sample 20] [--workers 4]

Needs ``docker-registry`` and ``cosign`` on PATH (the cosign part is skipped, with a note, without it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance.core.discovery import discover  # noqa: E402
from provenance.core.oci import RegistryClient  # noqa: E402
from provenance.core.testsigstore import TestSigstore, in_toto_statement  # noqa: E402
from provenance.core.trustroot import TrustRoot  # noqa: E402
from provenance.core.types import Digest, IdentityPolicy, MediaType, SignedLayer  # noqa: E402
from provenance.core.verify import verify_evidence  # noqa: E402

IDENTITY = "https://github.com/provenance-bench/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
REPOSITORY = "bench/app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        sys.exit("docker-registry not installed: apt-get install docker-registry")
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {workdir / "data"}
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
""")
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                return process, host
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    sys.exit(f"docker-registry did not start: {(workdir / 'registry.log').read_text()[-2000:]}")


def push_image(client: RegistryClient, number: int) -> Digest:
    layer = f"bench layer {number} {secrets.token_hex(8)}\n".encode()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(layer))]}}).encode()
    client.push_blob(REPOSITORY, layer)
    client.push_blob(REPOSITORY, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(Digest.of(config)),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": str(Digest.of(layer)),
                    "size": len(layer)}],
    }).encode()
    return client.push_manifest(REPOSITORY, f"img-{number:05d}", manifest, MediaType.OCI_MANIFEST)


def attach(client: RegistryClient, digest: Digest, suffix: str, layers: list[SignedLayer]) -> None:
    config = b"{}"
    client.push_blob(REPOSITORY, config)
    descriptors = []
    for layer in layers:
        client.push_blob(REPOSITORY, layer.payload)
        descriptors.append({"mediaType": layer.media_type, "digest": str(layer.digest), "size": len(layer.payload),
                            "annotations": layer.annotations})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(Digest.of(config)),
                   "size": len(config)},
        "layers": descriptors,
    }).encode()
    client.push_manifest(REPOSITORY, f"{digest.tag_prefix}{suffix}", manifest, MediaType.OCI_MANIFEST)


def seed_with_test_sigstore(client: RegistryClient, sigstore: TestSigstore, number: int) -> str:
    digest = push_image(client, number)
    attach(client, digest, ".sig", [sigstore.cosign_signature_layer(str(digest), REPOSITORY, identity=IDENTITY,
                                                                    issuer=ISSUER)])
    statements = [(SLSA_V1, {"buildDefinition": {"buildType": "https://example.test/build"},
                             "runDetails": {"builder": {"id": "https://example.test/builder"}}}),
                  (SPDX, {"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app", "packages": []})]
    attach(client, digest, ".att", [
        sigstore.cosign_attestation_layer(in_toto_statement(REPOSITORY, digest.hex, predicate_type, predicate),
                                          identity=IDENTITY, issuer=ISSUER, predicate_type=predicate_type)
        for predicate_type, predicate in statements
    ])
    return f"img-{number:05d}"


class Cosign:
    def __init__(self, binary: str, home: Path) -> None:
        self.binary, self.home = binary, home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("COSIGN_")}, "HOME": str(home),
                    "TUF_ROOT": str(home / "tuf"), "COSIGN_PASSWORD": "bench"}
        self.run("generate-key-pair")
        (home / "slsa.json").write_text(json.dumps({"buildDefinition": {"buildType": "https://example.test/build"},
                                                    "runDetails": {"builder": {"id": "https://example.test/b"}}}))
        (home / "spdx.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT",
                                                    "name": "app", "dataLicense": "CC0-1.0", "packages": []}))

    def run(self, *args: str) -> float:
        started = time.perf_counter()
        done = subprocess.run([self.binary, *args], cwd=self.home, env=self.env, capture_output=True, text=True,
                              timeout=120)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"cosign {args[0]} failed: {done.stderr[-1500:]}")
        return elapsed

    def seed(self, reference: str) -> None:
        offline = ["--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "--yes"]
        self.run("sign", *offline, reference)
        self.run("attest", *offline, "--predicate", "slsa.json", "--type", "slsaprovenance1", reference)
        self.run("attest", *offline, "--predicate", "spdx.json", "--type", "spdxjson", reference)

    def verify(self, reference: str) -> float:
        flags = ["--key", "cosign.pub", "--insecure-ignore-tlog", "--allow-insecure-registry"]
        return (self.run("verify", *flags, reference)
                + self.run("verify-attestation", *flags, "--type", "slsaprovenance1", reference))


def timed(function, items, workers: int) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    """Run ``function`` over ``items`` on ``workers`` threads; return wall time and per-item latencies."""
    def one(item):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        function(item)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        latencies = list(pool.map(one, items))
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="images to discover (default 1000)")
    parser.add_argument("--sample", type=int, default=20, help="images verified with cosign (default 20)")
    parser.add_argument("--workers", type=int, default=4, help="images discovered at once (default 4)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="provenance-bench-"))
    process, host = start_registry(workdir)
    try:
        run_bench(host, workdir, args)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def run_bench(host: str, workdir: Path, args: argparse.Namespace) -> None:
    print(f"registry: docker-registry at {host}; {args.images} images, each with 1 signature + 2 attestations")
    sigstore = TestSigstore.create(name="provenance-bench")
    trust_root = TrustRoot.from_json(sigstore.trusted_root_json(), name="provenance-bench")
    identity = IdentityPolicy(issuer=ISSUER, identity=IDENTITY)
    client = RegistryClient(host, insecure=True, max_connections=32)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        tags = list(pool.map(lambda n: seed_with_test_sigstore(client, sigstore, n), range(args.images)))
    print(f"seeded {len(tags)} images with the test Sigstore in {time.perf_counter() - started:.1f} s")

    listed: dict[str, frozenset[str]] = {}

    def discover_one(tag: str) -> None:
        found = discover(client, REPOSITORY, tag, listed_tags=listed)
        assert len(found.evidence) == 3 and not found.problems, (tag, found.problems)

    def discover_and_verify(tag: str) -> None:
        found = discover(client, REPOSITORY, tag, listed_tags=listed)
        results = [verify_evidence(e, trust_root=trust_root, identity=identity) for e in found.evidence]
        assert all(r.result.is_verified for r in results), [r.result.reason for r in results]

    discover_one(tags[0])  # warm up connections and the referrers-API probe
    rows = []
    wall, latencies = timed(discover_one, tags, 1)
    rows.append(("discovery by image reference, 1 image at a time", len(tags) / wall, statistics.median(latencies)))
    wall, latencies = timed(discover_one, tags, args.workers)
    rows.append((f"discovery by image reference, {args.workers} at a time", len(tags) / wall,
                 statistics.median(latencies)))
    started = time.perf_counter()
    listed[REPOSITORY] = frozenset(client.list_tags(REPOSITORY))  # what a repository scan does first
    listing = time.perf_counter() - started
    wall, latencies = timed(discover_one, tags, args.workers)
    rows.append((f"discovery in a repository scan (tag listing), {args.workers} at a time",
                 len(tags) / (wall + listing), statistics.median(latencies)))
    wall, latencies = timed(discover_and_verify, tags, args.workers)
    rows.append((f"  + verification of all 3 pieces, {args.workers} at a time", len(tags) / (wall + listing),
                 statistics.median(latencies)))

    binary = shutil.which("cosign")
    cosign_rate = None
    if binary is None:
        print("cosign not installed: the cosign comparison is skipped (run ../shared/tools/install-cosign)")
    else:
        cosign = Cosign(binary, workdir / "cosign")
        sample = []
        for number in range(args.sample):
            digest = push_image(client, 100_000 + number)
            reference = f"{host}/{REPOSITORY}@{digest}"
            cosign.seed(reference)
            sample.append(reference)
        cosign.verify(sample[0])  # warm up
        latencies = [cosign.verify(reference) for reference in sample]
        median = statistics.median(latencies)
        cosign_rate = 1 / median
        rows.append((f"cosign verify + verify-attestation (sample of {len(sample)}, 1 at a time)", cosign_rate,
                     median))
        # Our discovery of the cosign-written sample, for the same images.
        wall, ours = timed(lambda ref: discover(client, REPOSITORY, ref.rsplit("@", 1)[1]), sample, 1)
        rows.append((f"discovery of the same {len(sample)} cosign-signed images, 1 at a time", len(sample) / wall,
                     statistics.median(ours)))
    client.close()

    print()
    print(f"{'measurement':<72} {'images/s':>10} {'median ms/image':>16}")
    for name, rate, median in rows:
        print(f"{name:<72} {rate:>10.1f} {median * 1000:>16.1f}")
    if cosign_rate is not None:
        print()
        print(f"extrapolated cosign time for {len(tags)} images, 1 at a time: {len(tags) / cosign_rate:.0f} s")
        for name, rate, _ in rows[:4]:
            print(f"ratio ({name.strip()}) / cosign: {rate / cosign_rate:.1f}x")


if __name__ == "__main__":
    main()
