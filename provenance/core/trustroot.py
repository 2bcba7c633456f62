"""Sigstore trusted roots: which CAs, transparency logs and CT logs we trust, and since when.

A trusted root is the JSON document Sigstore distributes through TUF (``trusted_root.json``). We load it from
bytes that the application stores (never from a writable cache), validate it ourselves so that a bad root gives
one clear :class:`TrustRootError` instead of a pydantic dump, and index what verification needs:

* certificate authorities, each a chain with a validity window (for keyless certificates);
* transparency-log keys and CT-log keys by log id, each with a validity window (for SETs and SCTs);
* the ``sigstore`` package's own ``TrustedRoot`` and ``Verifier`` for Sigstore bundles.

Parsing is cached per process by the JSON's content, and the ``sigstore`` verifier per root: both are
expensive compared with one verification.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from provenance.core.errors import TrustRootError
from provenance.core.jsonbounds import loads as json_loads

if TYPE_CHECKING:  # importing sigstore costs ~0.5 s; only do it when a sigstore object is needed
    from sigstore.models import TrustedRoot as SigstoreTrustedRoot
    from sigstore.verify import Verifier

__all__ = [
    "MAX_TRUST_ROOT_BYTES",
    "CertificateAuthority",
    "LogKey",
    "Service",
    "SigningConfig",
    "TrustRoot",
    "ValidityWindow",
    "shipped_file",
    "spki_sha256",
]

MAX_TRUST_ROOT_BYTES = 1024 * 1024  # the production root is ~8 KiB; anything near 1 MiB is not a trust root

_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "application/vnd.dev.sigstore.trustedroot.v0.2+json",
    }
)

# The roots shipped inside the sigstore wheel, by the TUF repository URL they came from.
_EMBEDDED = {
    "production": "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    "staging": "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}

# keyDetails -> (expected key class, hash for ECDSA/RSA or None for Ed25519, RSA padding "pkcs1"/"pss")
_KEY_DETAILS: dict[str, tuple[type, hashes.HashAlgorithm | None, str]] = {
    "PKIX_ECDSA_P256_SHA_256": (ec.EllipticCurvePublicKey, hashes.SHA256(), ""),
    "PKIX_ECDSA_P384_SHA_384": (ec.EllipticCurvePublicKey, hashes.SHA384(), ""),
    "PKIX_ECDSA_P521_SHA_512": (ec.EllipticCurvePublicKey, hashes.SHA512(), ""),
    "PKIX_ECDSA_P384_SHA_256": (ec.EllipticCurvePublicKey, hashes.SHA256(), ""),
    "PKIX_ECDSA_P521_SHA_256": (ec.EllipticCurvePublicKey, hashes.SHA256(), ""),
    "PKIX_ED25519": (ed25519.Ed25519PublicKey, None, ""),
    "PKCS1_RSA_PKCS1V5": (rsa.RSAPublicKey, hashes.SHA256(), "pkcs1"),
    "PKIX_RSA_PKCS1V5": (rsa.RSAPublicKey, hashes.SHA256(), "pkcs1"),
    "PKIX_RSA_PKCS1V15_2048_SHA256": (rsa.RSAPublicKey, hashes.SHA256(), "pkcs1"),
    "PKIX_RSA_PKCS1V15_3072_SHA256": (rsa.RSAPublicKey, hashes.SHA256(), "pkcs1"),
    "PKIX_RSA_PKCS1V15_4096_SHA256": (rsa.RSAPublicKey, hashes.SHA256(), "pkcs1"),
    "PKCS1_RSA_PSS": (rsa.RSAPublicKey, hashes.SHA256(), "pss"),
    "PKIX_RSA_PSS": (rsa.RSAPublicKey, hashes.SHA256(), "pss"),
    "PKIX_RSA_PSS_2048_SHA256": (rsa.RSAPublicKey, hashes.SHA256(), "pss"),
    "PKIX_RSA_PSS_3072_SHA256": (rsa.RSAPublicKey, hashes.SHA256(), "pss"),
    "PKIX_RSA_PSS_4096_SHA256": (rsa.RSAPublicKey, hashes.SHA256(), "pss"),
}


def spki_sha256(key: PublicKeyTypes) -> bytes:
    """Return the SHA-256 of the key's DER SubjectPublicKeyInfo (the RFC 6962 log id / cosign key id)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


