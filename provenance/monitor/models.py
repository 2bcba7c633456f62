"""Transparency logs followed, the identities watched in them, what was seen, the events raised and where they are
delivered."""

from __future__ import annotations

from django.db import models


class MonitoredLog(models.Model):
    """A log followed from ``start_index``: ``next_index`` is the first entry not yet looked at, ``checkpoint`` the
    last one verified (every later checkpoint must be consistent with it)."""

    class Kind(models.TextChoices):
        REKOR_V1 = "rekor_v1", "Rekor v1 (REST API)"
        TILES = "tiles", "Rekor v2 (tiles)"

    class State(models.TextChoices):
        NEW = "new", "Not read yet"
        OK = "ok", "Following"
        UNREACHABLE = "unreachable", "Unreachable (retrying)"
        INCONSISTENT = "inconsistent", "Inconsistent"
        INVALID = "invalid", "Answers do not verify"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REKOR_V1)
    url = models.URLField(max_length=300, help_text="Rekor's base URL, or the tiles log's base URL.")
    trust_root = models.ForeignKey("trust.TrustRoot", on_delete=models.PROTECT, related_name="monitored_logs")
    log_id = models.CharField(max_length=64, help_text="The log's id (hex) in the trust root: its key.")
    is_enabled = models.BooleanField(default=True)
    batch_size = models.PositiveIntegerField(default=100)
    start_index = models.PositiveBigIntegerField(default=0)
    next_index = models.PositiveBigIntegerField(default=0)
    checkpoint = models.TextField(blank=True, help_text="The last verified checkpoint (signed note).")
    checkpoint_size = models.PositiveBigIntegerField(default=0)
    checkpoint_at = models.DateTimeField(null=True, blank=True)
    tree_end = models.PositiveBigIntegerField(default=0, help_text="The log's size (next index) when last read.")
    state = models.CharField(max_length=12, choices=State.choices, default=State.NEW)
    error_code = models.CharField(max_length=60, blank=True)
    error = models.TextField(blank=True)
    failures = models.PositiveIntegerField(default=0, help_text="Failed reads in a row.")
    polled_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="A worker is reading it since then.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def lag(self) -> int:
        return max(0, self.tree_end - self.next_index)


