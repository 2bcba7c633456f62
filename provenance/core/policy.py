"""Sigstore policy-controller ``ClusterImagePolicy`` (v1beta1) policies: parse, validate, export, evaluate.

Parsing and validation
    :func:`parse_policy` reads one YAML document and returns a :class:`ClusterImagePolicy`, or raises
    :class:`PolicyError` naming the line and field of the first problem (a document that is not a
    ClusterImagePolicy, a regexp or a Rego module that does not compile, a key that is not PEM). Fields that would
    make a policy *stricter* and that we cannot check are refused rather than ignored (``spec.policy``, ``cue``
    policies, KMS keys, ``ca-cert``): ignoring them would trust more than the author asked for. Harmless fields
    policy-controller uses only in a cluster (``match``, ``source``) are ignored with a warning.
    :func:`dump_policy` writes a policy back as YAML; ``parse_policy(dump_policy(p))`` equals ``p``.

Semantics (as policy-controller documents them)
    * A policy applies to an image when one of its ``images`` globs matches the image name (``*`` stays within a
      path segment, ``**`` crosses segments; ``*`` alone means ``index.docker.io/library/*``).
    * Every policy that applies must pass (policies are AND'd); within a policy, **authorities are OR'd**: one
      authority that matches is enough.
    * An authority without ``attestations`` matches when one *signature* over the digest verifies with its signer
      (``keyless`` identities, a ``key``, or ``static: {action: pass}``).
    * An authority with ``attestations`` matches when **every** listed attestation (AND'd) is satisfied by at least
      one attestation of that predicate type signed by the authority's signer whose statement the Rego ``policy``
      allows (Rego: see :mod:`provenance.core.rego`; undefined means deny). Its signatures are not looked at.
    * ``mode: warn`` reports a failing image as *warn* instead of *untrusted*.
    * Keyless identities: ``issuer``/``subject`` are compared exactly; ``issuerRegExp``/``subjectRegExp`` are
      searched as Go's ``regexp.MatchString`` does, i.e. **unanchored** (import warns when a pattern is not
      anchored with ``^...$``). An identity without a subject accepts any subject (warned as over-broad).
    * ``keyless.url`` and ``ctlog.url`` are informational: nothing is fetched. The certificate must chain to the
      trust root named by ``trustRootRef``, or, without one, to the trust root the source was verified with. The
      transparency-log entry (SET) is always required.

Where Provenance decides what policy-controller leaves open
    * **An authority with only ``attestations``** (no ``keyless``, ``key`` or ``static``): policy-controller's
      admission webhook refuses it ("expected exactly one, got neither: key, keyless, static"). We accept it, and
      its attestations must be signed by a signer that *another authority of the same policy* accepts (one of
      its keyless identities or keys). Never "anyone": any GitHub account can obtain a Fulcio certificate and
      attest anything. A policy whose authorities name no signer at all makes such an authority match nothing.
    * A module defining ``allow`` but not ``isCompliant`` is evaluated on ``allow`` (policy-controller would
      query ``isCompliant`` and deny everything; the import warns).
    * An image no policy applies to is *untrusted* (code ``no_policy``), as policy-controller's default
      ``no-match-policy: deny``.
    * Index rule: see :func:`combine_index`.
    * ``spec.source.requireSignedCommit`` (our extension; policy-controller does not know it): after an authority
      matched, the policy also needs a SLSA provenance, signed by a signer one of its authorities accepts, naming a
      commit that a git source holds, gitsign-signed by one of the requirement's identities (fully verified,
      log entry included) and reachable from a protected branch or tag. What cannot be checked (no git source, the
      commit not fetched, the log entry not checked) is an error, never a pass. See :class:`SourceRequirement`.

Evaluation works on stored evidence (:class:`ArtifactFacts`) and needs no network. Keyless authorities reuse the
stored cryptographic checks: evidence whose only failed checks are of stage ``identity`` is a valid signature by
*someone*, and identity matching is cheap string work. Key authorities and authorities naming another trust
root re-verify the stored raw layer (through :class:`Resolver`), cached per process.

Framework-free: no Django, no Celery.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn, Protocol

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from provenance.core.errors import ProvenanceError
from provenance.core.jsonbounds import loads as json_loads
from provenance.core.names import image_names
from provenance.core.rego import RegoDecision, RegoError, RegoPolicy, compile_rego, defines_rule
from provenance.core.statements import parse_statement
from provenance.core.trustroot import TrustRoot
from provenance.core.types import Digest, SignedLayer, VerificationResult
from provenance.core.verify import verify_layer

__all__ = [
    "API_VERSIONS",
    "INDEX_RULE",
    "PREDICATE_TYPES",
    "ArtifactFacts",
    "AttestationRule",
    "Authority",
    "ClusterImagePolicy",
    "CommitFacts",
    "Evaluator",
    "EvidenceFacts",
    "Finding",
    "Identity",
    "Key",
    "Keyless",
    "PolicyError",
    "PolicyResult",
    "PolicyWarning",
    "Resolver",
    "SourceRequirement",
    "TrustStatus",
    "Verdict",
    "combine_index",
    "compile_glob",
    "cryptographically_valid",
    "dump_policy",
    "image_names",
    "is_known_signer",
    "key_fingerprint",
    "parse_policy",
    "unreadable_policy",
]

API_VERSIONS = frozenset({"policy.sigstore.dev/v1beta1", "policy.sigstore.dev/v1alpha1"})
KIND = "ClusterImagePolicy"
MAX_POLICY_CHARS = 256 * 1024

# policy-controller's short predicate type names (cosign's `--type` values) and the URLs they stand for.
PREDICATE_TYPES: Mapping[str, frozenset[str]] = {
    "custom": frozenset({"https://cosign.sigstore.dev/attestation/v1"}),
    "slsaprovenance": frozenset({"https://slsa.dev/provenance/v0.2"}),
    "slsaprovenance02": frozenset({"https://slsa.dev/provenance/v0.2"}),
    "slsaprovenance1": frozenset({"https://slsa.dev/provenance/v1"}),
    "spdx": frozenset({"https://spdx.dev/Document"}),
    "spdxjson": frozenset({"https://spdx.dev/Document"}),
    "cyclonedx": frozenset({"https://cyclonedx.org/bom"}),
    "link": frozenset({"https://in-toto.io/Link/v1"}),
    "vuln": frozenset({"https://cosign.sigstore.dev/attestation/vuln/v1"}),
    "openvex": frozenset({"https://openvex.dev/ns"}),
}
SLSA_PROVENANCE_PREFIX = "https://slsa.dev/provenance/"
SBOM_PREDICATE_TYPES = frozenset({"https://spdx.dev/Document", "https://cyclonedx.org/bom"})

# Identities a specific pattern must never accept: if one does, the pattern is over-broad.
_PROBE_SUBJECTS = ("x", "attacker@evil.example", "https://evil.example/attacker/repo/.github/workflows/x.yml@refs/heads/x")
_PROBE_ISSUERS = ("x", "https://evil.example")
_RE2_UNSUPPORTED = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]|\(\?P=")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class PolicyError(ProvenanceError):
    """A policy document was refused. ``line`` (1-based, 0 when unknown) and ``path`` locate the problem."""

    code = "policy_invalid"

    def __init__(self, message: str, *, line: int = 0, path: str = "", code: str | None = None) -> None:
        where = f"line {line}: " if line else ""
        field_name = f"{path}: " if path else ""
        super().__init__(f"{where}{field_name}{message}", code=code)
        self.line = line
        self.path = path


class TrustStatus(StrEnum):
    """An artifact's trust under the policies: what the fleet view shows."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"  # a policy that applies refuses it (reasons say why)
    WARN = "warn"  # only warn-mode policies refuse it
    UNSIGNED = "unsigned"  # refused, and there is no signed evidence at all
    ERROR = "error"  # refused only because something could not be checked
    PENDING = "pending"  # not evaluated yet


# Worst first: when statuses combine (an index and its platforms), the worse one wins.
STATUS_SEVERITY = {
    TrustStatus.UNTRUSTED: 5,
    TrustStatus.UNSIGNED: 4,
    TrustStatus.ERROR: 3,
    TrustStatus.PENDING: 2,
    TrustStatus.WARN: 1,
    TrustStatus.TRUSTED: 0,
}


