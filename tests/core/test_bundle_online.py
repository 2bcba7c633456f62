"""The optional upgrade of a SET-only result to an inclusion proof, fetched from a (local) Rekor API."""

from __future__ import annotations

import json
import socket

import pytest

from provenance.core import rekor
from provenance.core.errors import TransientError
from provenance.core.testsigstore import LogOptions, TestSigstore
from provenance.core.trustroot import TrustRoot
from provenance.core.types import IdentityPolicy
from provenance.core.verify import verify_bundle
from tests.interop.fake_rekor import FakeRekor

IDENTITY = "release@acme.test"
ISSUER = "https://oidc.acme.test"


def test_set_only_bundle_is_upgraded_through_the_rekor_api() -> None:
    sigstore = TestSigstore.create(name="online")
    server = FakeRekor(sigstore)
    try:
        # the bundle names the log by its key; the trust root says where that log lives
        document = json.loads(sigstore.trusted_root_json())
        document["tlogs"][0]["baseUrl"] = server.url
        root = TrustRoot.from_json(json.dumps(document).encode(), name="online")
        policy = IdentityPolicy(issuer=ISSUER, identity=IDENTITY)
        results = {}
        for version in ("0.1", "0.3"):
            raw = sigstore.sign_blob_bundle(b"a", identity=IDENTITY, issuer=ISSUER, version=version,
                                            log=LogOptions(with_inclusion_proof=False))
            results[version] = (
                verify_bundle(raw, artifact=b"a", trust_root=root, identity=policy,
                              fetch_inclusion_proof=rekor.make_fetcher(timeout=5)),
                verify_bundle(raw, artifact=b"a", trust_root=root, identity=policy),
            )
    finally:
        server.close()

    for version, (upgraded, _) in results.items():
        assert upgraded.is_verified and upgraded.result.tlog == "inclusion_proof", version
        assert not upgraded.result.leniencies  # with the proof, sigstore-python verifies it as well
    # off by default: a v0.1 bundle stays a promise, a v0.3 one without a proof fails
    assert results["0.1"][1].is_verified and results["0.1"][1].result.tlog == "inclusion_promise"
    assert [c.code for c in results["0.3"][1].result.failures] == ["tlog_inclusion_proof_missing"]


def test_fetch_fails_as_transient_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError) as refused:
        rekor.fetch_entry(f"http://127.0.0.1:{port}", 1, timeout=1)
    with pytest.raises(TransientError) as insecure:
        rekor.fetch_entry("http://rekor.example.test", 1)
    assert refused.value.code == insecure.value.code == "rekor_unreachable"