@dataclass(frozen=True, slots=True)
class ValidityWindow:
    """When a CA or log key may be trusted: from ``start`` to ``end`` (open-ended when ``None``), inclusive."""

    start: datetime
    end: datetime | None = None

    def contains(self, when: datetime) -> bool:
        """Return whether ``when`` (timezone-aware) lies in the window; both ends count, as the spec says."""
        return self.start <= when and (self.end is None or when <= self.end)

    def describe(self) -> str:
        end = self.end.isoformat() if self.end else "open-ended"
        return f"{self.start.isoformat()} .. {end}"


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A Fulcio-like CA: its chain as listed in the root (issuing certificate first, root last)."""

    name: str
    uri: str
    certificates: tuple[x509.Certificate, ...]
    validity: ValidityWindow


@dataclass(frozen=True, slots=True)
class LogKey:
    """A transparency-log (Rekor) or CT-log key with its log id and validity window."""

    log_id: bytes
    base_url: str
    key_details: str
    public_key: PublicKeyTypes
    validity: ValidityWindow

    @property
    def log_id_hex(self) -> str:
        return self.log_id.hex()

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Return whether ``signature`` is this key's signature over ``data`` (never raises on bad input)."""
        _, hash_alg, rsa_padding = _KEY_DETAILS.get(self.key_details, (object, None, ""))
        key = self.public_key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(hash_alg or hashes.SHA256()))
            elif isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, data)
            elif isinstance(key, rsa.RSAPublicKey):
                algorithm = hash_alg or hashes.SHA256()
                pad: padding.AsymmetricPadding = (
                    padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO)
                    if rsa_padding == "pss"
                    else padding.PKCS1v15()
                )
                key.verify(signature, data, pad, algorithm)
            else:
                return False
        except (InvalidSignature, ValueError, UnsupportedAlgorithm):
            return False
        return True


class TrustRoot:
    """A validated Sigstore trusted root.

    Build one with :meth:`from_json`, :meth:`production` or :meth:`staging`. Instances are immutable, compare
    equal when their JSON is byte-identical, and are shared: loading the same bytes twice returns the same object.
    """

    __slots__ = (
        "_sigstore_root",
        "certificate_authorities",
        "ctlog_keys",
        "media_type",
        "name",
        "raw",
        "sha256",
        "timestamp_authorities",
        "tlog_keys",
    )

    name: str
    sha256: str
    raw: bytes
    media_type: str
    certificate_authorities: tuple[CertificateAuthority, ...]
    timestamp_authorities: tuple[CertificateAuthority, ...]
    tlog_keys: Mapping[bytes, LogKey]
    ctlog_keys: Mapping[bytes, LogKey]
    _sigstore_root: SigstoreTrustedRoot

    def __init__(self) -> None:  # pragma: no cover - guarded: use the class methods
        raise TypeError("use TrustRoot.from_json(), TrustRoot.production() or TrustRoot.staging()")

    # -- construction -----------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: bytes, *, name: str) -> TrustRoot:
        """Load and validate a ``trusted_root.json`` document.

        Returns the (process-wide cached) :class:`TrustRoot`.
        Raises :class:`TrustRootError` when the document is not JSON, is too large, lacks certificate
        authorities or transparency logs, or holds a key or certificate that cannot be read.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TrustRootError(f"trust root {name!r}: expected bytes, got {type(data).__name__}")
        return _load(bytes(data), name)

    @classmethod
    def production(cls) -> TrustRoot:
        """Return the Sigstore public-good production root shipped inside the ``sigstore`` wheel (offline).

        Raises :class:`TrustRootError` if the installed ``sigstore`` does not ship it.
        """
        return _embedded("production")

    @classmethod
    def staging(cls) -> TrustRoot:
        """Return the Sigstore staging root shipped inside the ``sigstore`` wheel (offline).

        Raises :class:`TrustRootError` if the installed ``sigstore`` does not ship it.
        """
        return _embedded("staging")

    # -- lookups ----------------------------------------------------------------------------------------------

    def tlog_key(self, log_id: bytes) -> LogKey | None:
        """Return the transparency-log key with this log id, or ``None``."""
        return self.tlog_keys.get(log_id)

    def ctlog_key(self, log_id: bytes) -> LogKey | None:
        """Return the CT-log key with this log id, or ``None``."""
        return self.ctlog_keys.get(log_id)

    @property
    def sigstore_trusted_root(self) -> SigstoreTrustedRoot:
        """The ``sigstore`` package's ``TrustedRoot`` for this document (built at load, shared)."""
        return self._sigstore_root

    def verifier(self) -> Verifier:
        """Return the ``sigstore`` ``Verifier`` for this root, built once per process per root content.

        Raises :class:`TrustRootError` if ``sigstore`` refuses the root.
        """
        return _verifier(self)

    # -- identity ---------------------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrustRoot) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __setattr__(self, key: str, value: object) -> None:
        if hasattr(self, key):
            raise AttributeError(f"TrustRoot is immutable: cannot set {key}")
        object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        return f"<TrustRoot {self.name!r} sha256:{self.sha256[:12]}>"


