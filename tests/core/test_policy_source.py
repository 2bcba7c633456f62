"""spec.source.requireSignedCommit: parsing, export and evaluation over stored facts (no database, no git)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provenance.core.policy import (
    ArtifactFacts,
    CommitFacts,
    Evaluator,
    EvidenceFacts,
    PolicyError,
    TrustStatus,
    dump_policy,
    parse_policy,
)

WORKFLOW = "https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main"
ACTIONS = "https://token.actions.githubusercontent.com"
SHA = "5f1c0de3a9b1e7c2d4f6a8b0c2e4f6a8b0c2e4f6"
REPO = "https://github.com/myorg/app"
DIGEST = "sha256:" + "a" * 64

POLICY = f"""apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: signed-source
spec:
  images:
    - glob: "ghcr.io/myorg/**"
  authorities:
    - name: release
      keyless:
        url: https://fulcio.sigstore.dev
        identities:
          - issuer: {ACTIONS}
            subject: {WORKFLOW}
  source:
    requireSignedCommit:
      identities:
        - issuer: https://accounts.example.com
          subject: alice@example.com
      protectedRefs: [main, "v*"]
"""


def _provenance_v1(repository: str = REPO, sha: str = SHA) -> dict[str, object]:
    return {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
            "subject": [{"name": "ghcr.io/myorg/app", "digest": {"sha256": "a" * 64}}],
            "predicate": {"buildDefinition": {
                "buildType": "https://github.com/actions/runner",
                "externalParameters": {"workflow": {"repository": repository, "ref": "refs/heads/main",
                                                    "path": ".github/workflows/release.yml"}},
                "resolvedDependencies": [{"uri": f"git+{repository}@refs/heads/main",
                                          "digest": {"gitCommit": sha}}]}}}


def _provenance_v02(repository: str = REPO, sha: str = SHA) -> dict[str, object]:
    return {"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "ghcr.io/myorg/app", "digest": {"sha256": "a" * 64}}],
            "predicate": {"builder": {"id": "https://github.com/actions/runner"},
                          "invocation": {"configSource": {"uri": f"git+{repository}@refs/heads/main",
                                                          "digest": {"sha1": sha}, "entryPoint": "release.yml"}}}}


def _signature() -> EvidenceFacts:
    return EvidenceFacts(1, "signature", "verified", DIGEST, "sha256:" + "b" * 64, "root", identity=WORKFLOW,
                         issuer=ACTIONS)


def _attestation(statement: dict[str, object], *, identity: str = WORKFLOW, ref: int = 2) -> EvidenceFacts:
    return EvidenceFacts(ref, "attestation", "verified", DIGEST, "sha256:" + f"{ref:x}" * 64, "root",
                         identity=identity, issuer=ACTIONS, predicate_type=str(statement["predicateType"]),
                         statement=statement)


def _facts(*evidence: EvidenceFacts) -> ArtifactFacts:
    return ArtifactFacts(1, DIGEST, ("ghcr.io/myorg/app",), evidence)


GOOD = CommitFacts(source="app", sha=SHA, is_fetched=True, ref=7, signature_kind="gitsign", status="verified",
                   identity="alice@example.com", issuer="https://accounts.example.com", log_status="verified",
                   refs=("refs/heads/main", "refs/tags/v1"), protected_refs=("refs/heads/main", "refs/tags/v1"),
                   has_protected_refs=True)


class Commits:
    """A resolver holding git source facts; records what was asked."""

    def __init__(self, commits: dict[tuple[str, str], tuple[CommitFacts, ...]] | None = None) -> None:
        self.commits = commits if commits is not None else {(REPO, SHA): (GOOD,)}
        self.asked: list[tuple[str, str]] = []

    def layer(self, evidence):  # type: ignore[no-untyped-def]
        return None

    def trust_root(self, name):  # type: ignore[no-untyped-def]
        return None

    def key(self, name):  # type: ignore[no-untyped-def]
        return None

    def source_commits(self, repository: str, sha: str) -> tuple[CommitFacts, ...] | None:
        self.asked.append((repository, sha))
        return self.commits.get((repository, sha))


def _verdict(*evidence: EvidenceFacts, commit: CommitFacts | None = GOOD, policy: str = POLICY):  # type: ignore[no-untyped-def]
    resolver = Commits({(REPO, SHA): (commit,)} if commit is not None else {})
    return Evaluator([parse_policy(policy)], resolver=resolver).evaluate(_facts(*evidence)), resolver


# -- parsing -------------------------------------------------------------------------------------------------


def test_source_requirement_parses_warns_and_round_trips():
    policy = parse_policy(POLICY)
    assert policy.source is not None
    assert [(i.issuer, i.subject) for i in policy.source.identities] == [("https://accounts.example.com",
                                                                          "alice@example.com")]
    assert policy.source.protected_refs == ("main", "v*")
    assert any("Provenance's extension" in str(w) and "spec.source" in str(w) for w in policy.warnings)
    assert parse_policy(dump_policy(policy)) == policy
    assert parse_policy(dump_policy(policy)).source == policy.source


@pytest.mark.parametrize(("replacement", "needle"), [
    ("  source:\n    - oci: ghcr.io/sigs\n", "belong under an authority"),
    ("  source:\n    requireSignedComit: {}\n", "'requireSignedComit' is not a source requirement"),
    ("  source: {}\n", "requireSignedCommit is required"),
    ("  source:\n    requireSignedCommit:\n      protectedRefs: [main]\n", "identities is required"),
    ("  source:\n    requireSignedCommit:\n      identities: []\n", "needs at least one identity"),
    ("  source:\n    requireSignedCommit:\n      identities:\n        - subject: a\n          issuer: b\n"
     "      protectedRef: [main]\n", "'protectedRef' is not a field of requireSignedCommit"),
    ("  source:\n    requireSignedCommit:\n      identities:\n        - subject: a\n          issuer: b\n"
     "      protectedRefs: []\n", "needs at least one branch or tag glob"),
    ("  source:\n    requireSignedCommit:\n      identities:\n        - subject: a\n          issuer: b\n"
     "      protectedRefs: [\"main branch\"]\n", "not a branch or tag glob"),
    ("  source:\n    requireSignedCommit:\n      identities:\n        - subjectRegExp: \"(?=x)\"\n"
     "          issuer: b\n", "lookaround"),
])
def test_source_requirement_is_validated_strictly(replacement, needle):
    text = POLICY.split("  source:\n")[0] + replacement
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert needle in str(info.value) and info.value.line > 0


def test_a_policy_without_source_is_unchanged():
    policy = parse_policy(POLICY.split("  source:\n")[0])
    assert policy.source is None and "\n  source:" not in dump_policy(policy)


# -- evaluation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [_provenance_v1(), _provenance_v02()], ids=["slsa-v1", "slsa-v0.2"])
def test_trusted_when_the_provenance_names_a_signed_protected_commit(statement):
    verdict, resolver = _verdict(_signature(), _attestation(statement))
    assert verdict.status is TrustStatus.TRUSTED, verdict.reason
    assert resolver.asked == [(REPO, SHA)]
    assert "commit 5f1c0de3a9b1 of https://github.com/myorg/app" in verdict.reason


def test_the_authority_still_decides_first():
    verdict, resolver = _verdict(_attestation(_provenance_v1()))  # no signature: the authority fails
    assert verdict.status is TrustStatus.UNTRUSTED and verdict.code == "no_signature"
    assert resolver.asked == []


@pytest.mark.parametrize(("commit", "status", "code"), [
    (replace(GOOD, is_fetched=False, signature_kind="none", status="unsigned"), TrustStatus.ERROR,
     "commit_not_fetched"),
    (replace(GOOD, signature_kind="none", status="unsigned", identity="", issuer=""), TrustStatus.UNTRUSTED,
     "commit_unsigned"),
    (replace(GOOD, signature_kind="ssh", identity="alice@example.com", issuer=""), TrustStatus.UNTRUSTED,
     "commit_not_gitsign"),
    (replace(GOOD, status="log_not_checked", log_status="not_checked",
             failed_checks=(("tlog", "tlog_not_checked"),)), TrustStatus.ERROR, "commit_log_not_checked"),
    (replace(GOOD, status="invalid", failed_checks=(("subject", "digest_mismatch"),),
             reason="the commit was edited after signing"), TrustStatus.UNTRUSTED, "commit_signature_invalid"),
    (replace(GOOD, status="untrusted", failed_checks=(("certificate", "certificate_expired"),)),
     TrustStatus.UNTRUSTED, "commit_signature_invalid"),
    (replace(GOOD, status="untrusted", failed_checks=(("identity", "issuer_extensions_disagree"),)),
     TrustStatus.UNTRUSTED, "commit_signature_invalid"),
    (replace(GOOD, identity="mallory@example.com"), TrustStatus.UNTRUSTED, "commit_identity_mismatch"),
    (replace(GOOD, has_protected_refs=False, protected_refs=()), TrustStatus.ERROR, "protected_refs_missing"),
    (replace(GOOD, refs=("refs/heads/feature",), protected_refs=()), TrustStatus.UNTRUSTED, "commit_not_protected"),
    (replace(GOOD, refs=("refs/heads/release", ), protected_refs=("refs/heads/release",)), TrustStatus.UNTRUSTED,
     "commit_not_protected"),  # protected by the source, but not one of the policy's protectedRefs
    (replace(GOOD, refs=(), protected_refs=()), TrustStatus.ERROR, "commit_reachability_unknown"),
])
def test_a_commit_the_requirement_cannot_accept_is_never_trusted(commit, status, code):
    verdict, _ = _verdict(_signature(), _attestation(_provenance_v1()), commit=commit)
    assert (verdict.status, verdict.code) == (status, code), verdict.reason
    assert verdict.policies[0].findings[0].authority == "source"


def test_a_valid_signature_by_another_signer_than_the_source_expects_is_matched_by_the_policy():
    # The git source expects someone else (its verdict is untrusted on identity only): the policy's identity decides.
    commit = replace(GOOD, status="untrusted", failed_checks=(("identity", "identity_mismatch"),))
    verdict, _ = _verdict(_signature(), _attestation(_provenance_v1()), commit=commit)
    assert verdict.status is TrustStatus.TRUSTED, verdict.reason


def test_no_git_source_for_the_repository_is_an_error():
    verdict, _ = _verdict(_signature(), _attestation(_provenance_v1()), commit=None)
    assert (verdict.status, verdict.code) == (TrustStatus.ERROR, "git_source_missing")
    assert "no git source mirrors https://github.com/myorg/app" in verdict.reason
    # The resolver that has nothing says the same.
    plain = Evaluator([parse_policy(POLICY)]).evaluate(_facts(_signature(), _attestation(_provenance_v1())))
    assert (plain.status, plain.code) == (TrustStatus.ERROR, "git_source_missing")


def test_a_provenance_is_needed_and_must_name_a_commit():
    verdict, _ = _verdict(_signature())
    assert (verdict.status, verdict.code) == (TrustStatus.UNTRUSTED, "provenance_missing")
    no_source = _provenance_v1()
    no_source["predicate"] = {"buildDefinition": {"buildType": "x"}}
    verdict, _ = _verdict(_signature(), _attestation(no_source))
    assert (verdict.status, verdict.code) == (TrustStatus.UNTRUSTED, "provenance_no_source")
    verdict, _ = _verdict(_signature(), _attestation(_provenance_v1(sha="main")))
    assert (verdict.status, verdict.code) == (TrustStatus.UNTRUSTED, "source_commit_malformed")


def test_a_provenance_by_a_signer_no_authority_accepts_does_not_count():
    attacker = "https://github.com/someone-else/fork/.github/workflows/release.yml@refs/heads/main"
    verdict, resolver = _verdict(_signature(), _attestation(_provenance_v1(), identity=attacker))
    assert (verdict.status, verdict.code) == (TrustStatus.UNTRUSTED, "identity_mismatch")
    assert resolver.asked == [] and "source: provenance" in verdict.reason


def test_one_good_provenance_among_bad_ones_is_enough():
    verdict, resolver = _verdict(_signature(), _attestation(_provenance_v1(sha="1" * 40), ref=3),
                                 _attestation(_provenance_v1(), ref=4))
    assert verdict.status is TrustStatus.TRUSTED, verdict.reason
    assert resolver.asked == [(REPO, "1" * 40), (REPO, SHA)]


def test_warn_mode_reports_a_failing_source_as_warn():
    verdict, _ = _verdict(_signature(), _attestation(_provenance_v1()), commit=replace(GOOD, identity="mallory"),
                          policy=POLICY.replace("  authorities:", "  mode: warn\n  authorities:"))
    assert (verdict.status, verdict.code) == (TrustStatus.WARN, "commit_identity_mismatch")
