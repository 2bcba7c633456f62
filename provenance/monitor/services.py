"""Where the ORM meets provenance.core.monitor: following logs, watched identities, events and their delivery.

A batch of log entries is one transaction: the matches and events it raises, and the cursor and checkpoint that
move past it, are committed together, so a worker killed mid-batch leaves nothing behind and the next read starts
at the same entry (nothing missed, nothing alerted twice). Events are unique by key; deliveries by (rule, event).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from provenance.accounts.services import record
from provenance.artifacts.models import Artifact, Evidence
from provenance.core import jsonbounds
from provenance.core import monitor as core
from provenance.core.errors import ProvenanceError, TransientError
from provenance.core.policy import key_fingerprint_or_empty
from provenance.core.trustroot import TrustRoot as CoreTrustRoot
from provenance.monitor.models import (
    AlertRule,
    Allowlist,
    Delivery,
    Event,
    FleetDigest,
    LogMatch,
    MonitoredLog,
    WatchedIdentity,
)
from provenance.sources.models import Source

log = logging.getLogger(__name__)

def _claim_seconds() -> int:
    """A claim older than this belongs to a dead worker (the cursor check keeps two readers apart regardless)."""
    return int(getattr(settings, "PROVENANCE_MONITOR_CLAIM_SECONDS", 120))


MAX_ATTEMPTS = 6
BACKOFF_SECONDS = 30  # 30 s, 1 min, 2 min, 4 min, 8 min between attempts
WEBHOOK_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 4096


def _grace() -> dt.timedelta:
    """How long an unknown entry may wait for a scan to see what it signed before it is alerted on."""
    return dt.timedelta(seconds=getattr(settings, "PROVENANCE_MONITOR_GRACE", 1800))


# --------------------------------------------------------------------------------------------------------------
# Watched identities


def _fingerprint(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def validate_watch(values: dict[str, Any]) -> None:
    """Raise ``ValueError`` saying why ``values`` cannot be a watched identity."""
    for name in ("subject_regexp", "issuer_regexp"):
        if values.get(name):
            try:
                re.compile(values[name])
            except re.error as err:
                raise ValueError(f"{name}: not a regular expression: {err}") from err
    fingerprint = values.get("key_fingerprint", "")
    if fingerprint and not re.fullmatch(r"sha256:[0-9a-f]{64}", fingerprint):
        raise ValueError("key_fingerprint: expected sha256:<64 hex digits>")
    if not any(values.get(k) for k in ("subject", "subject_regexp", "issuer", "issuer_regexp", "key_fingerprint")):
        raise ValueError("say whom to watch: a subject, an issuer (exact or regexp) or a key fingerprint")
    claims = values.get("claims") or {}
    if not isinstance(claims, dict) or not set(claims) <= {"repository", "ref", "trigger", "sha"}:
        raise ValueError("claims: a map of repository, ref, trigger and sha")


_WATCH_FIELDS = ("subject", "subject_regexp", "issuer", "issuer_regexp", "claims", "key_fingerprint")


def add_watch(**values: Any) -> WatchedIdentity:
    """Watch a signer by hand (validated; raises ``ValueError``)."""
    values = {k: values.get(k) or ({} if k == "claims" else "") for k in _WATCH_FIELDS}
    validate_watch(values)
    watch, _ = WatchedIdentity.objects.get_or_create(origin=WatchedIdentity.Origin.MANUAL, origin_name="",
                                                     fingerprint=_fingerprint(values), defaults=values)
    record("watch.add", watch, values)
    return watch


def remove_watch(watch: WatchedIdentity) -> None:
    record("watch.remove", watch, {"watch": watch.describe()})
    watch.delete()


def derived_identities() -> list[tuple[str, str, dict[str, Any]]]:
    """``(origin, name, values)`` for every identity the enabled policies' authorities and the sources accept."""
    from provenance.policies.services import enabled_policies
    from provenance.trust.models import PublicKey

    found: list[tuple[str, str, dict[str, Any]]] = []
    named_keys = dict(PublicKey.objects.values_list("name", "fingerprint"))
    for policy in enabled_policies():
        for authority in policy.authorities:
            if authority.keyless is not None:
                for identity in authority.keyless.identities:
                    found.append(("policy", policy.name, {
                        "subject": identity.subject, "subject_regexp": identity.subject_regexp,
                        "issuer": identity.issuer, "issuer_regexp": identity.issuer_regexp}))
            if authority.key is not None:
                fingerprint = authority.key.fingerprint if authority.key.pem else named_keys.get(authority.key.name, "")
                if fingerprint:
                    found.append(("policy", policy.name, {"key_fingerprint": fingerprint}))
    for source in Source.objects.exclude(expected_identity="", expected_identity_regexp="", expected_issuer=""):
        found.append(("source", source.name, {
            "subject": source.expected_identity, "subject_regexp": source.expected_identity_regexp,
            "issuer": source.expected_issuer}))
    result = []
    for origin, name, values in found:
        values = {k: values.get(k) or ({} if k == "claims" else "") for k in _WATCH_FIELDS}
        try:
            validate_watch(values)
        except ValueError:
            continue  # "anyone" (no subject, issuer or key) is no identity to watch
        result.append((origin, name, values))
    return result


