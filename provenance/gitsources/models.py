"""Git repositories as sources: the repository, its fetches (the row is the job), refs, commits and verdicts."""

from __future__ import annotations

from django.db import models

from provenance.core.types import IdentityPolicy
from provenance.core.verify import CommitStatus, LogStatus, SignatureKind


class GitSource(models.Model):
    """A repository git can reach (https, ssh, file URL or an absolute path), mirrored under the data dir."""

    name = models.CharField(max_length=200, unique=True)
    location = models.CharField(max_length=1000, help_text="An https, ssh or file URL, host:path, or an absolute path.")
    branches = models.CharField(max_length=1000, blank=True, help_text="Branches to fetch, space separated (all "
                                                                        "when empty).")
    tag_pattern = models.CharField(max_length=200, blank=True, help_text="Tags to fetch, a glob like v* (none when "
                                                                          "empty).")
    max_commits = models.PositiveIntegerField(default=200, help_text="The newest N commits are checked.")
    since = models.DateTimeField(null=True, blank=True, help_text="Only commits made since then.")
    protected_refs = models.CharField(max_length=1000, blank=True, help_text="Branches and tags (globs) that count "
                                                                              "as protected, for policies.")
    trust_root = models.ForeignKey("trust.TrustRoot", on_delete=models.PROTECT, related_name="git_sources")
    expected_identity = models.CharField(max_length=500, blank=True)
    expected_identity_regexp = models.CharField(max_length=500, blank=True)
    expected_issuer = models.CharField(max_length=500, blank=True)
    allowed_signers = models.TextField(blank=True, help_text="SSH signers, in the format of git's "
                                                              "gpg.ssh.allowedSignersFile.")
    is_scheduled = models.BooleanField(default=True, help_text="Fetch again periodically.")
    is_shallow = models.BooleanField(default=False)
    warning = models.TextField(blank=True)
    last_error = models.TextField(blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def branch_list(self) -> list[str]:
        return self.branches.replace(",", " ").split()

    @property
    def identity_policy(self) -> IdentityPolicy | None:
        if not (self.expected_identity or self.expected_identity_regexp) or not self.expected_issuer:
            return None
        return IdentityPolicy(issuer=self.expected_issuer, identity=self.expected_identity,
                              identity_regexp=self.expected_identity_regexp)


class GitFetch(models.Model):
    """One fetch and check of a repository: the job row a worker claims."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(GitSource, on_delete=models.CASCADE, related_name="fetches")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    commits_seen = models.PositiveIntegerField(default=0)
    commits_new = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.DONE, self.State.FAILED}


class SignatureVerdict(models.Model):
    """What a commit's or tag's signature shows (from :class:`provenance.core.verify.CommitVerification`)."""

    signature_kind = models.CharField(max_length=10, choices=[(k.value, k.value) for k in SignatureKind],
                                      default=SignatureKind.NONE.value)
    status = models.CharField(max_length=20, choices=[(s.value, s.value) for s in CommitStatus],
                              default=CommitStatus.UNSIGNED.value, db_index=True)
    signer_identity = models.CharField(max_length=500, blank=True, db_index=True)
    signer_issuer = models.CharField(max_length=500, blank=True)
    signer_key = models.CharField(max_length=200, blank=True)
    log_status = models.CharField(max_length=20, choices=[(s.value, s.value) for s in LogStatus],
                                  default=LogStatus.NOT_APPLICABLE.value)
    log_index = models.BigIntegerField(null=True, blank=True)
    integrated_time = models.BigIntegerField(null=True, blank=True)
    signing_time = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    checks = models.JSONField(default=list)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_verified(self) -> bool:
        return self.status == CommitStatus.VERIFIED


class Commit(SignatureVerdict):
    """One commit of a repository with its signature verdict; the raw object is kept for re-verification."""

    source = models.ForeignKey(GitSource, on_delete=models.CASCADE, related_name="commits")
    sha = models.CharField(max_length=40)
    raw = models.BinaryField()
    parents = models.JSONField(default=list)
    author_name = models.CharField(max_length=200, blank=True)
    author_email = models.CharField(max_length=200, blank=True)
    authored_at = models.DateTimeField(null=True, blank=True)
    committer_name = models.CharField(max_length=200, blank=True)
    committer_email = models.CharField(max_length=200, blank=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    refs = models.JSONField(default=list, help_text="The fetched branches and tags this commit is reachable from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-committed_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["source", "sha"], name="gitsources_commit_unique")]
        indexes = [models.Index(fields=["sha"], name="gitsources_commit_sha")]

    def __str__(self) -> str:
        return f"{self.sha[:12]} {self.subject}"


class GitRef(SignatureVerdict):
    """A branch or tag; an annotated tag's own signature is judged like a commit's."""

    source = models.ForeignKey(GitSource, on_delete=models.CASCADE, related_name="refs")
    name = models.CharField(max_length=300)
    target = models.CharField(max_length=40)
    commit_sha = models.CharField(max_length=40)
    is_tag = models.BooleanField(default=False)
    is_annotated = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["source", "name"], name="gitsources_ref_unique")]

    @property
    def short_name(self) -> str:
        return self.name.removeprefix("refs/heads/").removeprefix("refs/tags/")
