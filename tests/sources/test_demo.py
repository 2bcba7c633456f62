"""The demo fleet concludes what each of its images is built to show, and the demo refuses production mode."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from provenance.artifacts.models import Artifact
from provenance.sources import services
from provenance.sources.demo import load_demo

pytestmark = pytest.mark.django_db


def test_every_demo_image_gets_its_expected_verdict(tmp_path):
    demo = load_demo(tmp_path)
    assert services.claim_scan(demo.scan.pk)
    services.run_scan(demo.scan.pk)
    demo.scan.refresh_from_db()
    assert (demo.scan.state, demo.scan.done, demo.scan.total) == ("done", 6, 6)
    policy_status = {"signed": "trusted", "multiarch": "warn", "unsigned": "unsigned", "wrong-identity": "untrusted",
                     "tampered": "untrusted", "copied-signature": "untrusted"}
    for image in demo.images:
        artifact = Artifact.objects.get(source=demo.source, digest=str(image.digest))
        assert artifact.status == image.expected_status, (image.tag, artifact.status_reason)
        assert artifact.tags.get().name == image.tag
        assert artifact.trust.status == policy_status[image.tag], (image.tag, artifact.trust.reason)
    # running it again changes nothing: same rows, same verdicts
    counts = (Artifact.objects.count(), sum(a.evidence.count() for a in Artifact.objects.all()))
    again = services.start_scan(demo.source)
    services.claim_scan(again.pk)
    services.run_scan(again.pk)
    assert (Artifact.objects.count(), sum(a.evidence.count() for a in Artifact.objects.all())) == counts


def test_demo_reuses_its_sigstore_and_fleet_between_runs(tmp_path):
    first = load_demo(tmp_path)
    second = load_demo(tmp_path)
    assert [i.digest for i in first.images] == [i.digest for i in second.images]
    assert first.source.trust_root.sha256 == second.source.trust_root.sha256
    assert first.password != second.password


def test_demo_command_prints_the_admin_credentials(tmp_path, settings, capsys):
    settings.DATA_DIR = tmp_path
    call_command("demo")
    out = capsys.readouterr().out
    assert "Demo admin: username admin  password " in out
    assert "wrong-identity" in out


def test_demo_refuses_to_run_outside_demo_debug_or_tests(tmp_path, settings):
    settings.DEMO = settings.DEBUG = settings.TESTING = False
    with pytest.raises(ImproperlyConfigured, match="insecure test Sigstore"):
        load_demo(tmp_path)