@transaction.atomic
def sync_watches() -> int:
    """Keep the derived watched identities in step with the policies and sources; returns how many there are."""
    wanted = {(origin, name, _fingerprint(values)): values for origin, name, values in derived_identities()}
    derived = WatchedIdentity.objects.exclude(origin=WatchedIdentity.Origin.MANUAL)
    for watch in derived:
        if (watch.origin, watch.origin_name, watch.fingerprint) not in wanted:
            watch.delete()
    existing = set(derived.values_list("origin", "origin_name", "fingerprint"))
    for (origin, name, fingerprint), values in wanted.items():
        if (origin, name, fingerprint) not in existing:
            WatchedIdentity.objects.create(origin=origin, origin_name=name, fingerprint=fingerprint, **values)
    return len(wanted)


def _core_watches() -> list[tuple[core.Watch, WatchedIdentity]]:
    return [(core.Watch(w.pk, subject=w.subject, subject_regexp=w.subject_regexp, issuer=w.issuer,
                        issuer_regexp=w.issuer_regexp, claims=w.claims, key_fingerprint=w.key_fingerprint), w)
            for w in WatchedIdentity.objects.filter(is_enabled=True)]


# --------------------------------------------------------------------------------------------------------------
# What the fleet knows


def _sig(raw: bytes) -> str:
    return f"sig:{hashlib.sha256(raw).hexdigest()}"


def evidence_digests(row: Evidence) -> set[str]:
    """Every value a log entry for this evidence can record: the layer's digest, its payload's, a bundle's message
    digest, a DSSE envelope's payload and pre-authentication encoding, the artifact's, and (``sig:<sha256>``) its
    signatures."""
    found = {row.digest, row.covers_digest}
    signature = _b64((row.annotations or {}).get("dev.cosignproject.cosign/signature"))
    if signature:
        found.add(_sig(signature))
    payload = bytes(row.payload or b"")
    if payload:
        found.add(f"sha256:{hashlib.sha256(payload).hexdigest()}")
        try:
            doc = jsonbounds.loads(payload) if payload[:1] == b"{" else None
        except ValueError:  # JSONBoundsError included: attacker-controlled bytes, indexed while they are stored
            doc = None
        if isinstance(doc, dict):
            message = doc.get("messageSignature") if isinstance(doc.get("messageSignature"), dict) else {}
            raw = _b64((message.get("messageDigest") or {}).get("digest"))
            if raw:
                found.add(f"sha256:{raw.hex()}")
            raw = _b64(message.get("signature"))
            if raw:
                found.add(_sig(raw))
            envelope = doc.get("dsseEnvelope") if "dsseEnvelope" in doc else doc
            if isinstance(envelope, dict) and isinstance(envelope.get("payloadType"), str):
                statement = _b64(envelope.get("payload"))
                if statement is not None:
                    kind = envelope["payloadType"].encode()
                    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(statement), statement)
                    found.add(f"sha256:{hashlib.sha256(statement).hexdigest()}")
                    found.add(f"sha256:{hashlib.sha256(pae).hexdigest()}")
                for item in envelope.get("signatures") or []:
                    raw = _b64(item.get("sig")) if isinstance(item, dict) else None
                    if raw:
                        found.add(_sig(raw))
    found.discard("")
    return {value[:80] for value in found}


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def index_evidence(rows: Iterable[Evidence]) -> int:
    """Record what log entries for ``rows`` can say (see :func:`evidence_digests`); idempotent. Runs where
    evidence is stored: a row it cannot read is indexed by its digests alone and logged, never an error."""
    items = [FleetDigest(evidence=row, value=value) for row in rows for value in _indexed_values(row)]
    FleetDigest.objects.bulk_create(items, ignore_conflicts=True, batch_size=1000)
    return len(items)