@dataclass(frozen=True, slots=True)
class Service:
    """One service a signing config names: a Fulcio CA, a Rekor log, a timestamp authority or an OIDC issuer."""

    kind: str  # "ca" | "tlog" | "tsa" | "oidc"
    url: str
    api_version: int
    operator: str
    validity: ValidityWindow


@dataclass(frozen=True, slots=True)
class SigningConfig:
    """A Sigstore ``signing_config.json`` (v0.2): where the deployment's signers get certificates, log entries and
    timestamps. Verification does not depend on it; it tells which log version (Rekor v1 or v2) and which
    timestamp authorities new signatures use, so it is stored and shown next to the trusted root."""

    raw: bytes
    services: tuple[Service, ...]

    @classmethod
    def from_json(cls, data: bytes, *, name: str) -> SigningConfig:
        """Parse and validate; raises :class:`TrustRootError` (``signing_config_malformed``) when invalid."""
        if len(data) > MAX_TRUST_ROOT_BYTES:
            raise TrustRootError(f"signing config {name!r} is {len(data)} bytes, more than the "
                                 f"{MAX_TRUST_ROOT_BYTES} allowed", code="signing_config_malformed")
        parser = _Parser(name, what="signing config", code="signing_config_malformed")
        try:
            doc = json_loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            parser.fail("", f"not valid JSON: {err}")
        if not isinstance(doc, dict):
            parser.fail("", f"expected a JSON object, found {_show(doc)}")
        media_type = parser.string(doc, "mediaType", "")
        if media_type != _SIGNING_CONFIG_MEDIA_TYPE:
            parser.fail("mediaType", f"expected {_SIGNING_CONFIG_MEDIA_TYPE!r}, found {_show(media_type)}")
        services = []
        for key, kind in (("caUrls", "ca"), ("rekorTlogUrls", "tlog"), ("tsaUrls", "tsa"), ("oidcUrls", "oidc")):
            for i, item in enumerate(parser.items(doc, key, required=kind in ("ca", "tlog"))):
                path = f"{key}[{i}]."
                version = item.get("majorApiVersion")
                if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                    parser.fail(f"{path}majorApiVersion", f"expected a positive integer, found {_show(version)}")
                services.append(Service(kind, parser.string(item, "url", path), version,
                                        str(item.get("operator") or ""), parser.window(item, path)))
        return cls(data, tuple(services))

    @classmethod
    def shipped(cls, tuf_url: str) -> SigningConfig | None:
        """The signing config the ``sigstore`` wheel ships for a public TUF repository, if any."""
        data = shipped_file(tuf_url, "signing_config.v0.2.json")
        return cls.from_json(data, name=tuf_url) if data is not None else None


def shipped_file(tuf_url: str, filename: str) -> bytes | None:
    """A file the ``sigstore`` wheel ships for the TUF repository at ``tuf_url`` (None when it ships none).

    Read from the installed package, never from the user's TUF cache, which anyone can write to."""
    folder = tuf_url.replace(":", "%3A").replace("/", "%2F")
    try:
        return (resources.files("sigstore._store") / folder / filename).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None


_SIGNING_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"