# -- the policy model -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyWarning:
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.path}: {self.message}" if self.line else f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Identity:
    """One accepted keyless signer: exact values or (unanchored, as Go's MatchString) regexps."""

    issuer: str = ""
    subject: str = ""
    issuer_regexp: str = ""
    subject_regexp: str = ""

    def matches(self, subject: str, issuer: str) -> bool:
        """Whether a certificate with this SAN and OIDC issuer is accepted."""
        if self.issuer and issuer != self.issuer:
            return False
        if self.issuer_regexp and _regexp(self.issuer_regexp).search(issuer) is None:
            return False
        if self.subject and subject != self.subject:
            return False
        return not (self.subject_regexp and _regexp(self.subject_regexp).search(subject) is None)

    def describe(self) -> str:
        who = self.subject or (f"/{self.subject_regexp}/" if self.subject_regexp else "any subject")
        issuer = self.issuer or (f"/{self.issuer_regexp}/" if self.issuer_regexp else "any issuer")
        return f"{who} (issuer {issuer})"


@dataclass(frozen=True, slots=True)
class Keyless:
    url: str = ""
    identities: tuple[Identity, ...] = ()
    trust_root_ref: str = ""


@dataclass(frozen=True, slots=True)
class Key:
    """A signer's public key: inline PEM (``data``) or a key stored under a name (``secretRef.name``)."""

    pem: str = ""
    name: str = ""
    hash_algorithm: str = ""

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.pem.encode()) if self.pem else ""

    def describe(self) -> str:
        return f"the public key {self.fingerprint[:19]}…" if self.pem else f"the named key {self.name!r}"


@dataclass(frozen=True, slots=True)
class AttestationRule:
    name: str
    predicate_type: str  # as written: a URL or one of PREDICATE_TYPES' short names
    policy_type: str = ""
    policy_data: str = ""

    @property
    def predicate_urls(self) -> frozenset[str]:
        return PREDICATE_TYPES.get(self.predicate_type, frozenset({self.predicate_type}))

    @property
    def rego(self) -> RegoPolicy | None:
        return compile_rego(self.policy_data) if self.policy_type == "rego" and self.policy_data else None


@dataclass(frozen=True, slots=True)
class Authority:
    name: str
    keyless: Keyless | None = None
    key: Key | None = None
    static: str = ""  # "pass" | "fail" | ""
    ctlog_url: str = ""
    ctlog_trust_root_ref: str = ""
    attestations: tuple[AttestationRule, ...] = ()
    ignore_tlog: bool = False  # key authorities only: accept never-logged signatures (insecure, Kyverno's name)

    @property
    def kind(self) -> str:
        if self.keyless is not None:
            return "keyless"
        if self.key is not None:
            return "key"
        if self.static:
            return "static"
        return "attestations-only"

    @property
    def has_signer(self) -> bool:
        return self.keyless is not None or self.key is not None


@dataclass(frozen=True, slots=True)
class SourceRequirement:
    """``spec.source.requireSignedCommit`` (Provenance's extension): the commit a verified SLSA provenance names
    must be in a git source, gitsign-signed by one of ``identities``, and reachable from a protected ref (one the
    git source protects and, when ``protected_refs`` is not empty, that matches one of these globs too)."""

    identities: tuple[Identity, ...]
    protected_refs: tuple[str, ...] = ()

    def allows_ref(self, ref: str) -> bool:
        """Whether the policy's ``protectedRefs`` accept this (already source-protected) full ref name."""
        if not self.protected_refs:
            return True
        short = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        return any(fnmatch.fnmatchcase(short, p) or fnmatch.fnmatchcase(ref, p) for p in self.protected_refs)


@dataclass(frozen=True, slots=True)
class ClusterImagePolicy:
    name: str
    images: tuple[str, ...]
    authorities: tuple[Authority, ...]
    mode: str = "enforce"
    api_version: str = "policy.sigstore.dev/v1beta1"
    warnings: tuple[PolicyWarning, ...] = field(default=(), compare=False)
    unreadable: str = ""  # a stored policy that no longer parses: why (see unreadable_policy)
    source: SourceRequirement | None = None  # spec.source.requireSignedCommit

    def applies_to(self, names: Iterable[str]) -> bool:
        """Whether one of the ``images`` globs matches one of the image's names (see :func:`image_names`)."""
        patterns = [compile_glob(g) for g in self.images]
        return any(p.match(n) for n in names for p in patterns)

    @property
    def identities(self) -> tuple[Identity, ...]:
        return tuple(i for a in self.authorities if a.keyless for i in a.keyless.identities)

    @property
    def trust_root_refs(self) -> frozenset[str]:
        refs = {a.keyless.trust_root_ref for a in self.authorities if a.keyless and a.keyless.trust_root_ref}
        refs |= {a.ctlog_trust_root_ref for a in self.authorities if a.ctlog_trust_root_ref}
        return frozenset(refs)


# -- parsing ---------------------------------------------------------------------------------------------------


def parse_policy(text: str) -> ClusterImagePolicy:
    """Parse and validate one ClusterImagePolicy YAML document.

    Returns the policy with its :attr:`~ClusterImagePolicy.warnings` (over-broad identities, unanchored
    regexps, ignored fields). Raises :class:`PolicyError` (with ``line`` and ``path``) when the YAML does not
    parse, is not a ``policy.sigstore.dev`` ClusterImagePolicy, or holds a field that cannot be honoured: a
    regexp or Rego module that does not compile, a key that is not PEM, an unsupported policy language.
    """
    if not isinstance(text, str) or not text.strip():
        raise PolicyError("the policy is empty", line=1)
    if len(text) > MAX_POLICY_CHARS:
        raise PolicyError(f"the policy is {len(text)} characters; at most {MAX_POLICY_CHARS} are accepted")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PolicyError(f"not valid YAML: {problem}", line=mark.line + 1 if mark else 0) from err
    if root is None:
        raise PolicyError("the policy is empty", line=1)
    return _Parser(text).policy(_Node(root, ""))


def unreadable_policy(name: str, text: str, error: str) -> ClusterImagePolicy:
    """A stored policy that no longer parses (a newer Provenance refusing what an older one accepted, a row
    edited behind our back): it still takes part in evaluation, and every image it may cover is "error", never
    silently left to the other policies. It covers the image globs that can still be read from the YAML; when
    none can, every image."""
    globs: list[str] = []
    try:
        document = yaml.safe_load(text)
        images = document.get("spec", {}).get("images", []) if isinstance(document, dict) else []
        for item in images if isinstance(images, list) else []:
            glob = item.get("glob") if isinstance(item, dict) else None
            if isinstance(glob, str):
                compile_glob(glob)
                globs.append(glob)
    except (yaml.YAMLError, PolicyError, AttributeError, RecursionError):
        globs = []
    return ClusterImagePolicy(name=name, images=tuple(globs) or ("**",), authorities=(),
                              unreadable=error[:500] or "the policy does not parse")