def _indexed_values(row: Evidence) -> set[str]:
    try:
        return evidence_digests(row)
    except Exception:  # a bug on hostile bytes must not lose the evidence being stored
        log.exception("indexing evidence %s failed; indexed by its digests only", row.pk)
        return {row.digest, row.covers_digest}


def index_fleet(limit: int = 5000) -> int:
    """Index stored evidence not indexed yet (evidence from before monitoring, or stored outside a scan)."""
    rows = list(Evidence.objects.filter(fleet_digests__isnull=True).order_by("pk")[:limit])
    return index_evidence(rows)


def entry_values(facts: core.EntryFacts) -> tuple[list[str], list[str]]:
    """The digests an entry signs and its signatures as indexed (``sig:<sha256>``)."""
    return list(facts.digests), [_sig(raw) for raw in facts.signatures]


def fleet_artifact(digests: Iterable[str], signatures: Iterable[str]) -> Artifact | None:
    """The artifact whose stored evidence (or digest) is what an entry signed; None when the fleet never saw it."""
    digests = set(digests)
    direct = Artifact.objects.filter(digest__in=digests).order_by("pk").first() if digests else None
    if direct is not None:
        return direct
    values = digests | set(signatures)
    found = FleetDigest.objects.filter(value__in=values).select_related("evidence__artifact").first() \
        if values else None
    return found.evidence.artifact if found is not None else None


def _allowed(facts: core.EntryFacts, now: dt.datetime) -> Allowlist | None:
    for item in Allowlist.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)):
        if item.digest and item.digest in facts.digests:
            return item
        if item.subject_regexp and any(re.search(item.subject_regexp, s) for s in facts.subjects):
            return item
    return None


# --------------------------------------------------------------------------------------------------------------
# Following a log


def add_log(*, name: str, kind: str, url: str, trust_root: Any, log_id: str, start_index: int = 0,
            batch_size: int = 100) -> MonitoredLog:
    """Follow a log of ``trust_root`` from ``start_index``; raises ``ValueError`` when the trust root lacks it."""
    document = CoreTrustRoot.from_json(trust_root.document.encode(), name=trust_root.name)
    try:
        key = bytes.fromhex(log_id)
    except ValueError as err:
        raise ValueError("log_id: not hex") from err
    if document.tlog_key(key) is None:
        known = ", ".join(k.log_id_hex for k in document.tlog_keys.values())
        raise ValueError(f"the trust root {trust_root.name!r} has no log {log_id} (its logs: {known})")
    row = MonitoredLog.objects.create(name=name, kind=kind, url=url, trust_root=trust_root, log_id=log_id.lower(),
                                      start_index=start_index, next_index=start_index,
                                      batch_size=max(1, min(batch_size, core.MAX_BATCH)))
    record("monitor_log.add", row, {"url": url, "kind": kind, "start_index": start_index})
    return row


