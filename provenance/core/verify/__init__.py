"""Verification of Sigstore and cosign evidence: the one way in.

Everything outside this package verifies through the names exported here:

* :func:`verify_evidence` / :func:`verify_layer`: one piece of evidence found next to an image (a cosign
  ``.sig`` or ``.att`` layer, a Sigstore bundle referrer), for scans, the command line and the policy engine's
  re-verification alike;
* :func:`verify_bundle`: a Sigstore bundle for an artifact given as bytes or a digest;
* :func:`verify_discovery`: everything one discovery found;
* :func:`verify_git_object`: the signature of one git commit or tag (gitsign, SSH; GPG recognised);
* :func:`pae`, :func:`is_statement`, :func:`b64decode`, :func:`as_list`: DSSE and strict decoding, for those who
  sign (the VSAs of ``core.vsa``);
* :func:`judge`: an artifact's verdict from the results of its signatures; :func:`judge_node` the same for one
  manifest of a discovery;
* for following a transparency log (``provenance.core.monitor``): the checkpoint, inclusion and consistency proof
  checks of ``tlog`` and the signer of a certificate (:func:`sans_of`, :func:`oidc_issuer`).

Inside, the checks both formats share live in neutral modules (``encoding``, ``signature``, ``dsse``,
``certificate``, ``tlog``, ``timestamps``) and the check run with its required checks in ``checks``; ``cosign``
(legacy layers) and ``bundle`` (Sigstore bundles) are peers that never import each other.
"""

from provenance.core.verify.bundle import (
    BUNDLE_MEDIA_TYPES,
    MAX_BUNDLE_BYTES,
    BundleVerification,
    InclusionProofFetcher,
    verify_bundle,
)
from provenance.core.verify.certificate import oidc_issuer, sans_of
from provenance.core.verify.checks import LENIENCY_TEXT, Requirement
from provenance.core.verify.cosign import layers_from_download
from provenance.core.verify.dsse import IN_TOTO_PAYLOAD_TYPE, is_statement, pae
from provenance.core.verify.encoding import as_list, b64decode
from provenance.core.verify.evidence import (
    Verdict,
    Verified,
    deciding_signatures,
    judge,
    judge_node,
    verify_discovery,
    verify_evidence,
    verify_layer,
)
from provenance.core.verify.gitsign import (
    CommitStatus,
    CommitVerification,
    LogStatus,
    SignatureKind,
    split_signature,
    verify_git_object,
)
from provenance.core.verify.tlog import (
    Proof,
    TlogEntry,
    inclusion_problem,
    is_consistent,
    root_from_proof,
    signed_checkpoint,
)

__all__ = [
    "BUNDLE_MEDIA_TYPES",
    "IN_TOTO_PAYLOAD_TYPE",
    "LENIENCY_TEXT",
    "MAX_BUNDLE_BYTES",
    "BundleVerification",
    "CommitStatus",
    "CommitVerification",
    "InclusionProofFetcher",
    "LogStatus",
    "Proof",
    "Requirement",
    "SignatureKind",
    "TlogEntry",
    "Verdict",
    "Verified",
    "as_list",
    "b64decode",
    "deciding_signatures",
    "inclusion_problem",
    "is_consistent",
    "is_statement",
    "judge",
    "judge_node",
    "layers_from_download",
    "oidc_issuer",
    "pae",
    "root_from_proof",
    "sans_of",
    "signed_checkpoint",
    "split_signature",
    "verify_bundle",
    "verify_discovery",
    "verify_evidence",
    "verify_git_object",
    "verify_layer",
]
