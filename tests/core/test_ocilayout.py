"""OciLayout: write and read back, digest and size checks, tar extraction, push into a real registry, skopeo."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from provenance.core.errors import MalformedEvidenceError, NotFoundError
from provenance.core.oci import Registry
from provenance.core.ocilayout import REF_NAME_ANNOTATION, OciLayout, extract_layout_tar, push_layout
from provenance.core.types import Digest, MediaType
from tests.plugins.registry import RegistryServer, SampleImage, make_image, make_index, unique_repository
from tests.support import require_binary


def _write_image(layout: OciLayout, image: SampleImage, tag: str | None = None) -> Digest:
    layout.write_blob(image.config)
    layout.write_blob(image.layer)
    return layout.write_manifest(image.manifest, image.media_type, tag=tag)


@pytest.fixture
def layout(tmp_path: Path) -> OciLayout:
    return OciLayout.init(tmp_path / "layout")


def test_written_image_reads_back_by_tag_and_digest(layout: OciLayout) -> None:
    image = make_image()
    digest = _write_image(layout, image, tag="v1")

    by_tag = layout.get_manifest("ignored/repo", "v1")
    by_digest = layout.get_manifest("other/repo", digest)
    assert digest == image.digest == by_tag.digest == by_digest.digest
    assert by_tag.data == image.manifest and by_tag.media_type == MediaType.OCI_MANIFEST
    assert layout.get_blob("any", Digest.of(image.layer)) == image.layer
    assert layout.list_tags() == ["v1"]
    assert layout.head_manifest("any", "v1") == digest
    assert layout.head_manifest("any", "absent") is None
    assert isinstance(layout, Registry)


def test_layout_files_follow_the_spec(layout: OciLayout) -> None:
    image = make_image()
    digest = _write_image(layout, image, tag="v1")
    root = layout.path
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["manifests"] == [
        {
            "mediaType": MediaType.OCI_MANIFEST,
            "digest": str(digest),
            "size": len(image.manifest),
            "annotations": {REF_NAME_ANNOTATION: "v1"},
        }
    ]
    assert (root / "blobs" / "sha256" / digest.hex).read_bytes() == image.manifest


def test_retagging_replaces_the_index_entry(layout: OciLayout) -> None:
    first, second = make_image(), make_image()
    _write_image(layout, first, tag="latest")
    _write_image(layout, first, tag="v1")
    _write_image(layout, second, tag="latest")
    assert sorted(layout.list_tags()) == ["latest", "v1"]
    assert layout.get_manifest("", "latest").digest == second.digest
    assert layout.get_manifest("", "v1").digest == first.digest
    assert len(layout.descriptors()) == 2


def test_index_children_are_blobs_not_index_entries(layout: OciLayout) -> None:
    amd64, arm64 = make_image(), make_image()
    _write_image(layout, amd64)
    _write_image(layout, arm64)
    index = make_index((amd64, "linux/amd64"), (arm64, "linux/arm64"))
    layout.write_manifest(index, MediaType.OCI_INDEX, tag="multi")

    manifest = layout.get_manifest("", "multi")
    assert manifest.is_index
    assert [layout.get_manifest("", d.digest).digest for d in manifest.manifests] == [amd64.digest, arm64.digest]
    assert [d.digest for d in layout.descriptors()] == [Digest.of(index)]


def test_corrupted_blob_is_detected(layout: OciLayout) -> None:
    image = make_image()
    digest = _write_image(layout, image, tag="v1")
    (layout.path / "blobs" / "sha256" / Digest.of(image.layer).hex).write_bytes(b"tampered")
    (layout.path / "blobs" / "sha256" / digest.hex).write_bytes(make_image().manifest)
    with pytest.raises(MalformedEvidenceError) as blob_err:
        layout.get_blob("", Digest.of(image.layer))
    with pytest.raises(MalformedEvidenceError) as manifest_err:
        layout.get_manifest("", "v1")
    assert blob_err.value.code == manifest_err.value.code == "digest_mismatch"


def test_size_caps_apply(tmp_path: Path) -> None:
    layout = OciLayout.init(tmp_path / "small", max_manifest_bytes=64, max_blob_bytes=8)
    image = make_image()
    _write_image(layout, image, tag="v1")
    with pytest.raises(MalformedEvidenceError) as err:
        layout.get_blob("", Digest.of(image.layer))
    assert err.value.code == "too_large"
    with pytest.raises(MalformedEvidenceError) as err:
        layout.get_manifest("", "v1")
    assert err.value.code == "too_large"
    assert layout.get_blob("", Digest.of(image.layer), max_bytes=1024) == image.layer


def test_missing_things_raise_not_found(tmp_path: Path, layout: OciLayout) -> None:
    with pytest.raises(NotFoundError, match="no OCI image layout"):
        OciLayout(tmp_path / "nowhere")
    with pytest.raises(NotFoundError, match="tag 'v9'"):
        layout.get_manifest("", "v9")
    with pytest.raises(NotFoundError):
        layout.get_blob("", Digest.of(b"absent"))


def test_malformed_layout_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(MalformedEvidenceError) as err:
        OciLayout(root)
    assert err.value.code == "malformed_layout"
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text('{"manifests": [{"digest": "sha256:nope"}]}')
    with pytest.raises(MalformedEvidenceError) as err:
        OciLayout(root).list_tags()
    assert err.value.code == "malformed_layout"


def test_write_manifest_refuses_non_json(layout: OciLayout) -> None:
    with pytest.raises(MalformedEvidenceError) as err:
        layout.write_manifest(b"not json", MediaType.OCI_MANIFEST, tag="v1")
    assert err.value.code == "malformed_manifest"


def _tar_of(layout: OciLayout, *, extra: tuple[tuple[tarfile.TarInfo, bytes | None], ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(layout.path, arcname=".")
        for info, data in extra:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def test_layout_tar_is_extracted_safely(tmp_path: Path, layout: OciLayout) -> None:
    image = make_image()
    _write_image(layout, image, tag="v1")
    escape = tarfile.TarInfo("../escaped.txt")
    escape.size = 3
    link = tarfile.TarInfo(f"blobs/sha256/{'0' * 64}")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    stray = tarfile.TarInfo("blobs/sha256/not-a-digest")
    stray.size = 3
    data = _tar_of(layout, extra=((escape, b"bad"), (link, None), (stray, b"bad")))

    extracted = extract_layout_tar(io.BytesIO(data), tmp_path / "out")
    assert extracted.get_manifest("", "v1").digest == image.digest
    assert extracted.get_blob("", Digest.of(image.layer)) == image.layer
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "blobs" / "sha256" / ("0" * 64)).exists()
    assert not (tmp_path / "out" / "blobs" / "sha256" / "not-a-digest").exists()


def test_garbage_tar_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedEvidenceError) as err:
        extract_layout_tar(io.BytesIO(b"not a tar at all" * 100), tmp_path / "out")
    assert err.value.code == "malformed_layout"


# --------------------------------------------------------------------------------------------------------------
# With the real registry


@pytest.mark.integration
def test_push_layout_copies_index_tree_into_registry(layout: OciLayout, registry: RegistryServer) -> None:
    amd64, arm64, single = make_image(), make_image(), make_image(media_type=MediaType.DOCKER_MANIFEST)
    _write_image(layout, amd64)
    _write_image(layout, arm64)
    index = make_index((amd64, "linux/amd64"), (arm64, "linux/arm64"))
    index_digest = layout.write_manifest(index, MediaType.OCI_INDEX, tag="multi")
    _write_image(layout, single, tag="single")
    repo = unique_repository()

    with registry.client() as client:
        pushed = push_layout(layout, client, repo)
        assert pushed == {"multi": index_digest, "single": single.digest}
        assert sorted(client.list_tags(repo)) == ["multi", "single"]
        fetched = client.get_manifest(repo, "multi")
        assert fetched.digest == index_digest and fetched.data == index
        for image in (amd64, arm64):
            assert client.get_manifest(repo, image.digest).data == image.manifest
            assert client.get_blob(repo, Digest.of(image.layer)) == image.layer
        assert client.get_manifest(repo, "single").media_type == MediaType.DOCKER_MANIFEST
        # Pushing again is idempotent: content addressing, blobs skipped.
        assert push_layout(layout, client, repo, tags=["single"]) == {"single": single.digest}


@pytest.mark.integration
def test_push_layout_reports_missing_child(layout: OciLayout, registry: RegistryServer) -> None:
    present, absent = make_image(), make_image()
    _write_image(layout, present)
    layout.write_manifest(make_index((present, "linux/amd64"), (absent, "linux/arm64")), MediaType.OCI_INDEX, tag="x")
    with registry.client() as client, pytest.raises(NotFoundError, match=str(absent.digest)):
        push_layout(layout, client, unique_repository())


@pytest.mark.integration
def test_skopeo_reads_our_layout_and_we_read_skopeos(
    tmp_path: Path, layout: OciLayout, registry: RegistryServer
) -> None:
    skopeo = require_binary("skopeo", "apt-get install skopeo")
    image = make_image()
    _write_image(layout, image, tag="v1")
    repo = unique_repository()

    def copy(source: str, dest: str) -> None:
        subprocess.run(
            [skopeo, "--insecure-policy", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
             "--src-tls-verify=false", source, dest],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    # Our layout -> registry with skopeo; then registry -> a fresh layout written by skopeo, read by us.
    copy(f"oci:{layout.path}:v1", f"docker://{registry.host}/{repo}:v1")
    with registry.client() as client:
        assert client.get_manifest(repo, "v1").digest == image.digest
    copy(f"docker://{registry.host}/{repo}:v1", f"oci:{tmp_path / 'from-skopeo'}:copied")

    theirs = OciLayout(tmp_path / "from-skopeo")
    assert theirs.list_tags() == ["copied"]
    manifest = theirs.get_manifest("", "copied")
    assert manifest.digest == image.digest
    assert theirs.get_blob("", manifest.layers[0].digest) == image.layer