def log_source(row: MonitoredLog) -> core.RekorV1Log | core.TileLog:
    root = CoreTrustRoot.from_json(row.trust_root.document.encode(), name=row.trust_root.name)
    timeout = float(getattr(settings, "PROVENANCE_HTTP_TIMEOUT", 15))
    if row.kind == MonitoredLog.Kind.TILES:
        key = root.tlog_key(bytes.fromhex(row.log_id))
        if key is None:
            raise core.LogInvalidError(f"the trust root {row.trust_root.name!r} no longer has this log",
                                       code="log_unknown")
        return core.TileLog(row.url, key, timeout=timeout)
    return core.RekorV1Log(row.url, root, bytes.fromhex(row.log_id), timeout=timeout)


def _claim(pk: int) -> bool:
    now = timezone.now()
    stale = now - dt.timedelta(seconds=_claim_seconds())
    return MonitoredLog.objects.filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale), pk=pk,
                                       is_enabled=True).update(claimed_at=now) == 1


@dataclass
class PollResult:
    batches: int = 0
    entries: int = 0
    matches: int = 0
    alerts: int = 0
    error: str = ""


def follow_log(pk: int, *, budget_seconds: float = 50.0, max_batches: int = 1000) -> PollResult:
    """Read log ``pk`` batch by batch until it is caught up, ``budget_seconds`` pass, or a read fails.

    A failure to reach the log is recorded on the row (shown, retried at the next poll) and raises no event;
    a log that is inconsistent or whose answers do not verify raises one event per distinct problem.
    """
    result = PollResult()
    if not _claim(pk):
        return result  # another worker follows it, or it is disabled or gone
    row = MonitoredLog.objects.select_related("trust_root").get(pk=pk)
    deadline = time.monotonic() + budget_seconds
    source: core.RekorV1Log | core.TileLog | None = None
    try:
        source = log_source(row)
        watches = _core_watches()
        index_fleet()
        while result.batches < max_batches and time.monotonic() < deadline:
            previous = _stored_checkpoint(row, source)
            batch = core.advance(source, previous=previous, start=row.next_index, limit=row.batch_size)
            matches, alerts = _commit_batch(row, batch, watches)
            result.batches += 1
            result.entries += len(batch.entries)
            result.matches += matches
            result.alerts += alerts
            if batch.lag == 0:
                break
    except TransientError as err:
        result.error = err.message
        _record_failure(row, MonitoredLog.State.UNREACHABLE, err, event=None)
    except core.LogInconsistentError as err:
        result.error = err.message
        _record_failure(row, MonitoredLog.State.INCONSISTENT, err, event=Event.Kind.LOG_INCONSISTENT)
    except ProvenanceError as err:
        result.error = err.message
        _record_failure(row, MonitoredLog.State.INVALID, err, event=Event.Kind.LOG_INVALID)
    finally:
        if source is not None:
            source.close()
        MonitoredLog.objects.filter(pk=pk).update(claimed_at=None)
    result.alerts += resolve_pending()
    return result


def _stored_checkpoint(row: MonitoredLog, source: core.RekorV1Log | core.TileLog) -> core.Checkpoint | None:
    if not row.checkpoint:
        return None
    return core.verify_checkpoint(row.checkpoint, source.log)  # stored, but re-checked: the key may be gone


