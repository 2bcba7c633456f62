"""ClusterImagePolicy parsing, validation, export and glob matching (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provenance.core.policy import (
    ArtifactFacts,
    ClusterImagePolicy,
    Evaluator,
    EvidenceFacts,
    PolicyError,
    TrustStatus,
    Verdict,
    combine_index,
    compile_glob,
    dump_policy,
    image_names,
    parse_policy,
)
from provenance.core.types import ImageRef

ISSUE_POLICY = (Path(__file__).resolve().parents[1] / "policies" / "issue_policy.yaml").read_text()
HEADER = "apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\n"


def _spec(body: str) -> str:
    return HEADER + "spec:\n  images:\n    - glob: \"ghcr.io/myorg/**\"\n  authorities:\n" + body


def _refused(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    return info.value


def test_issue_policy_imports_as_written():
    policy = parse_policy(ISSUE_POLICY)
    assert policy.name == "require-sigstore-signatures"
    assert policy.images == ("ghcr.io/myorg/**",) and policy.mode == "enforce"
    first, second = policy.authorities
    assert first.kind == "keyless" and first.keyless.url == "https://fulcio.sigstore.dev"
    assert first.keyless.identities[0].subject_regexp == "https://github.com/myorg/.*"
    assert first.ctlog_url == "https://rekor.sigstore.dev"
    assert second.kind == "attestations-only"
    assert second.attestations[0].predicate_urls == {"https://slsa.dev/provenance/v1"}
    assert second.attestations[0].rego.rule == "allow"
    warnings = [str(w) for w in policy.warnings]
    # the three things a reviewer must know about this policy, each pointing at its line
    assert any(w.startswith("line 12:") and "not anchored" in w for w in warnings)
    assert any(w.startswith("line 16:") and "policy-controller refuses such an authority" in w for w in warnings)
    assert any(w.startswith("line 21:") and "isCompliant" in w for w in warnings)


def test_export_round_trips():
    policy = parse_policy(ISSUE_POLICY)
    exported = dump_policy(policy)
    assert "data: |\n" in exported and "kind: ClusterImagePolicy" in exported
    assert parse_policy(exported) == policy


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: {}\n", 2, "not a ClusterImagePolicy"),
    ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ImagePolicy\nmetadata:\n  name: x\n", 2,
     "not a ClusterImagePolicy"),
    ("- just\n- a list\n", 1, "expected a mapping"),
    ("apiVersion: [unclosed\n", 2, "not valid YAML"),
    ("a: 1\n---\nb: 2\n", 2, "not valid YAML"),
    (HEADER + "spec:\n  authorities: []\n", 6, "images is required"),
])
def test_rejects_what_is_not_a_cluster_image_policy(text, line, needle):
    err = _refused(text)
    assert needle in err.message and err.line == line, err.message
    assert err.code == "policy_invalid"


def test_rejects_rego_that_does_not_compile_pointing_at_its_line():
    text = ISSUE_POLICY.replace("default allow = false", "default allow = = false")
    err = _refused(text)
    assert err.code == "rego_invalid"
    assert err.line == 23 and text.splitlines()[err.line - 1].strip() == "default allow = = false"
    assert "does not compile" in err.message and err.message.startswith("line 23: spec.authorities[1]")


def test_rejects_rego_in_another_package_or_without_a_decision_rule():
    err = _refused(ISSUE_POLICY.replace("package sigstore", "package other"))
    assert "package sigstore" in err.message and err.line == 22
    err = _refused(ISSUE_POLICY.replace("allow", "permit"))
    assert "neither `isCompliant`" in err.message


def test_rejects_a_regexp_that_does_not_compile_pointing_at_its_line():
    err = _refused(ISSUE_POLICY.replace('"https://github.com/myorg/.*"', '"https://github.com/myorg/(.*"'))
    assert err.line == 12 and "does not compile" in err.message and "subjectRegExp" in err.path


def test_rejects_regexps_go_cannot_run():
    err = _refused(ISSUE_POLICY.replace('"https://github.com/myorg/.*"', '"^(?!evil).*$"'))
    assert "RE2" in err.message and err.line == 12


@pytest.mark.parametrize(("body", "needle"), [
    ("    - keyless:\n        url: x\n      key:\n        data: x\n", "exactly one of key, keyless, static"),
    ("    - ctlog:\n        url: x\n", "expected exactly one of key, keyless, static"),
    ("    - key:\n        data: not a key\n", "not a PEM public key"),
    ("    - key:\n        kms: awskms:///arn\n", "KMS keys are not supported"),
    ("    - keyless:\n        ca-cert:\n          data: x\n", "ca-cert is not supported"),
    ("    - keyless:\n        url: x\n        identities:\n          - issuer: a\n            issuerRegExp: b\n",
     "only one of issuer, issuerRegExp"),
    ("    - keyless:\n        url: x\n      attestations:\n        - name: a\n          predicateType: spdx\n"
     "          policy:\n            type: cue\n            data: 'x: 1'\n", "only rego is evaluated"),
    ("    - keyless:\n        url: x\n      attestations:\n        - name: a\n          predicateType: foo\n",
     "neither a predicate type URL"),
    ("    - static:\n        action: maybe\n", "expected pass or fail"),
])
def test_rejects_fields_it_cannot_honour(body, needle):
    err = _refused(_spec(body))
    assert needle in err.message and err.line > 0, err.message


def test_refuses_a_spec_level_policy_rather_than_ignoring_it():
    text = _spec("    - keyless:\n        url: x\n") + "  policy:\n    type: rego\n    data: x\n"
    assert "not supported yet" in _refused(text).message


@pytest.mark.parametrize(("identity", "needle"), [
    ('subjectRegExp: ".*"', "over-broad"),
    ('subjectRegExp: ".+"', "over-broad"),
    ('subjectRegExp: "^https://github\\\\.com/myorg/.*$"', None),
    ('subjectRegExp: "github.com/myorg/"', "not anchored"),
    ('subject: "https://github.com/myorg/app/.github/workflows/r.yml@refs/heads/main"', None),
])
def test_warns_on_over_broad_identity_patterns(identity, needle):
    text = _spec(f"    - keyless:\n        url: x\n        identities:\n          - issuer: https://i.example\n"
                 f"            {identity}\n")
    warnings = [str(w) for w in parse_policy(text).warnings]
    if needle is None:
        assert warnings == []
    else:
        assert any(needle in w and w.startswith("line 13:") for w in warnings), warnings


def test_warns_on_an_identity_without_subject_and_keyless_without_identities():
    warnings = [str(w) for w in parse_policy(_spec(
        "    - keyless:\n        url: x\n        identities:\n          - issuer: https://i.example\n"
        "    - keyless:\n        url: x\n")).warnings]
    assert any("any subject of the issuer" in w for w in warnings)
    assert any("no identities: any signer" in w for w in warnings)


@pytest.mark.parametrize(("glob", "name", "matches"), [
    ("ghcr.io/myorg/**", "ghcr.io/myorg/app", True),
    ("ghcr.io/myorg/**", "ghcr.io/myorg/team/app:v1", True),
    ("ghcr.io/myorg/*", "ghcr.io/myorg/team/app", False),
    ("ghcr.io/*/*", "ghcr.io/foo", False),
    ("ghcr.io/**", "ghcrxio/foo", False),
    ("*", "index.docker.io/library/ubuntu", True),
    ("*/*", "index.docker.io/myuser/app", True),
    ("ghcr.io/foo", "prefix-ghcr.io/foo", False),
    ("ghcr.io/myorg/**", "ghcr.io/myorganisation/app", False),
    ("*", "index.docker.io/myorg/nginx", False),
    ("oci-layout/**", "oci-layout/demo-fleet:v1", True),
])
def test_globs_match_as_policy_controller_does(glob, name, matches):
    assert bool(compile_glob(glob).match(name)) is matches


def test_bad_globs_are_refused():
    with pytest.raises(ValueError, match="invalid glob"):
        compile_glob("[a-z]*")
    assert "invalid glob" in _refused(_spec("    - keyless:\n        url: x\n").replace(
        '"ghcr.io/myorg/**"', '".+"')).message


def test_image_names_spell_docker_hub_as_policy_controller_does():
    digest = "sha256:" + "a" * 64
    names = image_names("registry-1.docker.io", "library/ubuntu", digest, ["22.04"])
    assert names == ("index.docker.io/library/ubuntu", f"index.docker.io/library/ubuntu@{digest}",
                     "index.docker.io/library/ubuntu:22.04")
    for alias in ("docker.io", "index.docker.io", "Registry-1.Docker.IO"):
        assert image_names(alias, "ubuntu", digest)[0] == "index.docker.io/library/ubuntu"
        assert image_names(alias, "myorg/app", digest)[0] == "index.docker.io/myorg/app"
    for reference in ("ubuntu", "docker.io/ubuntu:22.04", "index.docker.io/library/ubuntu"):
        ref = ImageRef.parse(reference)
        assert image_names(ref.registry, ref.repository, digest)[0] == "index.docker.io/library/ubuntu", reference
    assert image_names("ghcr.io", "myorg/app", digest)[0] == "ghcr.io/myorg/app"  # no library/ elsewhere
    assert image_names("localhost:5000", "app", digest)[0] == "localhost:5000/app"


def test_an_oci_layout_is_named_oci_layout_slash_its_name():
    names = image_names("", "demo-fleet", "sha256:" + "a" * 64, ["v1"])
    assert names[0] == "oci-layout/demo-fleet" and "oci-layout/demo-fleet:v1" in names
    assert image_names("oci-layout", "demo-fleet", "sha256:" + "a" * 64)[0] == "oci-layout/demo-fleet"
    assert compile_glob("oci-layout/**").match(names[2]) and not compile_glob("ghcr.io/**").match(names[0])


def _facts(*evidence: EvidenceFacts) -> ArtifactFacts:
    return ArtifactFacts(1, "sha256:" + "a" * 64, ("ghcr.io/myorg/app",), evidence)


def _signature(identity: str, *, failed: frozenset[str] = frozenset(), outcome: str = "verified") -> EvidenceFacts:
    return EvidenceFacts(1, "signature", outcome, "sha256:" + "a" * 64, "sha256:" + "b" * 64, "root",
                         identity=identity, issuer="https://token.actions.githubusercontent.com",
                         failed_stages=failed, reason="expected another identity" if failed else "")


def test_identity_only_failures_count_as_a_valid_signature_by_someone_else():
    policy = parse_policy(ISSUE_POLICY)
    evaluator = Evaluator([policy])
    other = _signature("https://github.com/myorg/api/.github/workflows/r.yml@refs/heads/main",
                       failed=frozenset({"identity"}), outcome="untrusted")
    assert evaluator.evaluate(_facts(other)).status is TrustStatus.TRUSTED
    broken = _signature("https://github.com/myorg/api/x", failed=frozenset({"identity", "signature"}),
                        outcome="invalid")
    assert evaluator.evaluate(_facts(broken)).status is TrustStatus.UNTRUSTED


def test_unanchored_regexps_match_anywhere_as_go_does():
    # The reason the import warns: policy-controller would admit this subject under the issue's policy.
    evaluator = Evaluator([parse_policy(ISSUE_POLICY)])
    sneaky = _signature("https://evil.example/?https://github.com/myorg/x")
    assert evaluator.evaluate(_facts(sneaky)).status is TrustStatus.TRUSTED


def test_attestations_only_authority_without_any_signer_matches_nothing():
    text = _spec("    - attestations:\n        - name: a\n          predicateType: slsaprovenance1\n")
    policy = parse_policy(text)
    assert any("can never match" in str(w) for w in policy.warnings)
    statement = {"predicateType": "https://slsa.dev/provenance/v1", "predicate": {}}
    attestation = EvidenceFacts(2, "attestation", "verified", "sha256:" + "a" * 64, "sha256:" + "c" * 64, "root",
                                identity="anyone", issuer="https://x", predicate_type="https://slsa.dev/provenance/v1",
                                statement=statement)
    verdict = Evaluator([policy]).evaluate(_facts(attestation))
    assert verdict.status is TrustStatus.UNTRUSTED and verdict.code == "no_signer"


def test_combine_index_takes_the_worst_and_covers_unsigned_platforms_under_a_trusted_index():
    trusted = Verdict(TrustStatus.TRUSTED, "trusted", "ok")
    unsigned = Verdict(TrustStatus.UNSIGNED, "no_signature", "nothing")
    untrusted = Verdict(TrustStatus.UNTRUSTED, "identity_mismatch", "by someone else")
    assert combine_index(trusted, [("linux/amd64", unsigned)]).status is TrustStatus.TRUSTED
    mixed = combine_index(trusted, [("linux/amd64", trusted), ("linux/arm64", untrusted)])
    assert (mixed.status, mixed.code, mixed.reason) == (TrustStatus.UNTRUSTED, "identity_mismatch",
                                                        "platform linux/arm64: by someone else")
    assert combine_index(unsigned, [("linux/amd64", trusted)]).status is TrustStatus.UNSIGNED


def test_policy_is_a_frozen_value():
    policy = parse_policy(ISSUE_POLICY)
    assert isinstance(policy, ClusterImagePolicy) and hash(policy.authorities[0])
    with pytest.raises(AttributeError):
        policy.name = "x"  # type: ignore[misc]


def test_ignore_tlog_is_for_key_authorities_only():
    keyless = _spec("    - ignoreTlog: true\n      keyless:\n        identities:\n          - issuer: https://x\n"
                    "            subject: someone\n")
    assert "key authorities only" in str(_refused(keyless))
    maybe = _spec("    - ignoreTlog: maybe\n      static:\n        action: pass\n")
    assert "expected true or false" in str(_refused(maybe))