class WatchedIdentity(models.Model):
    """A signer to watch for: taken from the policies and sources (kept in step with them) or added by hand."""

    class Origin(models.TextChoices):
        POLICY = "policy", "A policy accepts it"
        SOURCE = "source", "A source expects it"
        MANUAL = "manual", "Added by hand"

    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.MANUAL)
    origin_name = models.CharField(max_length=253, blank=True, help_text="The policy or source it comes from.")
    subject = models.CharField(max_length=500, blank=True)
    subject_regexp = models.CharField(max_length=500, blank=True)
    issuer = models.CharField(max_length=500, blank=True)
    issuer_regexp = models.CharField(max_length=500, blank=True)
    claims = models.JSONField(default=dict, blank=True, help_text="Workflow claims: repository, ref, trigger, sha.")
    key_fingerprint = models.CharField(max_length=80, blank=True, help_text="sha256:<hex> of the DER public key.")
    is_enabled = models.BooleanField(default=True)
    fingerprint = models.CharField(max_length=64, editable=False, help_text="What it watches, hashed.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["origin", "subject", "subject_regexp", "key_fingerprint"]
        constraints = [models.UniqueConstraint(fields=["origin", "origin_name", "fingerprint"],
                                               name="watch_unique_per_origin")]
        verbose_name_plural = "watched identities"

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        if self.key_fingerprint:
            return f"key {self.key_fingerprint[:23]}…"
        who = self.subject or (f"/{self.subject_regexp}/" if self.subject_regexp else "any subject")
        issuer = self.issuer or (f"/{self.issuer_regexp}/" if self.issuer_regexp else "any issuer")
        claims = "".join(f", {k}={v}" for k, v in sorted(self.claims.items()))
        return f"{who} (issuer {issuer}{claims})"


class Allowlist(models.Model):
    """Log entries not to alert on: a digest, or signers whose SAN matches a regexp; until ``expires_at``."""

    digest = models.CharField(max_length=140, blank=True)
    subject_regexp = models.CharField(max_length=500, blank=True)
    note = models.CharField(max_length=300)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "allowlist"

    def __str__(self) -> str:
        return self.digest or f"/{self.subject_regexp}/"


class LogMatch(models.Model):
    """A log entry signed by a watched identity, and whether the fleet knows what it signed."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for a scan (grace period)"
        KNOWN = "known", "Known to the fleet"
        ALLOWED = "allowed", "Allowlisted"
        UNKNOWN = "unknown", "Never seen by Provenance"

    log = models.ForeignKey(MonitoredLog, on_delete=models.CASCADE, related_name="matches")
    index = models.PositiveBigIntegerField()
    watched = models.ForeignKey(WatchedIdentity, null=True, on_delete=models.SET_NULL, related_name="matches")
    kind = models.CharField(max_length=40)
    digests = models.JSONField(default=list)
    signatures = models.JSONField(default=list, help_text="sig:<sha256> of each logged signature.")
    subject = models.CharField(max_length=500, blank=True)
    issuer = models.CharField(max_length=500, blank=True)
    key_fingerprint = models.CharField(max_length=80, blank=True)
    integrated_time = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, db_index=True)
    artifact = models.ForeignKey("artifacts.Artifact", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="log_matches")
    seen_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-index"]
        constraints = [models.UniqueConstraint(fields=["log", "index"], name="logmatch_unique_entry")]


class EvidenceSeen(models.Model):
    """The evidence an artifact had after its last scan, kept to notice what a later scan no longer finds."""

    artifact = models.ForeignKey("artifacts.Artifact", on_delete=models.CASCADE, related_name="evidence_seen")
    kind = models.CharField(max_length=20)
    evidence_key = models.CharField(max_length=64)
    location = models.CharField(max_length=300, blank=True)
    identity = models.CharField(max_length=500, blank=True)
    issuer = models.CharField(max_length=500, blank=True)
    key = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=20, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["artifact", "kind", "evidence_key"],
                                               name="evidenceseen_unique")]


class Event(models.Model):
    """Something worth knowing; ``key`` makes each one happen once however often it is noticed."""

    class Kind(models.TextChoices):
        UNKNOWN_SIGNATURE = "unknown_signature", "A watched identity signed something never seen"
        LOG_INCONSISTENT = "log_inconsistent", "A log rewrote its history"
        LOG_INVALID = "log_invalid", "A log's answers do not verify"
        TAG_MOVED = "tag_moved", "A tag moved"
        EVIDENCE_GONE = "evidence_gone", "A signature or attestation is gone"
        NEW_SIGNER = "new_signer", "A new signer"
        VERDICT_FLIPPED = "verdict_flipped", "A verdict flipped"
        TRUST_ROOT_EXPIRING = "trust_root_expiring", "A trust root is about to expire"
        TEST = "test", "Test"

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    kind = models.CharField(max_length=30, choices=Kind.choices, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    title = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)
    key = models.CharField(max_length=200, unique=True)
    source = models.ForeignKey("sources.Source", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="monitor_events")
    artifact = models.ForeignKey("artifacts.Artifact", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="monitor_events")
    log = models.ForeignKey(MonitoredLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    policies = models.JSONField(default=list, blank=True, help_text="Names of the policies it concerns.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.title


class AlertRule(models.Model):
    """Which events to send where: by webhook (JSON, HMAC-SHA256 signed) or e-mail. Empty filters match all."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        EMAIL = "email", "E-mail"

    name = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    kinds = models.JSONField(default=list, blank=True, help_text="Event kinds; empty: all.")
    sources = models.ManyToManyField("sources.Source", blank=True, related_name="alert_rules")
    policies = models.JSONField(default=list, blank=True, help_text="Policy names; empty: all.")
    url = models.URLField(max_length=500, blank=True)
    secret = models.CharField(max_length=200, blank=True, help_text="HMAC key for the webhook's signature.")
    emails = models.CharField(max_length=1000, blank=True, help_text="Comma-separated addresses.")
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.emails.split(",") if a.strip()]


class Delivery(models.Model):
    """One event sent by one rule; the row is the job (retried with backoff, failures kept)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["rule", "event"], name="delivery_unique")]
        verbose_name_plural = "deliveries"


class FleetDigest(models.Model):
    """What a log entry for stored evidence can record (digests, and ``sig:<sha256>`` of its signatures), so that
    "does the fleet know what this entry signed?" is one indexed lookup."""

    evidence = models.ForeignKey("artifacts.Evidence", on_delete=models.CASCADE, related_name="fleet_digests")
    value = models.CharField(max_length=80, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["evidence", "value"], name="fleetdigest_unique")]
