"""gitsign, SSH and GPG commit signatures on commits real git wrote, signed by the test Sigstore."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provenance.core.testsigstore import LeafOptions, TestSigstore
from provenance.core.trustroot import TrustRoot
from provenance.core.types import IdentityPolicy
from provenance.core.verify import CommitStatus, LogStatus, SignatureKind, split_signature, verify_git_object
from tests.factories import make_sigstore
from tests.gitsources.gitsigning import (
    IDENTITY,
    ISSUER,
    commit_payload,
    git,
    gitsign_signature,
    new_repo,
    signed_commit,
    ssh_key,
    ssh_signed_commit,
    transparency_log_entry,
    with_gpgsig,
    write_object,
)

POLICY = IdentityPolicy(issuer=ISSUER, identity=IDENTITY)


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return make_sigstore()


@pytest.fixture(scope="module")
def root(sigstore: TestSigstore) -> TrustRoot:
    return TrustRoot.from_json(sigstore.trusted_root_json(), name="test")


def _verify(raw: bytes, root: TrustRoot, policy: IdentityPolicy | None = POLICY, **kw: object):  # type: ignore[no-untyped-def]
    return verify_git_object(raw, trust_root=root, identity=policy, **kw)  # type: ignore[arg-type]


def _failed(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [c.code for c in result.checks if not c.ok]


def test_offline_gitsign_commit_is_verified(tmp_path: Path, sigstore: TestSigstore, root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    commit = signed_commit(repo, sigstore, "signed")
    git(repo, "fsck", "--strict")  # git itself accepts the object
    assert git(repo, "cat-file", "-t", commit.sha) == "commit"
    result = _verify(git(repo, "cat-file", "commit", commit.sha).encode() + b"\n", root)
    assert result.status is CommitStatus.VERIFIED, _failed(result)
    assert result.kind is SignatureKind.GITSIGN
    assert (result.identity, result.issuer) == (IDENTITY, ISSUER)
    assert result.log_status is LogStatus.VERIFIED and result.log_index == commit.entry.index  # type: ignore[union-attr]
    codes = {c.code for c in result.checks}
    assert {"digest_ok", "signature_ok", "tlog_body_ok", "tlog_set_ok", "tlog_ok", "chain_ok", "sct_ok",
            "identity_ok", "issuer_ok"} <= codes


def test_payload_is_the_commit_without_its_signature_header(tmp_path: Path, sigstore: TestSigstore) -> None:
    repo = new_repo(tmp_path / "repo")
    payload = commit_payload(repo, "message\n\nbody with gpgsig in it")
    signature, _ = gitsign_signature(payload, sigstore)
    split_payload, split_sig = split_signature(with_gpgsig(payload, signature))
    assert split_payload == payload and split_sig == signature


def test_online_mode_signature_is_valid_but_never_verified(tmp_path: Path, sigstore: TestSigstore,
                                                           root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    commit = signed_commit(repo, sigstore, "online", offline=False)
    result = _verify(commit.raw, root)
    assert result.status is CommitStatus.LOG_NOT_CHECKED
    assert not result.is_verified
    assert result.log_status is LogStatus.NOT_CHECKED
    assert _failed(result) == ["tlog_not_checked"]
    assert "signature valid, log entry not checked" in result.reason


def test_wrong_identity_is_untrusted(tmp_path: Path, sigstore: TestSigstore, root: TrustRoot) -> None:
    commit = signed_commit(new_repo(tmp_path / "repo"), sigstore, "mallory", identity="mallory@example.com")
    result = _verify(commit.raw, root)
    assert result.status is CommitStatus.UNTRUSTED
    assert _failed(result) == ["identity_mismatch"]
    regexp = _verify(commit.raw, root, IdentityPolicy(issuer=ISSUER, identity_regexp=r"alice@example\.com"))
    assert _failed(regexp) == ["identity_mismatch"]
    other_issuer = IdentityPolicy(issuer="https://other.example", identity="mallory@example.com")
    wrong_issuer = _verify(commit.raw, root, other_issuer)
    assert _failed(wrong_issuer) == ["issuer_mismatch"]


def test_commit_edited_after_signing_is_invalid(tmp_path: Path, sigstore: TestSigstore, root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    commit = signed_commit(repo, sigstore, "pay alice 10")
    edited = commit.raw.replace(b"pay alice 10", b"pay mallory 1000")
    write_object(repo, edited, ref="refs/heads/edited")
    result = _verify(edited, root)
    assert result.status is CommitStatus.INVALID
    assert _failed(result) == ["digest_mismatch"]


def test_certificate_used_after_its_validity_is_untrusted(tmp_path: Path, sigstore: TestSigstore,
                                                          root: TrustRoot) -> None:
    now = datetime.now(UTC)
    leaf = LeafOptions(not_before=now - timedelta(hours=1), validity=timedelta(minutes=10))
    commit = signed_commit(new_repo(tmp_path / "repo"), sigstore, "late", now=now, leaf=leaf)
    result = _verify(commit.raw, root)
    assert result.status is CommitStatus.UNTRUSTED
    assert "cert_not_valid_at_signing_time" in _failed(result)


def test_unsigned_commit(tmp_path: Path, root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "plain")
    raw = git(repo, "cat-file", "commit", "HEAD").encode() + b"\n"
    result = _verify(raw, root)
    assert (result.status, result.kind) == (CommitStatus.UNSIGNED, SignatureKind.NONE)


def test_log_entry_of_another_signature_is_invalid(tmp_path: Path, sigstore: TestSigstore, root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    first = signed_commit(repo, sigstore, "first")
    assert first.entry is not None
    stolen = transparency_log_entry(sigstore, first.entry)
    second = signed_commit(repo, sigstore, "second", entry_override=stolen)
    result = _verify(second.raw, root)
    assert result.status is CommitStatus.INVALID
    assert {"tlog_set_invalid", "tlog_inclusion_proof_invalid"} <= set(_failed(result))
    assert result.log_status is LogStatus.INVALID
    # With the (other signature's) body carried along, the body itself says it is someone else's.
    with_body = signed_commit(repo, sigstore, "third",
                              entry_override=transparency_log_entry(sigstore, first.entry, with_body=True))
    result = _verify(with_body.raw, root)
    assert result.status is CommitStatus.INVALID
    assert "tlog_body_mismatch" in _failed(result)


def test_entry_without_inclusion_proof_is_not_verified(tmp_path: Path, sigstore: TestSigstore,
                                                       root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    payload = commit_payload(repo, "no proof")
    # Sign once to learn the entry, then embed it without its proof.
    signature, entry = gitsign_signature(payload, sigstore)
    assert entry is not None
    result = _verify(with_gpgsig(payload, signature), root)
    assert result.is_verified
    commit = signed_commit(repo, sigstore, "no proof 2",
                           entry_override=transparency_log_entry(sigstore, entry, with_proof=False))
    assert not _verify(commit.raw, root).is_verified


def test_other_sigstore_instance_is_untrusted(tmp_path: Path, root: TrustRoot) -> None:
    other = TestSigstore.create(name="elsewhere")
    commit = signed_commit(new_repo(tmp_path / "repo"), other, "elsewhere")
    result = _verify(commit.raw, root)
    assert result.status is CommitStatus.UNTRUSTED
    assert {"chain_untrusted", "tlog_unknown_log"} <= set(_failed(result))


def test_no_identity_policy_is_untrusted(tmp_path: Path, sigstore: TestSigstore, root: TrustRoot) -> None:
    commit = signed_commit(new_repo(tmp_path / "repo"), sigstore, "anyone")
    result = _verify(commit.raw, root, None)
    assert result.status is CommitStatus.UNTRUSTED and _failed(result) == ["identity_policy_missing"]


@pytest.mark.parametrize("block, code", [
    (b"-----BEGIN SIGNED MESSAGE-----\nnot base64 at all!\n-----END SIGNED MESSAGE-----\n", "signature_unreadable"),
    (b"-----BEGIN SIGNED MESSAGE-----\nMIIBAAAA\n-----END SIGNED MESSAGE-----\n", "signature_unreadable"),
    (b"-----BEGIN SIGNED MESSAGE-----\n-----END SIGNED MESSAGE-----\n", "signature_unreadable"),
    (b"-----BEGIN WHATEVER-----\nAAAA\n-----END WHATEVER-----\n", "signature_unknown"),
])
def test_malformed_signature_block(tmp_path: Path, root: TrustRoot, block: bytes, code: str) -> None:
    repo = new_repo(tmp_path / "repo")
    raw = with_gpgsig(commit_payload(repo, "broken"), block)
    result = _verify(raw, root)
    assert result.status is CommitStatus.MALFORMED
    assert _failed(result) == [code]


def test_a_thousand_certificates_are_refused_unread(tmp_path: Path, sigstore: TestSigstore, root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    many = signed_commit(repo, sigstore, "many", extra_certificates=1000)
    assert _failed(_verify(many.raw, root)) == ["signature_too_large"]
    some = signed_commit(repo, sigstore, "some", extra_certificates=10)
    assert _failed(_verify(some.raw, root)) == ["signature_too_many_certificates"]


def test_signed_annotated_tag(tmp_path: Path, sigstore: TestSigstore, root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    commit = signed_commit(repo, sigstore, "release")
    payload = (f"object {commit.sha}\ntype commit\ntag v1.0\ntagger Alice <{IDENTITY}> 1700000000 +0000\n\n"
               "release 1.0\n").encode()
    signature, _ = gitsign_signature(payload, sigstore)
    tag = payload + signature
    write_object(repo, tag, kind="tag", ref="refs/tags/v1.0")
    assert git(repo, "cat-file", "-t", "v1.0") == "tag"
    assert verify_git_object(tag, object_type="tag", trust_root=root, identity=POLICY).is_verified
    tampered = tag.replace(b"release 1.0", b"release 6.6")
    result = verify_git_object(tampered, object_type="tag", trust_root=root, identity=POLICY)
    assert _failed(result) == ["digest_mismatch"]


def test_ssh_signed_commits(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "repo")
    key, allowed = ssh_key(tmp_path)
    _, other_allowed = ssh_key(tmp_path, "bob")
    sha = ssh_signed_commit(repo, key, "ssh signed")
    raw = git(repo, "cat-file", "commit", sha).encode() + b"\n"
    result = verify_git_object(raw, trust_root=None, identity=None, allowed_signers=allowed)
    assert (result.kind, result.status) == (SignatureKind.SSH, CommitStatus.VERIFIED), result.checks
    assert result.identity == "alice@example.com" and result.key.startswith("ED25519 SHA256:")
    # No signers configured: valid, but not checked against anyone.
    assert verify_git_object(raw, trust_root=None, identity=None).status is CommitStatus.NOT_CHECKED
    # Someone else's key allowed: untrusted.
    other = verify_git_object(raw, trust_root=None, identity=None, allowed_signers=other_allowed)
    assert other.status is CommitStatus.UNTRUSTED and _failed(other) == ["ssh_signer_not_allowed"]
    # Edited after signing.
    edited = raw.replace(b"ssh signed", b"ssh forged")
    assert verify_git_object(edited, trust_root=None, identity=None, allowed_signers=allowed).status is \
        CommitStatus.INVALID


def test_gpg_signature_is_recognised_not_checked(tmp_path: Path, root: TrustRoot) -> None:
    repo = new_repo(tmp_path / "repo")
    block = b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n-----END PGP SIGNATURE-----\n"
    result = _verify(with_gpgsig(commit_payload(repo, "gpg"), block), root)
    assert (result.kind, result.status) == (SignatureKind.GPG, CommitStatus.NOT_CHECKED)


def _real_cases() -> list[Path]:
    base = os.environ.get("PROVENANCE_REAL_FIXTURES", "")
    if not base or not Path(base).is_dir():
        return []
    cases = []
    for case in sorted(Path(base).iterdir()):
        meta = case / "case.json"
        if meta.is_file() and json.loads(meta.read_text()).get("format", "").startswith("gitsign"):
            cases.append(case)
    return cases


def test_real_gitsign_commits() -> None:
    cases = _real_cases()
    if not cases:
        pytest.skip("no real gitsign commits among the real fixtures (PROVENANCE_REAL_FIXTURES)")
    for case in cases:
        meta = json.loads((case / "case.json").read_text())
        root = TrustRoot.production() if meta.get("trusted_root") == "embedded:production" else TrustRoot.staging()
        raw = (case / meta.get("artifact", "commit.txt")).read_bytes()
        result = verify_git_object(raw, trust_root=root,
                               identity=IdentityPolicy(issuer=meta["issuer"], identity=meta["identity"]))
        assert result.is_verified is (meta["expected"] == "verify"), (case.name, _failed(result))