def _commit_batch(row: MonitoredLog, batch: core.Batch,
                  watches: Sequence[tuple[core.Watch, WatchedIdentity]]) -> tuple[int, int]:
    now = timezone.now()
    matches = alerts = 0
    with transaction.atomic():
        # The cursor must still be where this batch starts: a second reader (after a stale claim) adds nothing.
        locked = MonitoredLog.objects.select_for_update().get(pk=row.pk)
        if locked.next_index != batch.start:
            raise TransientError(f"{row.name}: another worker moved the cursor", code="monitor_raced")
        for entry in batch.entries:
            facts = core.describe_entry(entry.body)
            watch = next((w for core_watch, w in watches if core_watch.matches(facts)), None)
            if watch is None:
                continue
            matches += 1
            alerts += _record_match(row, entry, facts, watch, now)
        checkpoint = batch.checkpoint
        fields = {"next_index": batch.end, "tree_end": batch.tree_end, "state": MonitoredLog.State.OK,
                  "error": "", "error_code": "", "failures": 0, "polled_at": now}
        if checkpoint.text != row.checkpoint:
            fields |= {"checkpoint": checkpoint.text, "checkpoint_size": checkpoint.size, "checkpoint_at": now}
        MonitoredLog.objects.filter(pk=row.pk).update(**fields)
    for name, value in fields.items():
        setattr(row, name, value)
    return matches, alerts


def _record_match(row: MonitoredLog, entry: core.LoggedEntry, facts: core.EntryFacts, watch: WatchedIdentity,
                  now: dt.datetime) -> int:
    digests, signatures = entry_values(facts)
    artifact = fleet_artifact(digests, signatures)
    allowed = _allowed(facts, now) if artifact is None else None
    integrated = (dt.datetime.fromtimestamp(entry.integrated_time, tz=dt.UTC)
                  if entry.integrated_time is not None else None)
    if artifact is not None:
        state = LogMatch.State.KNOWN
    elif allowed is not None:
        state = LogMatch.State.ALLOWED
    elif _grace().total_seconds() > 0:
        state = LogMatch.State.PENDING
    else:
        state = LogMatch.State.UNKNOWN
    match, created = LogMatch.objects.get_or_create(log=row, index=entry.index, defaults={
        "watched": watch, "kind": f"{facts.kind} {facts.version}", "digests": digests, "signatures": signatures,
        "subject": facts.subject[:500], "issuer": facts.issuer[:500],
        "key_fingerprint": (facts.key_fingerprints[0] if facts.key_fingerprints else "")[:80],
        "integrated_time": integrated, "state": state, "artifact": artifact,
        "decided_at": None if state == LogMatch.State.PENDING else now})
    if created and state == LogMatch.State.UNKNOWN:
        return int(_alert_unknown(match))
    return 0


def _alert_unknown(match: LogMatch) -> bool:
    watch = match.watched
    policies = [watch.origin_name] if watch is not None and watch.origin == WatchedIdentity.Origin.POLICY else []
    signer = match.subject or match.key_fingerprint or "an unreadable signer"
    return emit(
        Event.Kind.UNKNOWN_SIGNATURE,
        f"{signer} signed something Provenance has never seen ({match.log.name} entry {match.index})",
        key=f"unknown_signature:{match.log_id}:{match.index}",
        severity=Event.Severity.CRITICAL,
        log=match.log,
        policies=policies,
        detail={"log": match.log.name, "log_url": match.log.url, "index": match.index, "kind": match.kind,
                "digests": match.digests, "subject": match.subject, "issuer": match.issuer,
                "key_fingerprint": match.key_fingerprint,
                "integrated_time": match.integrated_time.isoformat() if match.integrated_time else None,
                "watched": watch.describe() if watch else "", "watched_origin": watch.origin if watch else ""},
    ) is not None


def resolve_pending(now: dt.datetime | None = None) -> int:
    """Decide the matches whose grace period is over: known by now (quiet), allowlisted, or alerted on."""
    now = now or timezone.now()
    alerts = 0
    due = LogMatch.objects.filter(state=LogMatch.State.PENDING, seen_at__lte=now - _grace()).select_related(
        "log", "watched")
    for match in due:
        facts = core.EntryFacts(match.kind, "", tuple(match.digests), (match.subject,) if match.subject else (),
                                match.issuer, {}, (match.key_fingerprint,) if match.key_fingerprint else ())
        with transaction.atomic():
            artifact = fleet_artifact(match.digests, match.signatures)
            if artifact is not None:
                state = LogMatch.State.KNOWN
            elif _allowed(facts, now) is not None:
                state = LogMatch.State.ALLOWED
            else:
                state = LogMatch.State.UNKNOWN
            if LogMatch.objects.filter(pk=match.pk, state=LogMatch.State.PENDING).update(
                    state=state, artifact=artifact, decided_at=now) == 1 and state == LogMatch.State.UNKNOWN:
                alerts += int(_alert_unknown(match))
    return alerts