# -- loading --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _load(data: bytes, name: str) -> TrustRoot:
    # Keyed by content (and label): a worker loads each root it sees once, however many times it is asked.
    if len(data) > MAX_TRUST_ROOT_BYTES:
        raise TrustRootError(
            f"trust root {name!r} is {len(data)} bytes, more than the {MAX_TRUST_ROOT_BYTES} allowed",
            code="trust_root_too_large",
        )
    try:
        doc = json_loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise TrustRootError(f"trust root {name!r} is not valid JSON: {err}", code="trust_root_malformed") from err
    parser = _Parser(name)
    if not isinstance(doc, dict):
        parser.fail("", f"expected a JSON object, found {type(doc).__name__}")
    media_type = parser.string(doc, "mediaType", "")
    if media_type not in _MEDIA_TYPES:
        parser.fail("mediaType", f"expected one of {sorted(_MEDIA_TYPES)}, found {media_type!r}")

    cas = parser.authorities(doc, "certificateAuthorities", required=True)
    tsas = parser.authorities(doc, "timestampAuthorities", required=False)
    # A trust domain may have no log when it timestamps instead (GitHub's, for private repositories).
    tlogs = parser.logs(doc, "tlogs", required=not tsas)
    ctlogs = parser.logs(doc, "ctlogs", required=False)

    root = object.__new__(TrustRoot)
    root.name = name
    root.sha256 = hashlib.sha256(data).hexdigest()
    root.raw = data
    root.media_type = media_type
    root.certificate_authorities = cas
    root.timestamp_authorities = tsas
    root.tlog_keys = MappingProxyType({k.log_id: k for k in tlogs})
    root.ctlog_keys = MappingProxyType({k.log_id: k for k in ctlogs})
    root._sigstore_root = _sigstore_root(doc, name)
    return root


@functools.cache
def _embedded(which: str) -> TrustRoot:
    # Located by path inside the installed wheel: never the user's TUF cache, which anyone can write to.
    try:
        data = (resources.files("sigstore._store") / _EMBEDDED[which] / "trusted_root.json").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError) as err:
        raise TrustRootError(
            f"the installed sigstore package does not ship the {which} trusted root: {err}", code="trust_root_unknown"
        ) from err
    return _load(data, f"sigstore-{which}")


# One sigstore Verifier per root content (sha256 of the JSON) per process. A process sees a handful of roots,
# so the dict stays small; the lock makes "built once" true under threads too.
_VERIFIERS: dict[str, Verifier] = {}
_VERIFIER_LOCK = threading.Lock()


def _verifier(root: TrustRoot) -> Verifier:
    from sigstore.errors import Error as SigstoreError
    from sigstore.verify import Verifier

    with _VERIFIER_LOCK:
        verifier = _VERIFIERS.get(root.sha256)
        if verifier is None:
            try:
                verifier = Verifier(trusted_root=root.sigstore_trusted_root)
            except SigstoreError as err:
                raise TrustRootError(f"trust root {root.name!r}: sigstore cannot use it: {err}") from err
            _VERIFIERS[root.sha256] = verifier
        return verifier


def _sigstore_root(doc: dict[str, Any], name: str) -> SigstoreTrustedRoot:
    from pydantic import ValidationError
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TrustedRoot as SigstoreTrustedRoot
    from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootModel

    # sigstore_models requires subject.commonName and .organization on every CA, which real private
    # deployments omit (sigstore scaffolding); both are labels only, so fill them rather than refuse the root.
    normalized = json.loads(json.dumps(doc))
    for key in ("certificateAuthorities", "timestampAuthorities"):
        for authority in normalized.get(key) or []:
            subject = authority.setdefault("subject", {})
            if isinstance(subject, dict):
                subject.setdefault("commonName", "")
                subject.setdefault("organization", "")
    try:
        return SigstoreTrustedRoot(TrustedRootModel.from_json(json.dumps(normalized)))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()[:5])
        raise TrustRootError(f"trust root {name!r} is not a valid Sigstore trusted root: {problems}") from err
    except SigstoreError as err:
        raise TrustRootError(f"trust root {name!r}: sigstore cannot use it: {err}") from err