class _Node:
    """A YAML node with its path, for errors that say where."""

    __slots__ = ("node", "path")

    def __init__(self, node: yaml.Node, path: str) -> None:
        self.node = node
        self.path = path

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def fail(self, message: str) -> NoReturn:
        raise PolicyError(message, line=self.line, path=self.path or "(document)")

    def mapping(self) -> dict[str, _Node]:
        if not isinstance(self.node, yaml.MappingNode):
            self.fail(f"expected a mapping, found {_describe_node(self.node)}")
        result: dict[str, _Node] = {}
        for key, value in self.node.value:
            if not isinstance(key, yaml.ScalarNode):
                _Node(key, self.path).fail("mapping keys must be plain strings")
            child = f"{self.path}.{key.value}" if self.path else str(key.value)
            if key.value in result:
                _Node(key, child).fail("appears twice")
            result[key.value] = _Node(value, child)
        return result

    def sequence(self) -> list[_Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            self.fail(f"expected a list, found {_describe_node(self.node)}")
        return [_Node(item, f"{self.path}[{i}]") for i, item in enumerate(self.node.value)]

    def string(self, *, required: bool = True) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag.endswith(":null"):
            if not required and isinstance(self.node, yaml.ScalarNode):
                return ""
            self.fail(f"expected a string, found {_describe_node(self.node)}")
        value = str(self.node.value)
        if required and not value.strip():
            self.fail("must not be empty")
        return value


def _describe_node(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag.endswith(":null"):
        return "nothing"
    return f"{node.value[:60]!r}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.warnings: list[PolicyWarning] = []

    def warn(self, node: _Node, message: str) -> None:
        self.warnings.append(PolicyWarning(node.line, node.path, message))

    def ignore_unknown(self, fields: dict[str, _Node], known: set[str], ignored: Mapping[str, str] = {}) -> None:
        for name, node in fields.items():
            if name in ignored:
                self.warn(node, ignored[name])
            elif name not in known:
                self.warn(node, f"{name!r} is not a field Provenance knows here; ignored")

    def policy(self, root: _Node) -> ClusterImagePolicy:
        doc = root.mapping()
        api_version = doc["apiVersion"].string() if "apiVersion" in doc else ""
        kind = doc["kind"].string() if "kind" in doc else ""
        if kind != KIND or api_version not in API_VERSIONS:
            where = doc.get("kind") or doc.get("apiVersion") or root
            where.fail(
                f"not a ClusterImagePolicy: found apiVersion {api_version or '(none)'!r}, kind {kind or '(none)'!r}; "
                f"expected apiVersion policy.sigstore.dev/v1beta1 and kind {KIND}"
            )
        if "metadata" not in doc:
            root.fail("metadata.name is required")
        metadata = doc["metadata"].mapping()
        if "name" not in metadata:
            doc["metadata"].fail("name is required")
        name = metadata["name"].string()
        if not _NAME_RE.match(name):
            metadata["name"].fail(f"{name[:80]!r} is not a valid resource name (lower-case letters, digits, '-', '.')")
        if "spec" not in doc:
            root.fail("spec is required")
        spec_node = doc["spec"]
        spec = spec_node.mapping()
        self.ignore_unknown(
            spec,
            {"images", "authorities", "mode", "match", "policy", "source"},
            {"match": "matches Kubernetes resources; Provenance checks every image the globs match (ignored)"},
        )
        if "policy" in spec:
            spec["policy"].fail("a policy-level policy (over authorityMatches) is not supported yet; it would only "
                                "make the policy stricter, so it is refused rather than ignored")
        if "images" not in spec:
            spec_node.fail("images is required (a list of {glob: ...})")
        images = []
        for item in spec["images"].sequence():
            fields = item.mapping()
            if "glob" not in fields:
                item.fail("glob is required")
            self.ignore_unknown(fields, {"glob"})
            glob = fields["glob"].string()
            try:
                compile_glob(glob)
            except ValueError as err:
                fields["glob"].fail(str(err))
            if glob in {"**", "*/**"}:
                self.warn(fields["glob"], "matches every image in every registry")
            images.append(glob)
        if not images:
            spec["images"].fail("needs at least one glob")
        mode = spec["mode"].string() if "mode" in spec else "enforce"
        if mode not in {"enforce", "warn"}:
            spec["mode"].fail(f"mode is {mode[:40]!r}; expected enforce or warn")
        if "authorities" not in spec:
            spec_node.fail("authorities is required: without one, no image can pass")
        authorities = tuple(self.authority(node, i) for i, node in enumerate(spec["authorities"].sequence()))
        if not authorities:
            spec["authorities"].fail("needs at least one authority")
        names = [a.name for a in authorities]
        for i, authority in enumerate(authorities):
            if names.count(authority.name) > 1:
                spec["authorities"].sequence()[i].fail(f"authority name {authority.name!r} is used twice")
            if authority.kind == "attestations-only":
                node = spec["authorities"].sequence()[i]
                if any(a.has_signer for a in authorities):
                    self.warn(node, "has attestations but no keyless, key or static signer: policy-controller refuses "
                                    "such an authority; Provenance requires its attestations to be signed by a signer "
                                    "another authority of this policy accepts")
                else:
                    self.warn(node, "has attestations but no signer, and no other authority names one: it can never "
                                    "match (an attestation by anyone proves nothing)")
        source = self.source(spec["source"]) if "source" in spec else None
        return ClusterImagePolicy(name, tuple(images), authorities, mode, api_version, tuple(self.warnings),
                                  source=source)

    def source(self, node: _Node) -> SourceRequirement:
        """``spec.source``: Provenance's source-commit requirement, validated strictly (it can only make the policy
        stricter, so a field we do not know is refused, never ignored)."""
        if isinstance(node.node, yaml.SequenceNode):
            node.fail("spec.source is Provenance's source-commit requirement (a mapping with requireSignedCommit); "
                      "policy-controller's signature sources (a list) belong under an authority")
        fields = node.mapping()
        for name, child in fields.items():
            if name != "requireSignedCommit":
                child.fail(f"{name!r} is not a source requirement Provenance knows (only requireSignedCommit); "
                           "refused rather than ignored")
        if "requireSignedCommit" not in fields:
            node.fail("requireSignedCommit is required")
        require_node = fields["requireSignedCommit"]
        require = require_node.mapping()
        for name, child in require.items():
            if name not in {"identities", "protectedRefs"}:
                child.fail(f"{name!r} is not a field of requireSignedCommit (identities, protectedRefs); refused "
                           "rather than ignored")
        if "identities" not in require:
            require_node.fail("identities is required: a commit signed by anyone proves nothing")
        identities = tuple(self.identity(item) for item in require["identities"].sequence())
        if not identities:
            require["identities"].fail("needs at least one identity")
        refs: list[str] = []
        if "protectedRefs" in require:
            items = require["protectedRefs"].sequence()
            if not items:
                require["protectedRefs"].fail("needs at least one branch or tag glob (or leave the field out)")
            for item in items:
                ref = item.string()
                if len(ref) > 200 or any(c.isspace() for c in ref) or ref.startswith("-"):
                    item.fail(f"{ref[:80]!r} is not a branch or tag glob (no spaces, at most 200 characters)")
                refs.append(ref)
        self.warn(node, "spec.source is Provenance's extension: policy-controller does not know it (the cluster "
                        "drops the field and does not enforce it); Provenance requires the signed source commit")
        return SourceRequirement(identities, tuple(refs))

    def authority(self, node: _Node, index: int) -> Authority:
        fields = node.mapping()
        self.ignore_unknown(
            fields,
            {"name", "keyless", "key", "static", "ctlog", "attestations", "source", "rfc3161timestamp", "ignoreTlog"},
            {"source": "signature sources (other repositories) are not searched: evidence comes from the scan "
                       "(ignored)",
             "rfc3161timestamp": "RFC 3161 timestamps are not required by Provenance (ignored)"},
        )
        name = fields["name"].string() if "name" in fields else f"authority-{index}"
        signers = [k for k in ("keyless", "key", "static") if k in fields]
        if len(signers) > 1:
            node.fail(f"expected exactly one of key, keyless, static; found {', '.join(signers)}")
        if not signers and "attestations" not in fields:
            node.fail("expected exactly one of key, keyless, static (or attestations, see the documentation)")
        keyless = self.keyless(fields["keyless"]) if "keyless" in fields else None
        key = self.key(fields["key"]) if "key" in fields else None
        static = ""
        if "static" in fields:
            static_fields = fields["static"].mapping()
            static = static_fields["action"].string() if "action" in static_fields else ""
            if static not in {"pass", "fail"}:
                fields["static"].fail(f"action is {static[:40]!r}; expected pass or fail")
            if "attestations" in fields or "ctlog" in fields:
                node.fail("static cannot be combined with attestations or ctlog")
            if static == "pass":
                self.warn(fields["static"], "static pass: every image this policy applies to passes")
        ctlog_url = ctlog_root = ""
        if "ctlog" in fields:
            ctlog = fields["ctlog"].mapping()
            self.ignore_unknown(ctlog, {"url", "trustRootRef"})
            ctlog_url = ctlog["url"].string(required=False) if "url" in ctlog else ""
            ctlog_root = ctlog["trustRootRef"].string() if "trustRootRef" in ctlog else ""
        attestations: tuple[AttestationRule, ...] = ()
        if "attestations" in fields:
            items = fields["attestations"].sequence()
            if not items:
                fields["attestations"].fail("needs at least one attestation (or leave the field out)")
            attestations = tuple(self.attestation(item) for item in items)
            seen = [a.name for a in attestations]
            if len(set(seen)) != len(seen):
                fields["attestations"].fail("attestation names must be unique within an authority")
        ignore_tlog = False
        if "ignoreTlog" in fields:
            value = fields["ignoreTlog"].string()
            if value not in {"true", "false"}:
                fields["ignoreTlog"].fail(f"ignoreTlog is {value[:20]!r}; expected true or false")
            ignore_tlog = value == "true"
            if ignore_tlog and key is None:
                fields["ignoreTlog"].fail("ignoreTlog applies to key authorities only: a keyless signature needs the "
                                          "log (or a timestamp) for its signing time")
            if ignore_tlog:
                self.warn(fields["ignoreTlog"], "ignoreTlog: true is INSECURE: signatures never logged in a "
                                                "transparency log are accepted (nobody can monitor them)")
        return Authority(name, keyless, key, static, ctlog_url, ctlog_root, attestations, ignore_tlog)

    def keyless(self, node: _Node) -> Keyless:
        fields = node.mapping()
        self.ignore_unknown(
            fields,
            {"url", "identities", "trustRootRef", "ca-cert", "insecureIgnoreSCT"},
            {"insecureIgnoreSCT": "the embedded SCT is always checked (ignored)"},
        )
        if "ca-cert" in fields:
            fields["ca-cert"].fail("keyless ca-cert is not supported: register the CA in a trust root and name it "
                                   "with trustRootRef")
        url = fields["url"].string(required=False) if "url" in fields else ""
        if not url:
            self.warn(node, "no url: policy-controller requires one; the certificate is checked against the trust root")
        identities: list[Identity] = []
        if "identities" in fields:
            identities = [self.identity(item) for item in fields["identities"].sequence()]
        if not identities:
            self.warn(node, "no identities: any signer with a certificate from the trust root is accepted "
                            "(over-broad)")
        root = fields["trustRootRef"].string() if "trustRootRef" in fields else ""
        return Keyless(url, tuple(identities), root)

    def identity(self, node: _Node) -> Identity:
        fields = node.mapping()
        self.ignore_unknown(fields, {"issuer", "subject", "issuerRegExp", "subjectRegExp"})
        values = {k: fields[k].string() if k in fields else "" for k in ("issuer", "subject", "issuerRegExp",
                                                                         "subjectRegExp")}
        if values["issuer"] and values["issuerRegExp"]:
            node.fail("expected only one of issuer, issuerRegExp")
        if values["subject"] and values["subjectRegExp"]:
            node.fail("expected only one of subject, subjectRegExp")
        for key, probes, what in (("issuerRegExp", _PROBE_ISSUERS, "issuer"),
                                  ("subjectRegExp", _PROBE_SUBJECTS, "subject")):
            pattern = values[key]
            if not pattern:
                continue
            if _RE2_UNSUPPORTED.search(pattern):
                fields[key].fail(f"the regexp {pattern[:80]!r} uses lookaround or a backreference, which Go's RE2 "
                                 "(policy-controller) does not support")
            try:
                compiled = _regexp(pattern)
            except re.error as err:
                fields[key].fail(f"the regexp {pattern[:80]!r} does not compile: {err}")
            broad = next((p for p in probes if compiled.search(p)), None)
            if broad is not None:
                self.warn(fields[key], f"over-broad: /{pattern[:80]}/ also accepts the {what} {broad!r}")
            elif not (pattern.startswith("^") and pattern.endswith("$")):
                self.warn(fields[key], f"/{pattern[:80]}/ is not anchored: policy-controller matches it anywhere in "
                                       f"the {what}, so it also accepts e.g. 'https://evil.example/?{pattern[:30]}'; "
                                       "anchor it with ^...$")
        if not values["subject"] and not values["subjectRegExp"]:
            self.warn(node, "no subject or subjectRegExp: any subject of the issuer is accepted (over-broad)")
        if not values["issuer"] and not values["issuerRegExp"]:
            self.warn(node, "no issuer or issuerRegExp: a certificate from any OIDC issuer is accepted (over-broad)")
        return Identity(values["issuer"], values["subject"], values["issuerRegExp"], values["subjectRegExp"])

    def key(self, node: _Node) -> Key:
        fields = node.mapping()
        self.ignore_unknown(fields, {"data", "secretRef", "kms", "hashAlgorithm"})
        if "kms" in fields:
            fields["kms"].fail("KMS keys are not supported (Provenance verifies offline): put the public key in data")
        has_data, has_secret = "data" in fields, "secretRef" in fields
        if has_data == has_secret:
            node.fail("expected exactly one of data (a PEM public key) or secretRef (a named key)")
        hash_algorithm = fields["hashAlgorithm"].string() if "hashAlgorithm" in fields else ""
        if hash_algorithm and hash_algorithm != "sha256":
            fields["hashAlgorithm"].fail(f"hashAlgorithm {hash_algorithm[:20]!r} is not supported; only sha256")
        if has_data:
            pem = fields["data"].string()
            try:
                key_fingerprint(pem.encode())
            except ValueError as err:
                fields["data"].fail(f"not a PEM public key: {err}")
            return Key(pem=pem.strip() + "\n", hash_algorithm=hash_algorithm)
        secret = fields["secretRef"].mapping()
        if "name" not in secret:
            fields["secretRef"].fail("name is required")
        return Key(name=secret["name"].string(), hash_algorithm=hash_algorithm)

    def attestation(self, node: _Node) -> AttestationRule:
        fields = node.mapping()
        self.ignore_unknown(fields, {"name", "predicateType", "policy"})
        if "name" not in fields:
            node.fail("name is required")
        if "predicateType" not in fields:
            node.fail("predicateType is required")
        name = fields["name"].string()
        predicate_type = fields["predicateType"].string()
        if predicate_type not in PREDICATE_TYPES and "://" not in predicate_type:
            fields["predicateType"].fail(f"{predicate_type[:80]!r} is neither a predicate type URL nor one of "
                                         f"{', '.join(sorted(PREDICATE_TYPES))}")
        if "policy" not in fields:
            return AttestationRule(name, predicate_type)
        policy = fields["policy"].mapping()
        self.ignore_unknown(policy, {"type", "data", "configMapRef", "url", "fetchConfigFile", "includeSpec",
                                     "includeObjectMeta", "includeTypeMeta"})
        kind = policy["type"].string() if "type" in policy else ""
        if kind != "rego":
            (policy.get("type") or fields["policy"]).fail(
                f"policy type {kind or '(none)'!r} is not supported; only rego is evaluated (a policy we cannot "
                "evaluate is refused, not ignored)")
        for unsupported in ("configMapRef", "url", "fetchConfigFile"):
            if unsupported in policy:
                policy[unsupported].fail("only an inline policy (data) is supported")
        if "data" not in policy:
            fields["policy"].fail("data (the Rego module) is required")
        data_node = policy["data"]
        source = data_node.string()
        try:
            compile_rego(source)
        except RegoError as err:
            # A block scalar (`data: |`) starts on the line after its indicator.
            is_block = getattr(data_node.node, "style", None) in {"|", ">"}
            first = data_node.line + (1 if is_block else 0)
            line = first + max(err.line - 1, 0) if err.line else data_node.line
            raise PolicyError(err.message, line=line, path=data_node.path, code="rego_invalid") from err
        if not defines_rule(source, "isCompliant"):
            self.warn(data_node, "the module defines `allow` but not `isCompliant`: policy-controller queries "
                                 "data.sigstore.isCompliant and would deny every image with it; Provenance evaluates "
                                 "`allow`. Rename the rule before enforcing this policy in a cluster")
        return AttestationRule(name, predicate_type, "rego", source)


# -- export ----------------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _identity_dict(identity: Identity) -> dict[str, str]:
    pairs = (("issuer", identity.issuer), ("subject", identity.subject), ("issuerRegExp", identity.issuer_regexp),
             ("subjectRegExp", identity.subject_regexp))
    return {k: v for k, v in pairs if v}


def dump_policy(policy: ClusterImagePolicy) -> str:
    """Return the policy as ClusterImagePolicy YAML (normalized: defaults written out, comments dropped)."""
    authorities: list[dict[str, Any]] = []
    for authority in policy.authorities:
        item: dict[str, Any] = {"name": authority.name}
        if authority.keyless is not None:
            keyless: dict[str, Any] = {}
            if authority.keyless.url:
                keyless["url"] = authority.keyless.url
            if authority.keyless.trust_root_ref:
                keyless["trustRootRef"] = authority.keyless.trust_root_ref
            identities = [_identity_dict(i) for i in authority.keyless.identities]
            if identities:
                keyless["identities"] = identities
            item["keyless"] = keyless
        if authority.key is not None:
            key: dict[str, Any] = {"data": authority.key.pem} if authority.key.pem else {
                "secretRef": {"name": authority.key.name}}
            if authority.key.hash_algorithm:
                key["hashAlgorithm"] = authority.key.hash_algorithm
            item["key"] = key
        if authority.ignore_tlog:
            item["ignoreTlog"] = True
        if authority.static:
            item["static"] = {"action": authority.static}
        if authority.ctlog_url or authority.ctlog_trust_root_ref:
            item["ctlog"] = {k: v for k, v in (("url", authority.ctlog_url),
                                               ("trustRootRef", authority.ctlog_trust_root_ref)) if v}
        if authority.attestations:
            item["attestations"] = []
            for rule in authority.attestations:
                entry: dict[str, Any] = {"name": rule.name, "predicateType": rule.predicate_type}
                if rule.policy_type:
                    entry["policy"] = {"type": rule.policy_type, "data": rule.policy_data}
                item["attestations"].append(entry)
        authorities.append(item)
    spec: dict[str, Any] = {"images": [{"glob": g} for g in policy.images], "authorities": authorities,
                            "mode": policy.mode}
    if policy.source is not None:
        require: dict[str, Any] = {"identities": [_identity_dict(i) for i in policy.source.identities]}
        if policy.source.protected_refs:
            require["protectedRefs"] = list(policy.source.protected_refs)
        spec["source"] = {"requireSignedCommit": require}
    doc = {"apiVersion": policy.api_version, "kind": KIND, "metadata": {"name": policy.name}, "spec": spec}
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


# -- globs and names -------------------------------------------------------------------------------------------

_VALID_GLOB = re.compile(r"^[a-zA-Z0-9\-_:/*.]+$")


@functools.lru_cache(maxsize=1024)
def compile_glob(glob: str) -> re.Pattern[str]:
    """Translate a policy-controller image glob into an anchored regexp; raises ``ValueError`` on a bad glob."""
    if glob == "*/*":
        glob = "index.docker.io/*/*"
    elif glob == "*":
        glob = "index.docker.io/library/*"
    if not _VALID_GLOB.match(glob):
        raise ValueError(f"invalid glob {glob[:80]!r}: only letters, digits, - _ : / . and * are allowed")
    pattern = glob.replace(".", r"\.").replace("**", "#").replace("*", "[^/]*").replace("#", ".*")
    return re.compile(f"^{pattern}$")


# -- evaluation inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvidenceFacts:
    """What is stored about one signature or attestation: enough to judge it without refetching.

    ``failed_stages`` are the stages of its failed checks; ``reason`` the first failure's message. ``ref`` is
    opaque (a row id) and lets a :class:`Resolver` load the raw layer when it must be re-verified.
    """

    ref: int
    kind: str  # "signature" | "attestation" | "sbom" (unsigned)
    outcome: str
    covers: str
    layer_digest: str
    trust_root: str  # the name of the trust root it was verified with
    identity: str = ""
    issuer: str = ""
    key: str = ""
    predicate_type: str = ""
    failed_stages: frozenset[str] = frozenset()
    reason: str = ""
    failure_code: str = ""  # the first failure's code
    format: str = "cosign-sig"  # "cosign-sig", "cosign-att", "sigstore-bundle", ...
    statement: Mapping[str, Any] | None = None
    tlog: str = ""  # the log evidence of a verified result: "inclusion_proof", "not_logged", ...

    @property
    def is_cryptographically_valid(self) -> bool:
        """Valid signature by *someone*: verified, or failed only on who signed (identity checks)."""
        return cryptographically_valid(self.outcome, self.failed_stages)

    @property
    def is_keyless(self) -> bool:
        return bool(self.identity or self.issuer)

    @property
    def is_signed(self) -> bool:
        return self.outcome != "unsigned"


@dataclass(frozen=True, slots=True)
class ArtifactFacts:
    ref: int
    digest: str
    names: tuple[str, ...]
    evidence: tuple[EvidenceFacts, ...] = ()

    @property
    def display_name(self) -> str:
        return self.names[0] if self.names else self.digest


@dataclass(frozen=True, slots=True)
class CommitFacts:
    """What a git source holds about one commit (for ``spec.source.requireSignedCommit``).

    ``is_fetched`` is false when the source exists but has not stored the commit (not fetched yet, outside its
    window, or not in it at all). The signature fields are the stored verdict (judged against the git source's own
    trust root and expected signer); ``failed_checks`` are the ``(stage, code)`` of its failed checks, so the policy
    can tell "valid, but another signer than the source expects" from "invalid". ``refs`` are the fetched branches
    and tags the commit is reachable from, ``protected_refs`` those of them the git source marks protected;
    ``has_protected_refs`` whether the source marks any ref protected at all.
    """

    source: str
    sha: str
    is_fetched: bool
    ref: int = 0  # opaque (a row id)
    signature_kind: str = "none"  # "gitsign" | "ssh" | "gpg" | "unknown" | "none"
    status: str = "unsigned"  # CommitStatus values
    identity: str = ""
    issuer: str = ""
    log_status: str = ""
    reason: str = ""
    failed_checks: tuple[tuple[str, str], ...] = ()
    refs: tuple[str, ...] = ()
    protected_refs: tuple[str, ...] = ()
    has_protected_refs: bool = False


class Resolver(Protocol):
    """Where evaluation gets what stored facts do not hold. Each method returns ``None`` when it has nothing."""

    def layer(self, evidence: EvidenceFacts) -> SignedLayer | None: ...

    def trust_root(self, name: str) -> TrustRoot | None: ...

    def key(self, name: str) -> bytes | None: ...

    def source_commits(self, repository: str, sha: str) -> tuple[CommitFacts, ...] | None:
        """The commit ``sha`` in every git source mirroring ``repository`` (one entry per source, fetched or not);
        ``None`` when no git source mirrors that repository."""
        ...


class NoResolver:
    """A resolver that has nothing: key authorities, other trust roots and source commits then report ``error``."""

    def layer(self, evidence: EvidenceFacts) -> SignedLayer | None:
        return None

    def trust_root(self, name: str) -> TrustRoot | None:
        return None

    def key(self, name: str) -> bytes | None:
        return None

    def source_commits(self, repository: str, sha: str) -> tuple[CommitFacts, ...] | None:
        return None


# -- evaluation results ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """Why an authority did not match: a stable code and a sentence."""

    policy: str
    authority: str
    code: str
    message: str
    is_error: bool = False  # could not check (missing key, trust root, raw evidence, unsupported format)

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "authority": self.authority, "code": self.code, "message": self.message,
                "error": self.is_error}


@dataclass(frozen=True, slots=True)
class PolicyResult:
    policy: str
    mode: str
    allowed: bool
    matched: str = ""  # the authority that matched
    findings: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def could_not_check(self) -> bool:
        return not self.allowed and bool(self.findings) and all(f.is_error for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "mode": self.mode, "allowed": self.allowed, "matched": self.matched,
                "findings": [f.as_dict() for f in self.findings], "warnings": list(self.warnings)}


@dataclass(frozen=True, slots=True)
class Verdict:
    """An artifact's trust status, the code and sentence that explain it, and the per-policy results."""

    status: TrustStatus
    code: str
    reason: str
    policies: tuple[PolicyResult, ...] = ()
    platforms: tuple[tuple[str, TrustStatus, str], ...] = ()  # (platform, effective status, note) for an index

    def as_dict(self) -> dict[str, Any]:
        return {"status": str(self.status), "code": self.code, "reason": self.reason,
                "policies": [p.as_dict() for p in self.policies],
                "platforms": [{"platform": p, "status": str(s), "note": n} for p, s, n in self.platforms]}


# -- evaluation ------------------------------------------------------------------------------------------------


class _LRU:
    """A small thread-safe LRU map for per-process caches."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self.lock:
            value = self.data.get(key)
            if value is not None:
                self.data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)


# Rego decisions per (module, attestation layer, image): the statement is content-addressed by the layer digest.
_REGO_CACHE = _LRU(200_000)
# Re-verifications per (layer, image, key or identity-free keyless, trust root).
_REVERIFY_CACHE = _LRU(100_000)
@dataclass(frozen=True, slots=True)
class _Acceptance:
    ok: bool
    code: str = ""
    message: str = ""
    is_error: bool = False
    statement: Mapping[str, Any] | None = None


class Evaluator:
    """Evaluates artifacts against a set of policies. Build once per run; not tied to any storage.

    ``resolver`` supplies raw layers, trust roots and named keys for re-verification (key authorities,
    ``trustRootRef``). Results of re-verification and Rego evaluation are cached per process.
    """

    def __init__(self, policies: Sequence[ClusterImagePolicy], *, resolver: Resolver | None = None) -> None:
        self.policies = tuple(policies)
        self.resolver: Resolver = resolver or NoResolver()
        self._applies: dict[tuple[str, ...], tuple[ClusterImagePolicy, ...]] = {}

    def applicable(self, artifact: ArtifactFacts) -> tuple[ClusterImagePolicy, ...]:
        # Names repeat per repository (the digest part differs), so cache on the names without the digest.
        key = tuple(n for n in artifact.names if "@" not in n)
        cached = self._applies.get(key)
        if cached is None:
            cached = tuple(p for p in self.policies if p.applies_to(artifact.names))
            if len(self._applies) < 100_000:
                self._applies[key] = cached
        return cached

    def evaluate(self, artifact: ArtifactFacts) -> Verdict:
        """Return the artifact's verdict under every policy that applies to it (never raises on bad evidence)."""
        policies = self.applicable(artifact)
        if not policies:
            return Verdict(TrustStatus.UNTRUSTED, "no_policy",
                           f"no policy applies to {artifact.display_name}: an image no policy covers is not trusted "
                           "(as policy-controller's default no-match policy)")
        broken = [p for p in policies if p.unreadable]
        if broken:
            reason = "; ".join(f"the stored policy {p.name!r} no longer parses ({p.unreadable}): fix or disable it"
                               for p in broken)
            results = tuple(PolicyResult(p.name, p.mode, False, "", (Finding(p.name, "", "policy_unreadable", reason,
                                                                             True),)) for p in broken)
            return Verdict(TrustStatus.ERROR, "policy_unreadable", reason, results)
        results = tuple(self._policy(p, artifact) for p in policies)
        enforce = [r for r in results if not r.allowed and r.mode == "enforce"]
        warn = [r for r in results if not r.allowed and r.mode == "warn"]
        if not enforce and not warn:
            names = ", ".join(f"{r.policy} (via {r.matched})" for r in results)
            return Verdict(TrustStatus.TRUSTED, "trusted", f"passes {names}", results)
        denied = enforce or warn
        reason = "; ".join(f"{r.policy}: {_summary(r)}" for r in denied)
        first = denied[0].findings[0].code if denied[0].findings else "denied"
        if warn and not enforce:
            return Verdict(TrustStatus.WARN, first, f"warn mode: {reason}", results)
        if not any(e.is_signed for e in artifact.evidence):
            return Verdict(TrustStatus.UNSIGNED, "no_signature", reason, results)
        if all(r.could_not_check for r in enforce):
            return Verdict(TrustStatus.ERROR, first, reason, results)
        return Verdict(TrustStatus.UNTRUSTED, first, reason, results)

    # -- one policy, one authority --

    def _policy(self, policy: ClusterImagePolicy, artifact: ArtifactFacts) -> PolicyResult:
        findings: list[Finding] = []
        for authority in policy.authorities:
            matched, found = self._authority(policy, authority, artifact)
            if matched:
                if policy.source is None:
                    return PolicyResult(policy.name, policy.mode, True, authority.name)
                commit, problems = self._source(policy, policy.source, artifact)
                if problems:
                    return PolicyResult(policy.name, policy.mode, False, "", tuple(problems))
                return PolicyResult(policy.name, policy.mode, True, f"{authority.name}, {commit}")
            findings.extend(found)
        return PolicyResult(policy.name, policy.mode, False, "", tuple(findings))

    # -- spec.source.requireSignedCommit --

    def _source(self, policy: ClusterImagePolicy, requirement: SourceRequirement,
                artifact: ArtifactFacts) -> tuple[str, list[Finding]]:
        """Whether a verified SLSA provenance of the artifact names a commit the requirement accepts.

        Returns a description of the accepted commit, or the findings (authority ``source``) why none was."""
        def finding(code: str, message: str, is_error: bool = False) -> Finding:
            return Finding(policy.name, SOURCE_AUTHORITY, code, message, is_error)

        candidates = [e for e in artifact.evidence
                      if e.kind == "attestation" and e.predicate_type.startswith(SLSA_PROVENANCE_PREFIX)]
        if not candidates:
            return "", [finding("provenance_missing", "source: no SLSA provenance attestation names the commit this "
                                                      "image was built from")]
        # A provenance counts only when signed by a signer an authority of this policy accepts (never "anyone").
        signer = Authority(SOURCE_AUTHORITY)
        problems: list[Finding] = []
        for evidence in candidates:
            accepted = self._accepts(policy, signer, evidence)
            if not accepted.ok:
                problems.append(finding(accepted.code, f"source: provenance {accepted.message}", accepted.is_error))
                continue
            statement = accepted.statement if accepted.statement is not None else self._statement(evidence)
            if statement is None:
                problems.append(finding("statement_unavailable", "source: the verified provenance statement is not "
                                                                 "stored; scan the image again", True))
                continue
            if not str(statement.get("predicateType", "")).startswith(SLSA_PROVENANCE_PREFIX):
                continue  # the annotation said provenance, the signed statement something else
            provenance = parse_statement(dict(statement)).provenance
            repository = provenance.source_repository if provenance else ""
            sha = provenance.source_commit.lower() if provenance else ""
            if not repository or not sha:
                problems.append(finding("provenance_no_source", "source: the provenance names no source repository "
                                                                "and commit (resolvedDependencies, materials or "
                                                                "configSource with a gitCommit/sha1 digest)"))
                continue
            if not _COMMIT_RE.match(sha):
                problems.append(finding("source_commit_malformed", f"source: the provenance names the commit "
                                                                   f"{sha[:80]!r}, not a 40-digit git commit id"))
                continue
            commits = self.resolver.source_commits(repository, sha)
            where = f"{sha[:12]} of {repository[:200]}"
            if commits is None:
                problems.append(finding("git_source_missing", f"source: no git source mirrors {repository[:200]}; "
                                                              f"add it to check the commit {sha[:12]}", True))
                continue
            if not commits:
                problems.append(finding("git_source_missing", f"source: no git source holds {where}", True))
                continue
            for commit in commits:
                judged = _judge_commit(requirement, commit, where)
                if judged.ok:
                    return f"commit {where} ({commit.identity})", []
                problems.append(finding(judged.code, f"source: {judged.message}", judged.is_error))
        return "", _dedupe(problems) or [finding("provenance_missing", "source: no SLSA provenance statement found")]

    def _authority(self, policy: ClusterImagePolicy, authority: Authority,
                   artifact: ArtifactFacts) -> tuple[bool, list[Finding]]:
        def finding(code: str, message: str, is_error: bool = False) -> Finding:
            return Finding(policy.name, authority.name, code, message, is_error)

        if authority.static == "pass":
            return True, []
        if authority.static == "fail":
            return False, [finding("static_fail", "static action fail: this authority never admits")]
        if authority.attestations:
            return self._attestations(policy, authority, artifact, finding)
        signatures = [e for e in artifact.evidence if e.kind == "signature"]
        if not signatures:
            return False, [finding("no_signature", f"no signature found for {artifact.digest}")]
        found: list[Finding] = []
        for evidence in signatures:
            accepted = self._accepts(policy, authority, evidence)
            if accepted.ok:
                return True, []
            found.append(finding(accepted.code, accepted.message, accepted.is_error))
        return False, _dedupe(found)

    def _attestations(self, policy: ClusterImagePolicy, authority: Authority, artifact: ArtifactFacts,
                      finding: Callable[..., Finding]) -> tuple[bool, list[Finding]]:
        found: list[Finding] = []
        for rule in authority.attestations:
            urls = rule.predicate_urls
            candidates = [e for e in artifact.evidence if e.kind == "attestation" and e.predicate_type in urls]
            if not candidates:
                found.append(finding("attestation_missing",
                                     f"attestation {rule.name!r}: no {rule.predicate_type} attestation found"))
                continue
            problems: list[Finding] = []
            satisfied = False
            for evidence in candidates:
                accepted = self._accepts(policy, authority, evidence)
                if not accepted.ok:
                    problems.append(finding(accepted.code, f"attestation {rule.name!r}: {accepted.message}",
                                            accepted.is_error))
                    continue
                statement = accepted.statement if accepted.statement is not None else self._statement(evidence)
                if statement is None:
                    problems.append(finding("statement_unavailable",
                                            f"attestation {rule.name!r}: the verified statement is not stored; "
                                            "scan the image again", True))
                    continue
                if statement.get("predicateType") not in urls:
                    continue  # the annotation said one type, the signed statement another: not this attestation
                decision = self._rego(rule, evidence, statement)
                if not decision.allowed:
                    problems.append(finding("rego_denied", f"attestation {rule.name!r} by {_signer(evidence)}: "
                                                           f"{decision.reason}"))
                    continue
                satisfied = True
                break
            if not satisfied:
                found.extend(_dedupe(problems) or [finding(
                    "attestation_missing", f"attestation {rule.name!r}: no {rule.predicate_type} statement found")])
        return not found, found

    def _rego(self, rule: AttestationRule, evidence: EvidenceFacts, statement: Mapping[str, Any]) -> RegoDecision:
        rego = rule.rego
        if rego is None:
            return RegoDecision(True)
        key = (hashlib.sha256(rule.policy_data.encode()).digest(), evidence.layer_digest, evidence.covers)
        cached: RegoDecision | None = _REGO_CACHE.get(key)
        if cached is None:
            cached = rego.evaluate(dict(statement))
            _REGO_CACHE.put(key, cached)
        return cached

    def _accepts(self, policy: ClusterImagePolicy, authority: Authority, evidence: EvidenceFacts) -> _Acceptance:
        """Whether the authority's signer signed this evidence (attestations-only: a sibling authority's)."""
        if authority.has_signer:
            signers: Sequence[Authority] = (authority,)
        else:
            signers = [a for a in policy.authorities if a.has_signer]
            if not signers:
                return _Acceptance(False, "no_signer", "this authority names no signer and no other authority of "
                                                       "the policy does, so no signature can be accepted")
        rejections: list[_Acceptance] = []
        for signer in signers:
            result = self._keyless(signer, evidence) if signer.keyless is not None else self._key(signer, evidence)
            if result.ok:
                return result
            rejections.append(result)
        definite = [r for r in rejections if not r.is_error]
        return (definite or rejections)[0]

    def _keyless(self, authority: Authority, evidence: EvidenceFacts) -> _Acceptance:
        assert authority.keyless is not None
        keyless = authority.keyless
        if evidence.outcome in {"unsupported", "error"} and not evidence.is_cryptographically_valid:
            return _Acceptance(False, "could_not_check", f"{evidence.kind} could not be checked: {evidence.reason}",
                               True)
        identity, issuer, reason = evidence.identity, evidence.issuer, evidence.reason
        valid = evidence.is_cryptographically_valid
        code = evidence.failure_code or f"{evidence.kind}_{evidence.outcome}"
        statement = None
        root_name = keyless.trust_root_ref or authority.ctlog_trust_root_ref
        if root_name and root_name != evidence.trust_root:
            # Verified against another root at scan time: verify the stored layer against the named one.
            redone = self._reverify(evidence, root_name=root_name, public_key=None)
            if isinstance(redone, _Acceptance):
                return redone
            result, statement = redone
            failed = {str(c.stage) for c in result.failures}
            valid = result.is_verified or (bool(failed) and failed <= {"identity"})
            identity, issuer, reason = result.identity, result.issuer, result.reason
            code = result.failures[0].code if result.failures else str(result.outcome)
        if not valid:
            return _Acceptance(False, code, f"{evidence.kind} {evidence.layer_digest[:19]}… does not verify: "
                                            f"{reason or evidence.outcome}")
        if not (identity or issuer):
            return _Acceptance(False, "not_keyless", f"{evidence.kind} is signed with a key, not a certificate; "
                                                      "this authority accepts keyless signers")
        if keyless.identities and not any(i.matches(identity, issuer) for i in keyless.identities):
            expected = " or ".join(i.describe() for i in keyless.identities[:3])
            return _Acceptance(False, "identity_mismatch", f"signed by {identity or '(no identity)'} (issuer "
                                                            f"{issuer or 'unknown'}), expected {expected}")
        if statement is None and evidence.kind == "attestation":
            statement = evidence.statement
        return _Acceptance(True, statement=statement)

    def _key(self, authority: Authority, evidence: EvidenceFacts) -> _Acceptance:
        assert authority.key is not None
        key = authority.key
        pem = key.pem.encode() if key.pem else self.resolver.key(key.name)
        if pem is None:
            return _Acceptance(False, "key_missing", f"the named key {key.name!r} is not registered", True)
        if evidence.is_keyless:
            # A certificate-backed (keyless) signature was made with the certificate's ephemeral key, which no
            # long-lived key equals: skip the re-verification (cosign would try it and fail). The one case this
            # misses, a certificate issued for the long-lived key itself, is reported as not matching.
            return _Acceptance(False, "not_key_signed", f"{evidence.kind} is signed keylessly by "
                                                         f"{evidence.identity or 'a certificate'}, not with "
                                                         f"{key.describe()}")
        root_name = authority.ctlog_trust_root_ref or evidence.trust_root
        if evidence.outcome == "verified" and evidence.tlog == "not_logged" and not authority.ignore_tlog:
            # The source accepted it unlogged (its insecure opt-in); this authority did not opt in.
            return _Acceptance(False, "tlog_missing", f"{evidence.kind} was never logged in a transparency log; "
                                                      "this authority requires a log entry (ignoreTlog: true "
                                                      "accepts it, insecurely)")
        if evidence.outcome == "verified" and evidence.key and evidence.key == key_fingerprint_or_empty(pem) \
                and root_name == evidence.trust_root:
            # The scan verified it with this very key (a key the source trusts): nothing to redo.
            return _Acceptance(True, statement=evidence.statement)
        redone = self._reverify(evidence, root_name=root_name, public_key=pem, require_tlog=not authority.ignore_tlog)
        if isinstance(redone, _Acceptance):
            return redone
        result, statement = redone
        if result.is_verified:
            return _Acceptance(True, statement=statement)
        failure = result.failures[0] if result.failures else None
        code = failure.code if failure else str(result.outcome)
        return _Acceptance(False, code, f"{evidence.kind} does not verify with {key.describe()}: "
                                        f"{result.reason or result.outcome}")

    def _reverify(self, evidence: EvidenceFacts, *, root_name: str, public_key: bytes | None,
                  require_tlog: bool = True) -> tuple[VerificationResult, Mapping[str, Any] | None] | _Acceptance:
        root = self.resolver.trust_root(root_name)
        if root is None:
            return _Acceptance(False, "trust_root_missing", f"the trust root {root_name!r} is not registered", True)
        key_id = hashlib.sha256(public_key).hexdigest() if public_key else ""
        cache_key = (evidence.layer_digest, evidence.covers, evidence.kind, key_id, root.sha256, require_tlog)
        cached = _REVERIFY_CACHE.get(cache_key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        layer = self.resolver.layer(evidence)
        if layer is None or not layer.payload:
            return _Acceptance(False, "raw_evidence_missing", "the raw evidence is not stored; scan the image again",
                               True)
        try:
            covers = Digest.parse(evidence.covers)
        except ProvenanceError:
            return _Acceptance(False, "bad_digest", f"stored digest {evidence.covers[:80]!r} is malformed", True)
        statement: Mapping[str, Any] | None
        # No identity policy here: the authority matches identities itself, so an identity-only failure still
        # means the evidence is cryptographically valid (and its statement may be read).
        result, statement = verify_layer(layer, format=evidence.format, kind=evidence.kind, covers=covers,
                                         trust_root=root, identity=None,
                                         public_keys=(public_key,) if public_key else (), require_tlog=require_tlog)
        if statement is None and evidence.kind == "attestation":
            failed = {str(c.stage) for c in result.failures}
            if failed and failed <= {"identity"}:
                statement = statement_from_layer(layer)
        value = (result, statement)
        _REVERIFY_CACHE.put(cache_key, value)
        return value

    def _statement(self, evidence: EvidenceFacts) -> Mapping[str, Any] | None:
        """The in-toto statement of a cryptographically valid attestation, stored or read from its raw layer."""
        if evidence.statement is not None and not evidence.statement.get("_truncated"):
            return evidence.statement
        layer = self.resolver.layer(evidence)
        return statement_from_layer(layer) if layer is not None else None


SOURCE_AUTHORITY = "source"  # the findings of spec.source name this as their authority
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# Failed checks that only say the signer is not the one the *git source* expects: the signature is still valid,
# and the policy matches the signer against its own identities.
_SOURCE_IDENTITY_CODES = frozenset({"identity_mismatch", "issuer_mismatch", "identity_policy_missing",
                                    "identity_policy_invalid", "identity_regexp_broad"})


def _judge_commit(requirement: SourceRequirement, commit: CommitFacts, where: str) -> _Acceptance:
    """Whether one git source's stored commit satisfies ``requirement`` (signature, signer, protected ref)."""
    source = f"git source {commit.source[:200]!r}"
    if not commit.is_fetched:
        return _Acceptance(False, "commit_not_fetched", f"the commit {where} is not in {source} (not fetched yet, "
                                                        "older than its commit window, or not in the repository)",
                           True)
    if commit.signature_kind == "none" or commit.status == "unsigned":
        return _Acceptance(False, "commit_unsigned", f"the commit {where} is not signed")
    if commit.signature_kind != "gitsign":
        return _Acceptance(False, "commit_not_gitsign", f"the commit {where} carries a {commit.signature_kind} "
                                                        "signature; the required identities are gitsign (Fulcio "
                                                        "certificate) signers")
    failed = {code for stage, code in commit.failed_checks if not (stage == "identity"
                                                                   and code in _SOURCE_IDENTITY_CODES)}
    if failed == {"tlog_not_checked"}:
        return _Acceptance(False, "commit_log_not_checked", f"the commit {where} has a valid signature whose log "
                                                            "entry was not checked (gitsign online mode): not fully "
                                                            "verified", True)
    valid = (not failed and commit.status in {"verified", "untrusted"} and commit.log_status == "verified"
             and (commit.status == "verified" or bool(commit.failed_checks)))
    if not valid:
        return _Acceptance(False, "commit_signature_invalid", f"the signature of the commit {where} does not verify "
                                                              f"({commit.status}): {commit.reason[:300]}")
    if not any(i.matches(commit.identity, commit.issuer) for i in requirement.identities):
        expected = " or ".join(i.describe() for i in requirement.identities[:3])
        return _Acceptance(False, "commit_identity_mismatch", f"the commit {where} is signed by "
                                                              f"{commit.identity or '(no identity)'} (issuer "
                                                              f"{commit.issuer or 'unknown'}), expected {expected}")
    if not commit.has_protected_refs:
        return _Acceptance(False, "protected_refs_missing", f"{source} marks no branch or tag as protected, so no "
                                                            "commit can be shown to be on one", True)
    accepted = [r for r in commit.protected_refs if requirement.allows_ref(r)]
    if accepted:
        return _Acceptance(True)
    if not commit.refs:
        return _Acceptance(False, "commit_reachability_unknown", f"the commit {where} is reachable from no fetched "
                                                                 f"branch or tag of {source} within its commit window",
                           True)
    wanted = f" matching {', '.join(requirement.protected_refs[:5])}" if requirement.protected_refs else ""
    return _Acceptance(False, "commit_not_protected", f"the commit {where} is reachable only from "
                                                      f"{', '.join(commit.refs[:5])}, not from a protected branch or "
                                                      f"tag{wanted}")


def statement_from_layer(layer: SignedLayer) -> dict[str, Any] | None:
    """The in-toto statement inside a DSSE envelope layer, or ``None`` when it cannot be read.

    Only call this for a layer whose signature verified: the payload is what was signed.
    """
    try:
        envelope = json_loads(layer.payload)
        if isinstance(envelope, dict) and isinstance(envelope.get("dsseEnvelope"), dict):
            envelope = envelope["dsseEnvelope"]  # a Sigstore bundle holding a DSSE envelope
        payload = base64.b64decode(envelope["payload"], validate=True)
        statement = json_loads(payload)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
    return statement if isinstance(statement, dict) else None


INDEX_RULE = (
    "An index's status is the worst of its own status and its platforms' (untrusted, unsigned, could not check, "
    "pending, warn, trusted). Its own status comes from signatures over the index digest, which is what "
    "policy-controller checks when it admits the index. A platform with no signed evidence of its own counts as "
    "trusted when the index is trusted (the index signature pins every platform digest, as with `cosign sign` "
    "without --recursive). A platform with evidence the policy rejects (another signer, an invalid signature, a "
    "denied attestation) counts with its own status, so it can make the index untrusted even where a cluster would "
    "admit it: stricter than policy-controller, and the reason names the platform."
)


def combine_index(own: Verdict, platforms: Sequence[tuple[str, Verdict]]) -> Verdict:
    """An index's status from its own verdict and its platforms' verdicts. The rule:

    1. policy-controller admits an index by the index digest, and a verified index signature pins every platform
       digest. So a platform with **no signed evidence of its own** is *covered* when the index itself is
       trusted (``cosign sign`` without ``--recursive``), and counts as trusted.
    2. Otherwise each platform counts with its own status: a platform signed by someone the policy rejects, or
       whose attestation the Rego policy denies, is a real finding even under a signed index.
    3. The index's status is the **worst** of its own and its platforms' (untrusted, unsigned, error, pending,
       warn, trusted, worst first); the reason names the platform when a platform decides.

    This is stricter than policy-controller, which looks only at the index digest: rule 2 can report an index
    *untrusted* that a cluster would admit, and says which platform is why.
    """
    effective: list[tuple[str, TrustStatus, str]] = []
    worst, worst_reason, worst_code = own.status, own.reason, own.code
    for platform, verdict in platforms:
        status, note = verdict.status, verdict.reason
        if status is TrustStatus.UNSIGNED and own.status is TrustStatus.TRUSTED:
            status, note = TrustStatus.TRUSTED, "covered by the index signature, which pins this platform's digest"
        effective.append((platform, status, note))
        if STATUS_SEVERITY[status] > STATUS_SEVERITY[worst]:
            worst, worst_reason, worst_code = status, f"platform {platform or '?'}: {note}", verdict.code
    if worst is own.status:
        worst_reason, worst_code = own.reason, own.code
    return Verdict(worst, worst_code, worst_reason, own.policies, tuple(effective))


def cryptographically_valid(outcome: str, failed_stages: Iterable[str]) -> bool:
    """Whether a result is a valid signature by *someone*: verified, or failed only on who signed."""
    failed = frozenset(failed_stages)
    return outcome == "verified" or (bool(failed) and failed <= {"identity"} and outcome in {"untrusted", "error"})


def is_known_signer(policies: Iterable[ClusterImagePolicy], evidence: EvidenceFacts) -> bool:
    """Whether any keyless identity (or identity-less keyless authority) of ``policies`` accepts this signer."""
    for policy in policies:
        for authority in policy.authorities:
            if authority.keyless is None:
                continue
            if not authority.keyless.identities:
                return True
            if any(i.matches(evidence.identity, evidence.issuer) for i in authority.keyless.identities):
                return True
    return False


# -- helpers ---------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _regexp(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def key_fingerprint(pem: bytes) -> str:
    """``sha256:<hex>`` of the DER SubjectPublicKeyInfo; raises ``ValueError`` when ``pem`` is not a public key."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ValueError(str(err).splitlines()[0] if str(err) else "unreadable") from err
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"sha256:{hashlib.sha256(der).hexdigest()}"


def key_fingerprint_or_empty(pem: bytes) -> str:
    try:
        return key_fingerprint(pem)
    except ValueError:
        return ""


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    result = []
    for f in findings:
        if (f.code, f.message) not in seen:
            seen.add((f.code, f.message))
            result.append(f)
    return result[:5]


def _summary(result: PolicyResult) -> str:
    if not result.findings:
        return "no authority matched"
    return " | ".join(f"{f.authority}: {f.message}" for f in result.findings[:3])


def _signer(evidence: EvidenceFacts) -> str:
    return evidence.identity or evidence.key or "an unknown signer"