def _record_failure(row: MonitoredLog, state: str, err: ProvenanceError, *, event: str | None) -> None:
    with transaction.atomic():
        MonitoredLog.objects.filter(pk=row.pk).update(
            state=state, error=err.message[:2000], error_code=err.code[:60], failures=row.failures + 1,
            polled_at=timezone.now())
        if event is not None:
            # One event per problem: the stored checkpoint (what is contradicted) and the error's code.
            fingerprint = hashlib.sha256(f"{row.checkpoint}\n{row.next_index}\n{err.code}".encode()).hexdigest()[:32]
            emit(event, f"{row.name}: {err.message}"[:300], key=f"{event}:{row.pk}:{fingerprint}",
                 severity=Event.Severity.CRITICAL, log=row,
                 detail={"log": row.name, "log_url": row.url, "code": err.code, "message": err.message,
                         "verified_size": row.checkpoint_size, "next_index": row.next_index})
    log.warning("monitor %s: %s (%s)", row.name, err.message, err.code)


def reset_log(row: MonitoredLog) -> None:
    """After an operator looked into an inconsistency: forget the stored checkpoint (the cursor stays)."""
    record("monitor_log.reset", row, {"checkpoint_size": row.checkpoint_size, "state": row.state})
    MonitoredLog.objects.filter(pk=row.pk).update(checkpoint="", checkpoint_size=0, state=MonitoredLog.State.NEW,
                                                  error="", error_code="", failures=0)


def follow_all_logs(*, budget_seconds: float = 50.0) -> int:
    """Periodic: bring the derived watched identities up to date, then follow every enabled log."""
    sync_watches()
    entries = 0
    for pk in MonitoredLog.objects.filter(is_enabled=True).values_list("pk", flat=True):
        entries += follow_log(pk, budget_seconds=budget_seconds).entries
    return entries


# --------------------------------------------------------------------------------------------------------------
# Events and their delivery


def emit(kind: str, title: str, *, key: str, severity: str = Event.Severity.WARNING,
         detail: dict[str, Any] | None = None, source: Source | None = None, artifact: Artifact | None = None,
         log: MonitoredLog | None = None,
         policies: Iterable[str] = ()) -> Event | None:
    """Record an event once (by ``key``) and queue its deliveries; None when it had happened already."""
    with transaction.atomic():
        event, created = Event.objects.get_or_create(key=key[:200], defaults={
            "kind": kind, "title": title[:300], "severity": severity, "detail": detail or {}, "source": source,
            "artifact": artifact, "log": log, "policies": sorted(set(policies))})
        if not created:
            return None
        for rule in matching_rules(event):
            Delivery.objects.create(rule=rule, event=event, next_attempt_at=timezone.now())
        transaction.on_commit(_nudge_deliveries)
    return event


def _nudge_deliveries() -> None:
    from provenance.monitor.tasks import send_deliveries

    try:
        send_deliveries.delay()
    except Exception as err:  # no broker: the beat schedule's retry sends them
        log.warning("cannot queue deliveries now: %s", err)


def matching_rules(event: Event) -> list[AlertRule]:
    result = []
    for rule in AlertRule.objects.filter(is_enabled=True).prefetch_related("sources"):
        if rule.kinds and event.kind not in rule.kinds and event.kind != Event.Kind.TEST:
            continue
        sources = {s.pk for s in rule.sources.all()}
        if sources and event.source_id not in sources:
            continue
        if rule.policies and not set(rule.policies) & set(event.policies):
            continue
        if event.kind == Event.Kind.TEST:
            continue  # a test event goes only to the rule under test
        result.append(rule)
    return result


