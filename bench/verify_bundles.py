"""Sigstore bundles verified per second: Provenance in one process vs a fresh CLI process per bundle.

    .venv/bin/python bench/verify_bundles.py [--bundles 200] [--rounds 7] [--samples 20]

Bundles are keyless (Fulcio-style certificate, SCT, Rekor entry with inclusion proof, checkpoint and SET) and made
by the project's test Sigstore: message signatures (``hashedrekord``) and DSSE in-toto attestations (``dsse``).
Every verifier checks the same bundles offline against the same trusted root:

* ``provenance``: :func:`provenance.core.verify.verify_bundle` in this process (sigstore engine), a batch of
  ``--bundles`` per round; also the same bundles as v0.1 with the SET only (our own engine, which sigstore refuses);
* ``sigstore CLI``: ``sigstore --trust-config ... verify identity --offline``, one fresh process per bundle;
* ``cosign``: ``cosign verify-blob[-attestation] --new-bundle-format --trusted-root``, one process per bundle.

The CLI samples are interleaved (sigstore, cosign, sigstore, ...) so both see the same machine load. Prints the
median per-bundle time and rate of each, and the ratios. Default runtime: well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance.core.testsigstore import LogOptions, TestSigstore, in_toto_statement
from provenance.core.trustroot import TrustRoot
from provenance.core.types import IdentityPolicy
from provenance.core.verify import verify_bundle

IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
SLSA = "https://slsa.dev/provenance/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=int, default=200, help="bundles per kind verified in-process per round")
    parser.add_argument("--rounds", type=int, default=7, help="in-process rounds (median taken)")
    parser.add_argument("--samples", type=int, default=20, help="CLI processes per tool per kind (median taken)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-bundles-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; bundles: keyless, test Sigstore, offline")
    sigstore = TestSigstore.create(name="bench")
    root = TrustRoot.from_json(sigstore.trusted_root_json(), name="bench")
    policy = IdentityPolicy(issuer=ISSUER, identity=IDENTITY)
    (work / "trusted_root.json").write_bytes(sigstore.trusted_root_json())
    signing_config = (resources.files("sigstore._store") / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
                      / "signing_config.v0.2.json").read_text()
    (work / "trust_config.json").write_text(json.dumps({
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": sigstore.trusted_root(),
        "signingConfig": json.loads(signing_config),
    }))

    # One artifact per bundle, so nothing is cached by content anywhere.
    kinds: dict[str, list[tuple[bytes, bytes, bytes]]] = {"message": [], "dsse": []}
    for i in range(args.bundles):
        artifact = f"artifact {i}\n".encode()
        set_only = LogOptions(with_inclusion_proof=False)
        kinds["message"].append((
            artifact,
            sigstore.sign_blob_bundle(artifact, identity=IDENTITY, issuer=ISSUER),
            sigstore.sign_blob_bundle(artifact, identity=IDENTITY, issuer=ISSUER, log=set_only, version="0.1"),
        ))
        statement = in_toto_statement(f"artifact-{i}", hashlib.sha256(artifact).hexdigest(), SLSA, {"i": i})
        kinds["dsse"].append((
            artifact,
            sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER),
            sigstore.sign_dsse_bundle(statement, identity=IDENTITY, issuer=ISSUER, log=set_only, version="0.1"),
        ))

    rows: list[tuple[str, str, float]] = []  # (kind, verifier, median seconds per bundle)
    for kind, items in kinds.items():
        for label, column in (("provenance (in-process)", 1), ("provenance, v0.1 SET only (own engine)", 2)):
            per_bundle = in_process(items, column, root, policy, args.rounds)
            rows.append((kind, label, per_bundle))
        sigstore_cli, cosign_cli = clis(kind, items, work, args.samples)
        if sigstore_cli is not None:
            rows.append((kind, "sigstore CLI (process per bundle)", sigstore_cli))
        if cosign_cli is not None:
            rows.append((kind, "cosign verify-blob (process per bundle)", cosign_cli))

    print()
    print(f"{'kind':8} {'verifier':42} {'median/bundle':>14} {'bundles/s':>10} {'time vs in-process':>19}")
    for kind in kinds:
        base = next(s for k, label, s in rows if k == kind and label.startswith("provenance (in"))
        for k, label, seconds in rows:
            if k != kind:
                continue
            factor = seconds / base
            ratio = f"{factor:.2f}x" if factor < 10 else f"{factor:,.0f}x"
            print(f"{kind:8} {label:42} {seconds * 1000:11.2f} ms {1 / seconds:10.1f} {ratio:>19}")


def in_process(items: list[tuple[bytes, bytes, bytes]], column: int, root: TrustRoot, policy: IdentityPolicy,
               rounds: int) -> float:
    def once() -> None:
        for item in items:
            result = verify_bundle(item[column], artifact=item[0], trust_root=root, identity=policy).result
            if not result.is_verified:
                raise SystemExit(f"bench bundle did not verify: {result.reason}")

    once()  # warm-up: imports, the Verifier for this root
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        once()
        timings.append((time.perf_counter() - start) / len(items))
    return statistics.median(timings)


def clis(kind: str, items: list[tuple[bytes, bytes, bytes]], work: Path, samples: int
         ) -> tuple[float | None, float | None]:
    sigstore_bin = Path(sys.executable).with_name("sigstore")
    cosign_bin = shutil.which("cosign")
    env = {**os.environ, "HOME": str(work), "TUF_ROOT": str(work / "tuf")}
    commands: list[tuple[str, Callable[[Path, Path], list[str]]]] = []
    if sigstore_bin.exists():
        commands.append(("sigstore", lambda artifact, bundle: [
            str(sigstore_bin), "--trust-config", str(work / "trust_config.json"), "verify", "identity", "--offline",
            "--bundle", str(bundle), "--cert-identity", IDENTITY, "--cert-oidc-issuer", ISSUER, str(artifact)]))
    else:
        print(f"  (no sigstore CLI at {sigstore_bin}: skipped)")
    if cosign_bin:
        subcommand = ["verify-blob"] if kind == "message" else ["verify-blob-attestation", "--type", SLSA]
        commands.append(("cosign", lambda artifact, bundle: [
            cosign_bin, *subcommand, "--new-bundle-format", "--trusted-root", str(work / "trusted_root.json"),
            "--bundle", str(bundle), "--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER,
            str(artifact)]))
    else:
        print("  (no cosign on PATH: skipped)")

    timings: dict[str, list[float]] = {name: [] for name, _ in commands}
    for i in range(min(samples, len(items))):
        artifact, bundle, _ = items[i]
        artifact_path, bundle_path = work / f"{kind}-{i}.bin", work / f"{kind}-{i}.sigstore.json"
        artifact_path.write_bytes(artifact)
        bundle_path.write_bytes(bundle)
        for name, command in commands:  # interleaved: both tools see the same conditions
            start = time.perf_counter()
            done = subprocess.run(command(artifact_path, bundle_path), env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            timings[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed on a {kind} bundle:\n{done.stderr[-2000:]}")
    medians = {name: statistics.median(values) for name, values in timings.items() if values}
    return medians.get("sigstore"), medians.get("cosign")


if __name__ == "__main__":
    main()