class _Parser:
    """Reads the parts of a trusted root we use, failing with the JSON path of the first problem."""

    def __init__(self, name: str, *, what: str = "trust root", code: str = "trust_root_malformed") -> None:
        self.name = name
        self.what = what
        self.code = code

    def fail(self, path: str, problem: str) -> NoReturn:
        where = f" at {path}" if path else ""
        raise TrustRootError(f"{self.what} {self.name!r} is invalid{where}: {problem}", code=self.code)

    def string(self, obj: dict[str, Any], key: str, path: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            self.fail(f"{path}{key}", f"expected a non-empty string, found {_show(value)}")
        return value

    def b64(self, obj: dict[str, Any], key: str, path: str) -> bytes:
        text = self.string(obj, key, path)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.fail(f"{path}{key}", "expected base64")

    def window(self, obj: dict[str, Any], path: str) -> ValidityWindow:
        valid_for = obj.get("validFor")
        if not isinstance(valid_for, dict):
            self.fail(f"{path}validFor", f"expected an object with a start time, found {_show(valid_for)}")
        start = self.time(valid_for, "start", f"{path}validFor.")
        end = self.time(valid_for, "end", f"{path}validFor.") if valid_for.get("end") is not None else None
        if end is not None and end < start:
            self.fail(f"{path}validFor", f"ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        return ValidityWindow(start, end)

    def time(self, obj: dict[str, Any], key: str, path: str) -> datetime:
        text = self.string(obj, key, path)
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{path}{key}", f"expected an RFC 3339 time, found {_show(text)}")
        return when if when.tzinfo else when.replace(tzinfo=UTC)

    def items(self, doc: dict[str, Any], key: str, *, required: bool) -> list[dict[str, Any]]:
        value = doc.get(key)
        if value is None and not required:
            return []
        if value is None:
            self.fail(key, f"is missing: a {self.what} needs at least one")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected a list of objects, found {_show(value)}")
        if required and not value:
            self.fail(key, f"is empty: a {self.what} needs at least one")
        return value

    def authorities(self, doc: dict[str, Any], key: str, *, required: bool) -> tuple[CertificateAuthority, ...]:
        result = []
        for i, item in enumerate(self.items(doc, key, required=required)):
            path = f"{key}[{i}]."
            chain = item.get("certChain")
            certs = chain.get("certificates") if isinstance(chain, dict) else None
            if not isinstance(certs, list) or not certs:
                self.fail(f"{path}certChain.certificates", "expected a non-empty list of certificates")
            parsed = []
            for j, cert in enumerate(certs):
                cert_path = f"{path}certChain.certificates[{j}]."
                if not isinstance(cert, dict):
                    self.fail(cert_path.rstrip("."), "expected an object with rawBytes")
                der = self.b64(cert, "rawBytes", cert_path)
                try:
                    parsed.append(x509.load_der_x509_certificate(der))
                except ValueError as err:
                    self.fail(f"{cert_path}rawBytes", f"not a DER X.509 certificate ({err})")
            subject = item.get("subject")
            subject = subject if isinstance(subject, dict) else {}
            label = str(subject.get("commonName") or subject.get("organization") or item.get("uri") or f"{key}[{i}]")
            uri = str(item.get("uri") or "")
            result.append(CertificateAuthority(label, uri, tuple(parsed), self.window(item, path)))
        return tuple(result)

    def logs(self, doc: dict[str, Any], key: str, *, required: bool) -> tuple[LogKey, ...]:
        result = []
        for i, item in enumerate(self.items(doc, key, required=required)):
            path = f"{key}[{i}]."
            public_key = item.get("publicKey")
            log_id = item.get("logId")
            if not isinstance(public_key, dict):
                self.fail(f"{path}publicKey", f"expected an object, found {_show(public_key)}")
            if not isinstance(log_id, dict):
                self.fail(f"{path}logId", f"expected an object with keyId, found {_show(log_id)}")
            key_path = f"{path}publicKey."
            der = self.b64(public_key, "rawBytes", key_path)
            details = self.string(public_key, "keyDetails", key_path)
            try:
                loaded = serialization.load_der_public_key(der)
            except (ValueError, UnsupportedAlgorithm) as err:
                self.fail(f"{key_path}rawBytes", f"not a DER public key ({err})")
            expected = _KEY_DETAILS.get(details)
            if expected is not None and not isinstance(loaded, expected[0]):
                self.fail(f"{key_path}keyDetails", f"says {details} but the key is {type(loaded).__name__}")
            key_id = self.b64(log_id, "keyId", f"{path}logId.")
            if len(key_id) != 32:
                self.fail(f"{path}logId.keyId", f"expected 32 bytes, found {len(key_id)}")
            # The validity window may be absent for a log key (always valid).
            window = (
                self.window(public_key, key_path)
                if public_key.get("validFor") is not None
                else ValidityWindow(datetime.min.replace(tzinfo=UTC))
            )
            result.append(LogKey(key_id, str(item.get("baseUrl") or ""), details, loaded, window))
        return tuple(result)


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