def event_payload(event: Event, delivery: Delivery | None = None) -> dict[str, Any]:
    return {
        "id": event.pk, "kind": event.kind, "severity": event.severity, "title": event.title,
        "created_at": event.created_at.isoformat(), "detail": event.detail, "policies": event.policies,
        "source": event.source.name if event.source else None,
        "artifact": str(event.artifact) if event.artifact else None,
        "log": event.log.name if event.log else None,
        "delivery": delivery.pk if delivery else None,
    }


def _post_webhook(rule: AlertRule, body: bytes, event: Event, delivery: Delivery) -> tuple[int | None, str]:
    return core.post_webhook(rule.url, body, secret=rule.secret, timeout=WEBHOOK_TIMEOUT,
                             max_response=MAX_RESPONSE_BYTES,
                             headers={"X-Provenance-Event": event.kind, "X-Provenance-Delivery": str(delivery.pk)})


def _send_email(rule: AlertRule, event: Event) -> tuple[int | None, str]:
    body = json.dumps(event_payload(event), indent=2)
    try:
        send_mail(f"[Provenance] {event.title}"[:200], f"{event.title}\n\n{body}\n",
                  getattr(settings, "DEFAULT_FROM_EMAIL", "provenance@localhost"), rule.recipients)
    except Exception as err:  # SMTP and friends: every backend raises its own
        return None, f"{type(err).__name__}: {err}"[:1000]
    return None, ""


