"""The monitor end to end, driven in-process: the scanned demo fleet, its test Sigstore's log served on 127.0.0.1
(Rekor v1 API and v2 tiles), watched identities derived from the demo's policies, alerts to a webhook receiver that
checks the HMAC and to Django's test outbox."""

from __future__ import annotations

import hashlib

import pytest
from django.core import mail

from provenance.core.demo import DEMO_IDENTITY, DEMO_ISSUER
from provenance.core.testsigstore import LogOptions
from provenance.monitor import services
from provenance.monitor.models import AlertRule, Delivery, Event, LogMatch, MonitoredLog, WatchedIdentity
from tests.monitor.conftest import SECRET, Fleet, Receiver

pytestmark = pytest.mark.django_db


def _rules(receiver: Receiver) -> None:
    services.save_rule({"name": "hook", "channel": "webhook", "url": receiver.url, "secret": SECRET,
                        "kinds": ["unknown_signature", "log_inconsistent"]})
    services.save_rule({"name": "mail", "channel": "email", "emails": "security@example.test",
                        "kinds": ["unknown_signature"]})


def test_watched_identities_come_from_the_enabled_policies_and_sources(fleet: Fleet) -> None:
    services.sync_watches()
    derived = WatchedIdentity.objects.exclude(origin="manual")
    assert {(w.subject, w.issuer) for w in derived} >= {(DEMO_IDENTITY, DEMO_ISSUER)}
    assert {w.origin for w in derived} == {"policy", "source"}


@pytest.mark.parametrize("kind", [MonitoredLog.Kind.REKOR_V1, MonitoredLog.Kind.TILES])
def test_expected_signatures_are_quiet_and_an_unexpected_one_alerts(fleet: Fleet, receiver: Receiver,
                                                                   kind: str) -> None:
    _rules(receiver)
    services.sync_watches()
    row = fleet.follow(kind=kind, batch=7)

    first = services.follow_log(row.pk)  # the demo fleet's own signatures: all known
    row.refresh_from_db()
    assert first.error == "" and row.next_index == len(fleet.sigstore.log) and row.state == "ok"
    assert first.matches > 0 and first.alerts == 0, list(LogMatch.objects.values("index", "digests", "state"))
    assert set(LogMatch.objects.values_list("state", flat=True)) == {"known"}
    assert not Event.objects.filter(kind="unknown_signature").exists()

    # The release identity signs something no scan ever saw (a stolen CI token, say); in v1 and v2 entry shapes.
    fleet.sigstore.sign_blob_bundle(b"not from our build", identity=DEMO_IDENTITY, issuer=DEMO_ISSUER,
                                    log=LogOptions(rekor_v2=kind == MonitoredLog.Kind.TILES))
    fleet.sigstore.sign_blob_bundle(b"someone else", identity="https://github.com/x/y/.github/workflows/a@main",
                                    issuer=DEMO_ISSUER)
    second = services.follow_log(row.pk)
    assert second.entries == 2 and second.alerts == 1
    event = Event.objects.get(kind="unknown_signature")
    digest = f"sha256:{hashlib.sha256(b'not from our build').hexdigest()}"
    assert event.detail["digests"] == [digest] and event.detail["subject"] == DEMO_IDENTITY
    assert event.detail["index"] == len(fleet.sigstore.log) - 2

    assert services.send_due_deliveries() == 2
    assert [r["kind"] for r in receiver.received] == ["unknown_signature"] and receiver.rejected == 0
    assert receiver.received[0]["detail"]["digests"] == [digest]
    assert len(mail.outbox) == 1 and "never seen" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["security@example.test"] and digest in mail.outbox[0].body

    assert services.follow_log(row.pk).entries == 0  # nothing new: no second alert
    assert Event.objects.filter(kind="unknown_signature").count() == 1 and services.send_due_deliveries() == 0


def test_allowlisted_digests_raise_no_alert(fleet: Fleet) -> None:
    services.sync_watches()
    row = fleet.follow(start=len(fleet.sigstore.log))
    services.add_allowlist(note="signed on purpose", digest=f"sha256:{hashlib.sha256(b'ok').hexdigest()}")
    fleet.sigstore.sign_blob_bundle(b"ok", identity=DEMO_IDENTITY, issuer=DEMO_ISSUER)
    assert services.follow_log(row.pk).alerts == 0
    assert LogMatch.objects.get().state == "allowed"


