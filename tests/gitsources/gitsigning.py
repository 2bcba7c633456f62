"""Repositories made with real git, and commits signed as gitsign signs them, by the test Sigstore.

gitsign (through smimesign's ietf-cms) writes a detached CMS SignedData: digest algorithm SHA-256, no content, the
Fulcio leaf as the only certificate, one SignerInfo (issuerAndSerialNumber) with the signed attributes
contentType=id-data, signingTime (UTCTime), messageDigest, an ecdsa-with-SHA256 signature over their DER SET, and,
in offline mode, the unsigned attribute 1.3.6.1.4.1.57264.3.1 holding the Rekor ``TransparencyLogEntry`` proto
(without its canonicalized body). The Rekor entry is a hashedrekord over the SHA-256 of the signed attributes.
Built here independently of the verifier (the log body by the test Sigstore), then written with
``git hash-object -t commit -w``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.core.testsigstore import LeafOptions, LogEntry, TestSigstore, _hashedrekord_body
from tests.support import require_binary

IDENTITY = "alice@example.com"
ISSUER = "https://accounts.example.com"

GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "LC_ALL": "C",
}


def git(repo: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
    require_binary("git", "apt-get install git")
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=Alice", "-c", f"user.email={IDENTITY}", *args],
                          input=stdin, capture_output=True, env={**GIT_ENV, **(env or {})}, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr.decode()}")
    return done.stdout.decode().strip()


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    return path


@dataclass
class Signed:
    sha: str
    raw: bytes
    entry: LogEntry | None


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def transparency_log_entry(sigstore: TestSigstore, entry: LogEntry, *, with_body: bool = False,
                           with_proof: bool = True) -> bytes:
    """The serialized ``dev.sigstore.rekor.v1.TransparencyLogEntry`` gitsign stores (no body unless asked)."""
    message = _field(1, entry.index)
    message += _field(2, _field(1, entry.log_id))
    message += _field(3, _field(1, b"hashedrekord") + _field(2, b"0.0.1"))
    message += _field(4, entry.integrated_time)
    message += _field(5, _field(1, entry.signed_entry_timestamp))
    if with_proof:
        proof = sigstore.log.inclusion_proof(entry.index)
        body = _field(1, proof.log_index) + _field(2, proof.root_hash) + _field(3, proof.tree_size)
        for item in proof.hashes:
            body += _field(4, item)
        body += _field(5, _field(1, proof.checkpoint.encode()))
        message += _field(6, body)
    if with_body:
        message += _field(7, entry.body)
    return message


def gitsign_signature(
    payload: bytes,
    sigstore: TestSigstore,
    *,
    identity: str = IDENTITY,
    issuer: str = ISSUER,
    now: datetime | None = None,
    leaf: LeafOptions | None = None,
    offline: bool = True,
    entry_override: bytes | None = None,
    extra_certificates: int = 0,
) -> tuple[bytes, LogEntry | None]:
    """A gitsign ``SIGNED MESSAGE`` over ``payload`` (the commit without its signature), and its log entry."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = sigstore.issue_certificate(key.public_key(), identity=identity, issuer=issuer, now=moment,
                                             leaf=leaf or LeafOptions())
    asn1_cert = asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))
    attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": moment})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(payload).digest()]}),
    ])
    attrs_der = attrs.dump()
    assert attrs_der[0] == 0x31
    signature = key.sign(attrs_der, ec.ECDSA(hashes.SHA256()))
    entry = None
    unsigned = None
    if offline:
        body = _hashedrekord_body(signature=signature,
                                  verifier_pem=certificate.public_bytes(serialization.Encoding.PEM),
                                  sha256_hex=hashlib.sha256(attrs_der).hexdigest())
        entry = sigstore.log.append(body, integrated_time=int(moment.timestamp()))
        proto = entry_override if entry_override is not None else transparency_log_entry(sigstore, entry)
        unsigned = cms.CMSAttributes([cms.CMSAttribute({
            "type": "1.3.6.1.4.1.57264.3.1", "values": [core.Any.load(core.OctetString(proto).dump())]})])
    signer_info = {
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number})}),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": signature,
    }
    if unsigned is not None:
        signer_info["unsigned_attrs"] = unsigned
    certificates = [asn1_cert] + [asn1_cert] * extra_certificates
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "data"},
        "certificates": certificates,
        "signer_infos": [cms.SignerInfo(signer_info)],
    })
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    text = base64.b64encode(der).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    pem = "-----BEGIN SIGNED MESSAGE-----\n" + "\n".join(lines) + "\n-----END SIGNED MESSAGE-----\n"
    return pem.encode(), entry


def commit_payload(repo: Path, message: str, *, parent: str | None = None, when: int = 1700000000) -> bytes:
    """A commit object (unsigned) over an empty tree, as git would write it."""
    tree = git(repo, "hash-object", "-t", "tree", "-w", "--stdin", stdin=b"")
    lines = [f"tree {tree}"]
    if parent:
        lines.append(f"parent {parent}")
    lines += [f"author Alice <{IDENTITY}> {when} +0000", f"committer Alice <{IDENTITY}> {when} +0000", "", message]
    return ("\n".join(lines) + "\n").encode()


def with_gpgsig(payload: bytes, signature: bytes) -> bytes:
    """Insert the signature as git does: a ``gpgsig`` header after the others, continuation lines indented."""
    head, _, body = payload.partition(b"\n\n")
    lines = signature.rstrip(b"\n").split(b"\n")
    header = b"gpgsig " + b"\n ".join(lines)
    return head + b"\n" + header + b"\n\n" + body


def write_object(repo: Path, raw: bytes, *, kind: str = "commit", ref: str | None = "refs/heads/main") -> str:
    sha = git(repo, "hash-object", "-t", kind, "-w", "--stdin", stdin=raw)
    if ref:
        git(repo, "update-ref", ref, sha)
    return sha


def signed_commit(repo: Path, sigstore: TestSigstore, message: str, *, parent: str | None = None,
                  ref: str | None = "refs/heads/main", **options: object) -> Signed:
    """Write a gitsign-signed commit to ``repo`` (and point ``ref`` at it)."""
    payload = commit_payload(repo, message, parent=parent)
    signature, entry = gitsign_signature(payload, sigstore, **options)  # type: ignore[arg-type]
    raw = with_gpgsig(payload, signature)
    return Signed(write_object(repo, raw, ref=ref), raw, entry)


def ssh_key(directory: Path, name: str = "alice") -> tuple[Path, str]:
    """An ed25519 key pair made with ssh-keygen; returns (private key path, allowed-signers line)."""
    require_binary("ssh-keygen", "apt-get install openssh-client")
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True,
                   capture_output=True)
    public = (directory / f"{name}.pub").read_text().split()
    return key, f'{name}@example.com namespaces="git" {public[0]} {public[1]}'


def ssh_signed_commit(repo: Path, key: Path, message: str) -> str:
    """A commit signed by git itself with an SSH key (gpg.format=ssh)."""
    git(repo, "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "--quiet", "--allow-empty", "-S",
        "-m", message)
    return git(repo, "rev-parse", "HEAD")
