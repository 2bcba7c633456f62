"""The log client and proofs of provenance.core.monitor against a local log server: Rekor v1's API and v2's tiles."""

from __future__ import annotations

import pytest

from provenance.core.errors import TransientError
from provenance.core.monitor import (
    LogInconsistentError,
    LogInvalidError,
    RekorV1Log,
    TileLog,
    Watch,
    advance,
    describe_entry,
    tile_path,
)
from provenance.core.testsigstore import LogOptions, TestSigstore
from provenance.core.trustroot import TrustRoot
from tests.monitor.logserver import LogServer

ISSUER = "https://token.actions.githubusercontent.com"
RELEASE = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore.create(name="monitor-client")


@pytest.fixture
def server(sigstore: TestSigstore):
    server = LogServer(sigstore.log)
    yield server
    server.close()


def _root(sigstore: TestSigstore) -> TrustRoot:
    return TrustRoot.from_json(sigstore.trusted_root_json(), name=sigstore.name)


def _sources(sigstore: TestSigstore, server: LogServer):
    root = _root(sigstore)
    yield RekorV1Log(server.url, root, sigstore.rekor_log_id, workers=4)
    yield TileLog(server.url, root.tlog_key(sigstore.rekor_log_id))


def _follow(source, previous=None, start=0, limit=100):
    entries, batch = [], None
    while True:
        batch = advance(source, previous=previous, start=start, limit=limit)
        entries += batch.entries
        previous, start = batch.checkpoint, batch.end
        if batch.lag == 0:
            return entries, previous


def test_tile_paths_follow_c2sp() -> None:
    assert [tile_path(n) for n in (0, 7, 999, 1000, 1234067)] == ["000", "007", "999", "x001/000", "x001/x234/067"]


@pytest.mark.parametrize("which", ["v1", "tiles"])
def test_follows_every_entry_across_tiles_and_growth(sigstore: TestSigstore, server: LogServer, which: str) -> None:
    start = len(sigstore.log)
    for i in range(270):  # crosses a tile boundary (256)
        sigstore.sign_blob_bundle(f"blob {i}".encode(), identity=RELEASE, issuer=ISSUER,
                                  log=LogOptions(rekor_v2=i % 2 == 1))
    source = dict(zip(["v1", "tiles"], _sources(sigstore, server), strict=True))[which]
    entries, head = _follow(source, start=start, limit=70)
    assert [e.index for e in entries] == list(range(start, len(sigstore.log)))
    assert [e.body for e in entries] == [e.body for e in sigstore.log.entries()[start:]]
    assert head.size == len(sigstore.log)

    sigstore.sign_blob_bundle(b"one more", identity=RELEASE, issuer=ISSUER)  # the log grows: consistency proof
    more, newer = _follow(source, previous=head, start=head.size)
    assert [e.index for e in more] == [head.size] and newer.size == head.size + 1


@pytest.mark.parametrize("which", ["v1", "tiles"])
def test_a_forked_log_is_inconsistent(sigstore: TestSigstore, server: LogServer, which: str) -> None:
    for i in range(5):
        sigstore.sign_blob_bundle(f"before fork {i}".encode(), identity=RELEASE, issuer=ISSUER)
    source = dict(zip(["v1", "tiles"], _sources(sigstore, server), strict=True))[which]
    _, head = _follow(source, start=len(sigstore.log) - 3)
    forked = sigstore.log.fork(head.size - 2)  # drops two entries the monitor has seen, and grows past them
    for i in range(4):
        forked.append(f'{{"fork": {i}}}'.encode(), integrated_time=1)
    server.log = forked
    with pytest.raises(LogInconsistentError) as caught:
        advance(source, previous=head, start=head.size)
    assert caught.value.code == "log_inconsistent"


def test_the_same_size_with_another_root_is_inconsistent(sigstore: TestSigstore, server: LogServer) -> None:
    source = RekorV1Log(server.url, _root(sigstore), sigstore.rekor_log_id)
    sigstore.sign_blob_bundle(b"x", identity=RELEASE, issuer=ISSUER)
    head = advance(source, previous=None, start=len(sigstore.log) - 1).checkpoint
    forked = sigstore.log.fork(head.size - 1)
    forked.append(b'{"other": true}', integrated_time=1)
    server.log = forked
    with pytest.raises(LogInconsistentError):
        advance(source, previous=head, start=head.size)


def test_an_unreachable_log_is_transient(sigstore: TestSigstore, server: LogServer) -> None:
    server.down = True
    for source in _sources(sigstore, server):
        with pytest.raises(TransientError) as caught:
            advance(source, previous=None, start=0)
        assert caught.value.code == "log_unreachable"


def test_a_checkpoint_signed_by_another_key_is_refused(sigstore: TestSigstore, server: LogServer) -> None:
    other = TestSigstore.create(name="monitor-other")
    for source in (RekorV1Log(server.url, _root(other), other.rekor_log_id),
                   TileLog(server.url, _root(other).tlog_key(other.rekor_log_id))):
        with pytest.raises(LogInvalidError) as caught:
            advance(source, previous=None, start=0)
        assert caught.value.code == "log_checkpoint_invalid"


def test_refuses_plain_http_to_other_hosts(sigstore: TestSigstore) -> None:
    with pytest.raises(LogInvalidError):
        TileLog("http://rekor.example", _root(sigstore).tlog_key(sigstore.rekor_log_id))


def test_describes_signers_and_what_they_signed(sigstore: TestSigstore) -> None:
    from provenance.core.testsigstore import GitHubWorkflow, LeafOptions

    github = GitHubWorkflow(repository="acme/app", ref="refs/heads/main", sha="a" * 40, trigger="push",
                            workflow_name="release")
    sigstore.sign_blob_bundle(b"artifact", identity=RELEASE, issuer=ISSUER, leaf=LeafOptions(github=github))
    facts = describe_entry(sigstore.log.entries()[-1].body)
    import hashlib
    assert facts.digests == (f"sha256:{hashlib.sha256(b'artifact').hexdigest()}",)
    assert facts.subjects == (RELEASE,) and facts.issuer == ISSUER and facts.claims["repository"] == "acme/app"
    assert Watch(1, subject=RELEASE, issuer=ISSUER).matches(facts)
    assert Watch(1, subject_regexp=r"^https://github\.com/acme/", claims={"ref": "refs/heads/main"}).matches(facts)
    assert not Watch(1, subject_regexp=r"^https://github\.com/acme/", claims={"ref": "refs/tags/v1"}).matches(facts)
    assert not Watch(1, subject=RELEASE, issuer="https://accounts.google.com").matches(facts)
    assert not Watch(1).matches(facts)

    sigstore.sign_blob_bundle(b"v2", identity=RELEASE, issuer=ISSUER, log=LogOptions(rekor_v2=True))
    v2 = describe_entry(sigstore.log.entries()[-1].body)
    assert v2.version == "0.0.2" and v2.subjects == (RELEASE,) and v2.key_fingerprints

    assert describe_entry(b"not json").problem
    assert describe_entry(b'{"kind": "alpine", "apiVersion": "0.0.1", "spec": {}}').problem
