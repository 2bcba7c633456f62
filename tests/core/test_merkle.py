"""The RFC 6962 inclusion-proof check of the bundle engine, against the test log's proofs."""

from __future__ import annotations

import hashlib

from provenance.core.testsigstore import TestSigstore
from provenance.core.verify.tlog import root_from_proof


def test_every_proof_of_every_tree_size_leads_to_the_root_and_nothing_else_does() -> None:
    log = TestSigstore.create(name="merkle").log
    bodies = [f"entry {i}".encode() for i in range(13)]
    for body in bodies:
        log.append(body, integrated_time=1_700_000_000)
    for size in range(1, len(log) + 1):
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            leaf = hashlib.sha256(b"\x00" + log.entry(index).body).digest()
            assert root_from_proof(index, size, leaf, list(proof.hashes)) == proof.root_hash
            other = hashlib.sha256(b"\x00" + b"not in the log").digest()
            assert root_from_proof(index, size, other, list(proof.hashes)) != proof.root_hash
    proof = log.inclusion_proof(3)
    leaf = hashlib.sha256(b"\x00" + log.entry(3).body).digest()
    for index in (-1, -4, len(log), len(log) + 5):
        assert root_from_proof(index, len(log), leaf, list(proof.hashes)) is None
    assert root_from_proof(3, len(log), leaf, list(proof.hashes)[:-1]) is None  # one hash short
