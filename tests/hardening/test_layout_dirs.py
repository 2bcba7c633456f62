"""OCI-layout sources read files on the server: only below PROVENANCE_LAYOUT_DIRS, checked before anything is
looked at, by every way in (services, API, pages) and again when a scan opens the source."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from provenance.core.errors import MalformedEvidenceError
from provenance.core.ocilayout import OciLayout
from provenance.sources import services
from provenance.sources.models import Scan, Source
from tests.factories import UserFactory, make_sigstore, run_scan_now, trust_root_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def allowed(tmp_path: Path, settings) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    settings.PROVENANCE_LAYOUT_DIRS = [str(root)]
    return root


def _layout(path: Path) -> Path:
    OciLayout.init(path)
    return path


def _create(location: str, kind: str = Source.Kind.LAYOUT) -> Source:
    return services.create_source(name="layout", kind=kind, location=location,
                                  trust_root=trust_root_for(make_sigstore()))


def test_a_layout_below_an_allowed_directory_is_accepted(allowed: Path) -> None:
    assert _create(str(_layout(allowed / "fleet"))).kind == Source.Kind.LAYOUT


@pytest.mark.parametrize("where", ["outside", "traversal", "symlink", "relative", "etc"])
def test_a_layout_anywhere_else_is_refused_before_it_is_looked_at(allowed: Path, tmp_path: Path, where) -> None:
    outside = _layout(tmp_path / "outside")
    if where == "outside":
        location = str(outside)
    elif where == "traversal":
        location = f"{allowed}/../outside"
    elif where == "symlink":
        (allowed / "link").symlink_to(outside)
        location = str(allowed / "link")
    elif where == "relative":
        location = "allowed/../outside"
    else:
        location = "/etc"
    with pytest.raises(MalformedEvidenceError) as err:
        _create(location)
    assert err.value.code == "layout_not_allowed"
    assert not Source.objects.exists()


def test_no_layout_is_accepted_when_no_directory_is_configured(tmp_path: Path, settings) -> None:
    settings.PROVENANCE_LAYOUT_DIRS = []
    with pytest.raises(MalformedEvidenceError) as err:
        _create(str(_layout(tmp_path / "fleet")))
    assert err.value.code == "layout_not_allowed" and "not enabled" in err.value.message


def test_layout_tars_follow_the_same_rule(allowed: Path, tmp_path: Path) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("index.json"), io.BytesIO(b""))
    (tmp_path / "fleet.tar").write_bytes(data.getvalue())
    with pytest.raises(MalformedEvidenceError) as err:
        _create(str(tmp_path / "fleet.tar"), Source.Kind.LAYOUT_TAR)
    assert err.value.code == "layout_not_allowed"
    (allowed / "fleet.tar").write_bytes(data.getvalue())
    assert _create(str(allowed / "fleet.tar"), Source.Kind.LAYOUT_TAR).kind == Source.Kind.LAYOUT_TAR


def test_the_api_refuses_with_400(allowed: Path, tmp_path: Path, client) -> None:
    client.force_login(UserFactory())
    root = trust_root_for(make_sigstore())
    response = client.post("/api/v1/sources/", {"name": "x", "kind": "layout", "location": "/etc",
                                                "trust_root": root.name}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "layout_not_allowed"
    assert not Source.objects.exists()


def test_the_page_refuses_and_creates_nothing(allowed: Path, client) -> None:
    client.force_login(UserFactory())
    root = trust_root_for(make_sigstore())
    response = client.post("/sources/new/", {"name": "x", "kind": "layout", "location": "/etc",
                                             "trust_root": root.pk, "is_scheduled": "on"})
    assert response.status_code == 200 and "PROVENANCE_LAYOUT_DIRS" in response.content.decode()
    assert not Source.objects.exists()


def test_a_scan_of_a_layout_no_longer_allowed_fails(allowed: Path, settings) -> None:
    source = _create(str(_layout(allowed / "fleet")))
    settings.PROVENANCE_LAYOUT_DIRS = []
    row = run_scan_now(source)
    assert (row.state, row.error_code) == (Scan.State.FAILED, "layout_not_allowed")