def test_an_unknown_entry_waits_for_the_grace_period(fleet: Fleet, settings) -> None:
    settings.PROVENANCE_MONITOR_GRACE = 3600
    services.sync_watches()
    row = fleet.follow(start=len(fleet.sigstore.log))
    fleet.sigstore.sign_blob_bundle(b"scanned later", identity=DEMO_IDENTITY, issuer=DEMO_ISSUER)
    assert services.follow_log(row.pk).alerts == 0 and LogMatch.objects.get().state == "pending"
    settings.PROVENANCE_MONITOR_GRACE = 0
    assert services.resolve_pending() == 1 and LogMatch.objects.get().state == "unknown"
    assert services.resolve_pending() == 0


@pytest.mark.parametrize("kind", [MonitoredLog.Kind.REKOR_V1, MonitoredLog.Kind.TILES])
def test_a_forked_log_raises_one_inconsistency_alert_and_stops(fleet: Fleet, receiver: Receiver, kind: str) -> None:
    _rules(receiver)
    row = fleet.follow(kind=kind)
    services.follow_log(row.pk)
    row.refresh_from_db()
    verified, position = row.checkpoint, row.next_index

    forked = fleet.sigstore.log.fork(len(fleet.sigstore.log) - 2)
    for i in range(3):
        forked.append(b'{"forked": %d}' % i, integrated_time=1)
    fleet.server.log = forked
    for _ in range(2):  # noticed on every poll, alerted once
        assert services.follow_log(row.pk).error
    row.refresh_from_db()
    assert row.state == "inconsistent" and row.error_code == "log_inconsistent"
    assert row.checkpoint == verified and row.next_index == position  # nothing from the fork is taken
    assert Event.objects.filter(kind="log_inconsistent").count() == 1
    assert services.send_due_deliveries() == 1 and receiver.received[0]["kind"] == "log_inconsistent"


def test_an_unreachable_log_is_shown_and_retried_without_alert(fleet: Fleet, receiver: Receiver) -> None:
    _rules(receiver)
    services.sync_watches()
    row = fleet.follow()
    fleet.server.down = True
    for _ in range(3):
        assert "503" in services.follow_log(row.pk).error
    row.refresh_from_db()
    assert row.state == "unreachable" and row.error_code == "log_unreachable" and row.failures == 3
    assert row.next_index == 0 and not Event.objects.exists()

    fleet.server.down = False
    assert services.follow_log(row.pk).alerts == 0
    row.refresh_from_db()
    assert row.state == "ok" and row.failures == 0 and row.next_index == len(fleet.sigstore.log)


def test_webhook_failures_are_retried_with_backoff_and_kept(fleet: Fleet, receiver: Receiver) -> None:
    _rules(receiver)
    services.sync_watches()
    row = fleet.follow(start=len(fleet.sigstore.log))
    fleet.sigstore.sign_blob_bundle(b"rogue", identity=DEMO_IDENTITY, issuer=DEMO_ISSUER)
    services.follow_log(row.pk)
    receiver.fail = 1
    services.send_due_deliveries()
    hook = Delivery.objects.get(rule__name="hook")
    assert hook.state == "pending" and hook.attempts == 1 and hook.last_status == 500 and "500" in hook.last_error
    assert hook.next_attempt_at is not None
    assert services.send_due_deliveries() == 0  # not due yet: backoff
    Delivery.objects.filter(pk=hook.pk).update(next_attempt_at=hook.created_at)
    assert services.send_due_deliveries() == 1
    hook.refresh_from_db()
    assert hook.state == "delivered" and hook.attempts == 2 and len(receiver.received) == 1


def test_a_redirecting_webhook_is_a_failure(fleet: Fleet, fake_registry) -> None:
    rule = services.save_rule({"name": "redirect", "channel": "webhook", "url": "http://127.0.0.1:9/closed",
                               "secret": SECRET})
    delivery = services.test_rule(rule)
    assert delivery.state == "pending" and delivery.attempts == 1 and delivery.last_error


def test_the_test_button_sends_a_signed_test_event(fleet: Fleet, receiver: Receiver) -> None:
    rule = services.save_rule({"name": "hook", "channel": "webhook", "url": receiver.url, "secret": SECRET})
    delivery = services.test_rule(rule)
    assert delivery.state == "delivered" and receiver.received[0]["kind"] == "test"
    assert AlertRule.objects.get().secret == SECRET
