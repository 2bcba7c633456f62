"""Budgets against a hostile registry on loopback: each attack hits a named limit, in bounded time and memory,
with the reason stored and the valid evidence kept. Each test prints a line of the report's table
(``pytest -s tests/hardening/test_budgets.py | grep HARDENING``)."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from provenance.core.errors import LimitExceededError
from provenance.core.types import Digest, MediaType, SignedLayer
from provenance.sources.models import Scan
from tests.hardening.conftest import JSON, Hostile, measured, problem_codes, report, scan
from tests.plugins.registry import Scripted

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


def _signed(hostile: Hostile, tag: str = "v1") -> Digest:
    _, digest = hostile.image(tag)
    hostile.signature(digest)
    return digest


def _verified(row: Scan, digest: Digest) -> bool:
    return row.source.artifacts.get(digest=str(digest)).status == "verified"


def test_endless_tag_pagination_stops_at_the_page_limit(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_PAGES = 20
    digest = _signed(hostile)
    page = json.dumps({"name": "app", "tags": ["v1"] * 500}).encode()
    hostile.server.add("GET", "/v2/app/tags/list",
                       Scripted(200, page, {**JSON, "Link": '</v2/app/tags/list?n=500&last=x>; rel="next"'}))
    with measured() as cost:
        row = scan(hostile.source())
    pages = sum(r.path.startswith("/v2/app/tags/list") for r in hostile.server.requests)
    assert pages == 20
    assert problem_codes(row) == {"tags of app": "limit_exceeded"}
    assert "PROVENANCE_MAX_PAGES" in row.problems[0]["message"] and "PROVENANCE_MAX_PAGES" in row.error
    assert row.total == 1 and _verified(row, digest)
    assert cost.seconds < 10 and cost.peak_bytes < 64 * MiB
    report("endless tag pagination", "PROVENANCE_MAX_PAGES=20", cost,
           "problem limit_exceeded; the listed tag verified")


def test_a_huge_tag_list_is_cut_at_the_tag_limit_and_marks_nothing_gone(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_TAGS = 100
    digest = _signed(hostile)
    other = _signed(hostile, "v2")
    hostile.list_tags()
    source = hostile.source()
    assert _verified(scan(source), other)
    tags = ["v1", *(f"junk-{i}" for i in range(200_000))]  # ~2.6 MB in one page
    hostile.server.routes[("GET", "/v2/app/tags/list")] = [Scripted(200, json.dumps({"tags": tags}).encode(), JSON)]
    with measured() as cost:
        row = scan(source)
    assert problem_codes(row)["tags of app"] == "limit_exceeded"
    assert "PROVENANCE_MAX_TAGS" in row.problems[0]["message"]
    assert row.total == 100 and _verified(row, digest)
    # v2 was not in the part that was read: a cut-off listing proves nothing about it.
    assert source.artifacts.get(digest=str(other)).tags.filter(name="v2").exists()
    assert _verified(row, other)
    assert cost.seconds < 20 and cost.peak_bytes < 128 * MiB
    report("200,000 tags in one page", "PROVENANCE_MAX_TAGS=100", cost,
           "problem limit_exceeded; 100 targets; no tag marked gone")


def test_endless_referrers_stop_at_the_referrer_limit(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_REFERRERS = 10
    digest = _signed(hostile)
    hostile.list_tags()
    entries = [{"mediaType": MediaType.OCI_MANIFEST, "digest": str(Digest.of(str(i).encode())), "size": 2}
               for i in range(100)]
    hostile.server.add("GET", f"/v2/app/referrers/{digest}", Scripted(
        200, json.dumps({"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": entries}).encode(),
        {"Content-Type": MediaType.OCI_INDEX, "Link": f'</v2/app/referrers/{digest}?page=n>; rel="next"'}))
    with measured() as cost:
        row = scan(hostile.source())
    api_pages = sum("/referrers/" in r.path for r in hostile.server.requests)
    referrer_gets = sum(r.path.startswith("/v2/app/manifests/sha256:") and r.path != f"/v2/app/manifests/{digest}"
                        and r.method == "GET" for r in hostile.server.requests)
    assert api_pages == 1 and referrer_gets <= 10 + 2  # the referrers, the .sig manifest, the image
    codes = [p["code"] for p in row.problems]
    assert "too_many_referrers" in codes
    assert any("PROVENANCE_MAX_REFERRERS" in p["message"] for p in row.problems)
    assert _verified(row, digest)
    assert cost.seconds < 10
    report("endless referrers (100 per page, next forever)", "PROVENANCE_MAX_REFERRERS=10", cost,
           "problem too_many_referrers; signature verified")


def test_one_blob_in_many_sbom_layers_is_fetched_once_and_layers_are_capped(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_LAYERS = 16
    digest = _signed(hostile)
    blob = b'{"spdxVersion":"SPDX-2.3","packages":[' + b'{"name":"x"},' * (2 * MiB // 13) + b'{"name":"y"}]}'
    sbom = SignedLayer("text/spdx+json", blob, {})
    hostile.evidence(digest, ".sbom", [sbom] * 64)
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    fetched = sum(r.path == f"/v2/app/blobs/{Digest.of(blob)}" for r in hostile.server.requests)
    assert fetched == 1
    assert "too_many_layers" in [p["code"] for p in row.problems]
    assert any("PROVENANCE_MAX_LAYERS" in p["message"] for p in row.problems)
    assert _verified(row, digest)
    assert cost.seconds < 20
    report("one 2 MiB blob named by 64 .sbom layers", "PROVENANCE_MAX_LAYERS=16; fetched once", cost,
           "problem too_many_layers; 1 fetch of the blob; signature verified")


def test_bytes_per_image_are_capped_and_what_was_verified_is_kept(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_IMAGE_BYTES = 3 * MiB
    digest = _signed(hostile)
    layers = [SignedLayer("text/spdx+json", bytes([i]) * MiB, {}) for i in range(20)]
    hostile.evidence(digest, ".sbom", layers)
    for layer in layers:  # the SBOM blobs come slowly: the signature is read first
        hostile.server.routes[("GET", f"/v2/app/blobs/{Digest.of(layer.payload)}")] = [
            Scripted(200, layer.payload, delay=0.05)]
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    artifact = row.source.artifacts.get(digest=str(digest))
    cut = artifact.evidence.filter(kind="sbom", outcome="error")
    assert artifact.status == "verified"
    assert cut.count() >= 17
    assert all(e.checks[0]["code"] == "limit_exceeded" and "PROVENANCE_MAX_IMAGE_BYTES" in e.checks[0]["message"]
               for e in cut)
    fetched = sum(r.path.startswith("/v2/app/blobs/") for r in hostile.server.requests)
    assert fetched <= 6  # config, signature payload, at most three SBOMs and the one that crossed the line
    assert cost.seconds < 20 and cost.peak_bytes < 64 * MiB
    report("20 distinct 1 MiB .sbom layers", "PROVENANCE_MAX_IMAGE_BYTES=3 MiB", cost,
           f"{cut.count()} SBOMs stored as error limit_exceeded; signature verified")


def test_bytes_per_scan_are_capped(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_SCAN_BYTES = 2 * MiB
    settings.PROVENANCE_SCAN_CONCURRENCY = 1
    digests = []
    for tag in ("a", "b", "c"):
        digest = _signed(hostile, tag)
        hostile.evidence(digest, ".sbom", [SignedLayer("text/spdx+json", tag.encode() * MiB, {})])
        digests.append(digest)
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    messages = json.dumps(row.problems) + json.dumps(
        [e.checks for a in row.source.artifacts.all() for e in a.evidence.all()])
    assert "PROVENANCE_MAX_SCAN_BYTES" in messages
    assert row.source.artifacts.filter(status="verified").exists()
    assert not row.source.artifacts.exclude(status__in=["verified", "error"]).exists()
    assert cost.seconds < 20
    report("3 images with 1 MiB each, scan budget 2 MiB", "PROVENANCE_MAX_SCAN_BYTES=2 MiB", cost,
           "later images stopped with limit_exceeded; first verified")


@pytest.fixture
def trickle() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a slow-loris server: any request gets headers, then one body byte every 0.2 s."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: text/plain\r\n\r\n")
                while not stop.is_set():
                    conn.sendall(b"x")
                    time.sleep(0.2)
            except OSError:
                return

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    listener.close()


def test_a_slow_loris_registry_is_cut_off_by_the_request_limit(trickle: str) -> None:
    from provenance.core.oci import RegistryClient

    with RegistryClient(trickle, insecure=True, timeout=5, max_request_seconds=1.5) as client, \
            measured() as cost, pytest.raises(LimitExceededError) as err:
        client.get_blob("app", Digest.of(b"x"))
    assert err.value.limit == "max_request_seconds"
    assert 1.4 < cost.seconds < 3
    report("slow-loris blob (1 byte / 0.2 s, under the read timeout)", "max_request_seconds=1.5", cost,
           "LimitExceededError")


def test_a_slow_loris_blob_store_costs_the_scan_a_bounded_time(hostile: Hostile, trickle: str, settings) -> None:
    settings.PROVENANCE_MAX_REQUEST_SECONDS = 2
    settings.PROVENANCE_REDIRECT_HOSTS = ["127.0.0.1"]
    digest = _signed(hostile)
    slow = SignedLayer("text/spdx+json", b'{"spdxVersion":"SPDX-2.3"}', {})
    hostile.evidence(digest, ".sbom", [slow])
    hostile.server.routes[("GET", f"/v2/app/blobs/{Digest.of(slow.payload)}")] = [
        Scripted(307, b"", {"Location": f"http://{trickle}/bucket/blob"})]
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    artifact = row.source.artifacts.get(digest=str(digest))
    sbom = artifact.evidence.get(kind="sbom")
    assert (sbom.outcome, sbom.checks[0]["code"]) == ("error", "limit_exceeded")
    assert artifact.status == "verified" and row.state == Scan.State.DONE
    assert cost.seconds < 6
    report("slow-loris blob storage behind a redirect", "PROVENANCE_MAX_REQUEST_SECONDS=2", cost,
           "SBOM stored as error limit_exceeded; signature verified; scan done")


def test_the_image_time_budget_stops_an_image(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_IMAGE_SECONDS = 1
    digest = _signed(hostile)
    layers = [SignedLayer("text/spdx+json", bytes([i]) * 100, {}) for i in range(10)]
    hostile.evidence(digest, ".sbom", layers)
    for layer in layers:  # each answer is prompt enough; together they are too slow
        hostile.server.routes[("GET", f"/v2/app/blobs/{Digest.of(layer.payload)}")] = [
            Scripted(200, layer.payload, delay=0.4)]
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    artifact = row.source.artifacts.get(digest=str(digest))
    cut = artifact.evidence.filter(kind="sbom", outcome="error")
    assert cut.exists() and "PROVENANCE_MAX_IMAGE_SECONDS" in cut.first().checks[0]["message"]
    assert artifact.status == "verified"
    assert cost.seconds < 4
    report("ten slow SBOM blobs (0.4 s each)", "PROVENANCE_MAX_IMAGE_SECONDS=1", cost,
           f"{cut.count()} SBOMs stored as error limit_exceeded; signature verified")


def test_slow_tags_spend_the_scan_time_budget_too(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_SCAN_SECONDS = 2
    settings.PROVENANCE_SCAN_CONCURRENCY = 1
    for tag in ("a", "b", "c", "d"):
        _, digest = hostile.image(tag)
        for reference in (tag, digest):  # the image's manifest is slow to answer, by tag and by digest
            route = hostile.server.routes[("GET", f"/v2/app/manifests/{reference}")]
            route[:] = [dataclasses.replace(route[0], delay=1.0)]
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    assert row.state == Scan.State.DONE and row.error_code == "partial"
    stopped = [p for p in row.problems if p["code"] == "limit_exceeded"]
    assert stopped and all("PROVENANCE_MAX_SCAN_SECONDS" in p["message"] for p in stopped)
    assert cost.seconds < 8


def test_the_scan_time_budget_ends_the_task_before_its_time_limit(hostile: Hostile, settings) -> None:
    settings.PROVENANCE_MAX_SCAN_SECONDS = 2
    settings.PROVENANCE_SCAN_CONCURRENCY = 1
    first = _signed(hostile, "a")
    for tag in ("b", "c", "d"):
        digest = _signed(hostile, tag)
        route = hostile.server.routes[("GET", f"/v2/app/manifests/{digest.tag_prefix}.sig")]
        route[:] = [dataclasses.replace(route[0], delay=1.0)]  # each image's signature is slow to answer
    hostile.list_tags()
    with measured() as cost:
        row = scan(hostile.source())
    assert row.state == Scan.State.DONE and row.error_code == "partial"
    stopped = [p for p in row.problems if p["code"] == "limit_exceeded"]
    assert stopped and all("PROVENANCE_MAX_SCAN_SECONDS" in p["message"] for p in stopped)
    assert _verified(row, first)
    assert cost.seconds < 8
    report("four images, three of them slow (1 s a signature)", "PROVENANCE_MAX_SCAN_SECONDS=2", cost,
           f"{len(stopped)} images stopped with limit_exceeded; scan done (partial), first verified")