def send_delivery(pk: int) -> str:
    """Send one delivery if it is due and nobody else is; returns its state afterwards."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=_claim_seconds())
    claimed = Delivery.objects.filter(
        Q(state=Delivery.State.PENDING, next_attempt_at__lte=now) | Q(state=Delivery.State.SENDING,
                                                                        claimed_at__lt=stale),
        pk=pk).update(state=Delivery.State.SENDING, claimed_at=now)
    delivery = Delivery.objects.select_related("rule", "event", "event__source", "event__artifact",
                                               "event__log").get(pk=pk)
    if claimed != 1:
        return delivery.state
    rule, event = delivery.rule, delivery.event
    if rule.channel == AlertRule.Channel.WEBHOOK:
        body = json.dumps(event_payload(event, delivery), sort_keys=True).encode()
        status, error = _post_webhook(rule, body, event, delivery)
    else:
        status, error = _send_email(rule, event)
    attempts = delivery.attempts + 1
    if not error:
        fields: dict[str, Any] = {"state": Delivery.State.DELIVERED, "delivered_at": timezone.now(), "last_error": ""}
    elif attempts >= MAX_ATTEMPTS:
        fields = {"state": Delivery.State.FAILED, "last_error": error}
    else:
        fields = {"state": Delivery.State.PENDING, "last_error": error,
                  "next_attempt_at": timezone.now() + dt.timedelta(seconds=BACKOFF_SECONDS * 2 ** (attempts - 1))}
    Delivery.objects.filter(pk=pk).update(attempts=attempts, last_status=status, claimed_at=None, **fields)
    if error:
        log.warning("delivery %s of rule %s failed (attempt %s): %s", pk, rule.name, attempts, error)
    return str(fields["state"])


def send_due_deliveries(limit: int = 200) -> int:
    """Send every delivery that is due (new or waiting for its retry); returns how many were delivered."""
    due = Delivery.objects.filter(state=Delivery.State.PENDING, next_attempt_at__lte=timezone.now()).order_by(
        "next_attempt_at").values_list("pk", flat=True)[:limit]
    return sum(send_delivery(pk) == Delivery.State.DELIVERED for pk in list(due))


def test_rule(rule: AlertRule) -> Delivery:
    """Send a test event through ``rule`` now; the delivery says how it went."""
    record("alert_rule.test", rule)
    with transaction.atomic():
        event = Event.objects.create(kind=Event.Kind.TEST, severity=Event.Severity.INFO,
                                     title=f"Test of the alert rule {rule.name}",
                                     key=f"test:{rule.pk}:{time.time_ns()}",
                                     detail={"rule": rule.name})
        delivery = Delivery.objects.create(rule=rule, event=event, next_attempt_at=timezone.now())
    send_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


RULE_FIELDS = ("name", "channel", "kinds", "policies", "url", "secret", "emails", "is_enabled")


def validate_rule(values: dict[str, Any]) -> None:
    """Raise ``ValueError`` saying what is wrong with a rule."""
    kinds = values.get("kinds") or []
    if not isinstance(kinds, list | tuple) or not all(isinstance(k, str) for k in kinds):
        raise ValueError("kinds: a list of event kinds")
    unknown = set(kinds) - set(Event.Kind.values)
    if unknown:
        raise ValueError(f"kinds: unknown event kinds {sorted(unknown)} (known: {', '.join(Event.Kind.values)})")
    if values.get("channel") == AlertRule.Channel.WEBHOOK:
        if not str(values.get("url", "")).startswith(("https://", "http://")):
            raise ValueError("url: a webhook needs an http(s) URL")
        if not isinstance(values.get("secret") or "", str) or len(values.get("secret") or "") < 16:
            raise ValueError("secret: at least 16 characters, to sign the webhook's requests")
    elif values.get("channel") == AlertRule.Channel.EMAIL:
        if not [a for a in str(values.get("emails", "")).split(",") if "@" in a]:
            raise ValueError("emails: at least one address")
    else:
        raise ValueError("channel: webhook or email")


@transaction.atomic
def save_rule(values: dict[str, Any], *, rule: AlertRule | None = None,
              sources: Iterable[Source] | None = None) -> AlertRule:
    """Create or change a rule (validated: raises ``ValueError``); audited without its secret."""
    values = {k: v for k, v in values.items() if k in RULE_FIELDS}
    if rule is not None and not values.get("secret"):
        values["secret"] = rule.secret  # a form never shows the secret: empty keeps it
    validate_rule({**({} if rule is None else {k: getattr(rule, k) for k in RULE_FIELDS}), **values})
    if rule is None:
        rule = AlertRule.objects.create(**values)
        action = "alert_rule.create"
    else:
        for name, value in values.items():
            setattr(rule, name, value)
        rule.save()
        action = "alert_rule.update"
    if sources is not None:
        rule.sources.set(list(sources))
    record(action, rule, {k: v for k, v in values.items() if k != "secret"} | {
        "sources": [s.name for s in rule.sources.all()]})
    return rule


def delete_rule(rule: AlertRule) -> None:
    record("alert_rule.delete", rule, {"name": rule.name})
    rule.delete()


def add_allowlist(*, note: str, digest: str = "", subject_regexp: str = "",
                  expires_at: dt.datetime | None = None) -> Allowlist:
    if bool(digest) == bool(subject_regexp):
        raise ValueError("give either a digest or a subject regexp")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError("digest: expected sha256:<64 hex digits>")
    if subject_regexp:
        try:
            re.compile(subject_regexp)
        except re.error as err:
            raise ValueError(f"subject_regexp: {err}") from err
    item = Allowlist.objects.create(note=note, digest=digest, subject_regexp=subject_regexp, expires_at=expires_at)
    record("allowlist.add", item, {"digest": digest, "subject_regexp": subject_regexp, "note": note})
    return item


def remove_allowlist(item: Allowlist) -> None:
    record("allowlist.remove", item, {"digest": item.digest, "subject_regexp": item.subject_regexp})
    item.delete()


def key_fingerprint(pem: str) -> str:
    """``sha256:<hex>`` of a PEM public key, empty when it is not one (for a form that takes a key)."""
    return key_fingerprint_or_empty(pem.encode())


def set_log_enabled(row: MonitoredLog, enabled: bool) -> None:
    MonitoredLog.objects.filter(pk=row.pk).update(is_enabled=enabled)
    record("monitor_log.resume" if enabled else "monitor_log.pause", row)
