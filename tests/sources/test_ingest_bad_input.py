"""A repository scan meets bad input: each problem is a clear error recorded on the scan, the rest is ingested."""

from __future__ import annotations

import dataclasses
import json

import pytest

from provenance.artifacts.models import Artifact, Tag
from provenance.core.types import Digest, MediaType
from provenance.sources import services
from provenance.sources.models import Scan, Source
from provenance.sources.tasks import scan_source
from tests.factories import make_sigstore, trust_root_for
from tests.plugins.registry import Scripted, ScriptedServer, make_image

pytestmark = pytest.mark.django_db

JSON = {"Content-Type": "application/json"}


def serve(server: ScriptedServer, tag: str, body: bytes, *answers: Scripted, digest: Digest | None = None) -> Digest:
    """Script ``tag`` → digest (HEAD), and the manifest (GET, by tag as a scan asks for a new tag, and by digest):
    ``answers``, or ``body``; the answers by tag say the digest in Docker-Content-Digest."""
    digest = digest or Digest.of(body)
    server.add("HEAD", f"/v2/app/manifests/{tag}", Scripted(200, b"", {"Docker-Content-Digest": str(digest)}))
    ok = Scripted(200, body, {"Content-Type": MediaType.OCI_MANIFEST, "Docker-Content-Digest": str(digest)})
    server.add("GET", f"/v2/app/manifests/{digest}", *(answers or (ok,)))
    server.add("GET", f"/v2/app/manifests/{tag}", *(
        dataclasses.replace(a, headers={"Content-Type": MediaType.OCI_MANIFEST, "Docker-Content-Digest": str(digest),
                                        **a.headers}) for a in (answers or (ok,))))
    return digest


def test_each_bad_image_is_a_recorded_error_and_the_rest_is_ingested(fake_registry: ScriptedServer,
                                                                     settings) -> None:
    settings.PROVENANCE_HTTP_TIMEOUT = 1
    settings.PROVENANCE_HTTP_RETRIES = 1
    good, flaky = make_image(), make_image()
    deep = b'{"a":' * 100 + b"1" + b"}" * 100
    serve(fake_registry, "good", good.manifest)
    serve(fake_registry, "flaky", flaky.manifest, Scripted(500),
          Scripted(200, flaky.manifest, {"Content-Type": MediaType.OCI_MANIFEST}))
    serve(fake_registry, "forged", b"{}", Scripted(200, good.manifest), digest=Digest.of(b"what was asked for"))
    serve(fake_registry, "oversize", b'{"o":1}', Scripted(200, b"{}", declared_length=64 * 1024 * 1024))
    serve(fake_registry, "malformed", b"{not json")
    serve(fake_registry, "nested", deep)
    serve(fake_registry, "hangs", b'{"h":1}', Scripted(200, good.manifest, delay=3))
    # "gone" is listed, then deleted before it is fetched: HEAD answers 404.
    tags = ["good", "flaky", "forged", "oversize", "malformed", "nested", "hangs", "gone"]
    fake_registry.add("GET", "/v2/app/tags/list", Scripted(200, json.dumps({"name": "app", "tags": tags}).encode(),
                                                           JSON))
    source = services.create_source(name="bad-input", kind=Source.Kind.REPOSITORY,
                                    location=f"{fake_registry.host}/app", is_insecure=True,
                                    trust_root=trust_root_for(make_sigstore()))
    scan = Scan.objects.create(source=source)
    scan_source.apply(args=[scan.pk])
    scan.refresh_from_db()

    assert (scan.state, scan.error_code) == (Scan.State.DONE, "partial")
    assert (scan.total, scan.done, scan.errors, scan.fetched) == (8, 8, 6, 2)
    codes = {p["reference"].split("@")[0]: p["code"] for p in scan.problems}
    assert codes == {
        "app:forged": "digest_mismatch",
        "app:oversize": "too_large",
        "app:malformed": "malformed_manifest",
        "app:nested": "malformed_manifest",
        "app:hangs": "transient",
        "app:gone": "tag_gone",
    }
    messages = {p["reference"].split("@")[0]: p["message"] for p in scan.problems}
    assert "timed out" in messages["app:hangs"]
    assert "nested deeper than 64" in messages["app:nested"]
    assert "no longer exists" in messages["app:gone"]
    assert "hashes to" in messages["app:forged"]
    assert set(Tag.objects.filter(artifact__source=source).values_list("name", flat=True)) == {"good", "flaky"}
    assert Artifact.objects.filter(source=source).count() == 2
    source.refresh_from_db()
    assert "app:hangs" in source.last_error and "app:gone" in source.last_error


def test_a_repository_that_does_not_exist_fails_the_scan(fake_registry: ScriptedServer) -> None:
    source = services.create_source(name="missing", kind=Source.Kind.REPOSITORY, location=f"{fake_registry.host}/app",
                                    is_insecure=True, trust_root=trust_root_for(make_sigstore()))
    scan = Scan.objects.create(source=source)
    scan_source.apply(args=[scan.pk])
    scan.refresh_from_db()
    assert (scan.state, scan.error_code) == (Scan.State.FAILED, "not_found")
    assert "tags of app not found" in scan.error
