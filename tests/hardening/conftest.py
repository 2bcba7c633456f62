"""A hostile registry on loopback: the scripted server of tests/plugins/registry.py, with helpers to serve an
image, its cosign evidence and whatever a hostile registry sends instead; and the measures the tests assert
(time, peak memory of this process's Python allocations)."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from provenance.core.testsigstore import TestSigstore
from provenance.core.types import Digest, MediaType, SignedLayer
from provenance.sources import services
from provenance.sources.models import Scan, Source
from tests.factories import make_sigstore, run_scan_now, trust_root_for
from tests.plugins.registry import SampleImage, Scripted, ScriptedServer, make_image

IDENTITY = "https://github.com/example/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
JSON = {"Content-Type": "application/json"}


@dataclass
class Measure:
    seconds: float = 0.0
    peak_bytes: int = 0


@contextmanager
def measured() -> Iterator[Measure]:
    """Wall time and the peak of Python allocations (tracemalloc) while the block runs."""
    result = Measure()
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield result
    finally:
        result.seconds = time.monotonic() - started
        result.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def report(attack: str, limit: str, cost: Measure, stored: str) -> None:
    """One row of the closing table (``pytest -s tests/hardening | grep HARDENING``)."""
    mib = cost.peak_bytes / (1024 * 1024)
    print(f"HARDENING | {attack} | {limit} | {cost.seconds:.2f} s | {mib:.1f} MiB | {stored}")


@dataclass
class Hostile:
    """Serves one repository ``app`` from a scripted server: images, blobs, cosign tags."""

    server: ScriptedServer
    sigstore: TestSigstore
    repository: str = "app"
    tags: list[str] = field(default_factory=list)

    def manifest(self, body: bytes, *, tag: str | None = None, media_type: str = MediaType.OCI_MANIFEST) -> Digest:
        digest = Digest.of(body)
        headers = {"Content-Type": media_type, "Docker-Content-Digest": str(digest)}
        for reference in ([tag] if tag else []) + [str(digest)]:
            self.server.add("HEAD", f"/v2/{self.repository}/manifests/{reference}",
                            Scripted(200, b"", headers))
            self.server.add("GET", f"/v2/{self.repository}/manifests/{reference}", Scripted(200, body, headers))
        if tag:
            self.tags.append(tag)
        return digest

    def blob(self, data: bytes) -> Digest:
        digest = Digest.of(data)
        self.server.add("GET", f"/v2/{self.repository}/blobs/{digest}", Scripted(200, data))
        return digest

    def image(self, tag: str) -> tuple[SampleImage, Digest]:
        image = make_image(tag)
        return image, self.manifest(image.manifest, tag=tag)

    def signature(self, image: Digest, *, extra: list[SignedLayer] = ()) -> SignedLayer:  # type: ignore[assignment]
        """A valid keyless cosign signature of ``image``, served as its .sig tag (with ``extra`` layers after it)."""
        good = self.sigstore.cosign_signature_layer(str(image), f"{self.server.host}/{self.repository}",
                                                   identity=IDENTITY, issuer=ISSUER)
        self.evidence(image, ".sig", [good, *extra])
        return good

    def evidence(self, image: Digest, suffix: str, layers: list[SignedLayer]) -> Digest:
        config = b"{}"
        self.blob(config)
        descriptors = []
        for layer in layers:
            digest = self.blob(layer.payload)
            entry: dict[str, object] = {"mediaType": layer.media_type, "digest": str(digest),
                                        "size": len(layer.payload)}
            if layer.annotations:
                entry["annotations"] = dict(layer.annotations)
            descriptors.append(entry)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": str(Digest.of(config)), "size": len(config)},
                               "layers": descriptors}).encode()
        return self.manifest(manifest, tag=f"{image.tag_prefix}{suffix}")

    def list_tags(self) -> None:
        body = json.dumps({"name": self.repository, "tags": self.tags}).encode()
        self.server.add("GET", f"/v2/{self.repository}/tags/list", Scripted(200, body, JSON))

    def source(self, name: str = "hostile", *, kind: str = Source.Kind.REPOSITORY, location: str = "") -> Source:
        return services.create_source(
            name=name, kind=kind, location=location or f"{self.server.host}/{self.repository}", is_insecure=True,
            trust_root=trust_root_for(self.sigstore), expected_identity=IDENTITY, expected_issuer=ISSUER)


@pytest.fixture
def hostile(fake_registry: ScriptedServer) -> Hostile:
    return Hostile(fake_registry, make_sigstore("hardening"))


def scan(source: Source) -> Scan:
    return run_scan_now(source)


def problem_codes(scan_row: Scan) -> dict[str, str]:
    return {p["reference"]: p["code"] for p in scan_row.problems}
