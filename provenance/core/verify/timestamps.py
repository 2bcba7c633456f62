"""RFC 3161 signed timestamps over a signature, from a timestamp authority of the trust root.

Each timestamp that verifies (its token signed by the authority's chain, its imprint over the signature, its
time inside the authority's validity window, ends included) becomes a verified time of the run; every one of
them must then lie in the certificate's validity (:func:`provenance.core.verify.certificate.check_signed_times`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from provenance.core.trustroot import TrustRoot
from provenance.core.types import (
    Outcome,
    Stage,
)
from provenance.core.verify.checks import MALFORMED, Run
from provenance.core.verify.encoding import short

MAX_TIMESTAMPS = 32  # as sigstore-go and sigstore-python


def check_timestamps(run: Run, *, signature: bytes, timestamps: list[bytes], trust_root: TrustRoot) -> None:
    """RFC 3161 timestamps over the signature, from a timestamp authority of the trust root."""
    if not timestamps:
        return
    from rfc3161_client import VerificationError as TimestampError
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    problems = []
    verified = 0
    for der in timestamps:
        try:
            response = decode_timestamp_response(der)
        except ValueError as err:
            run.fail(
                Stage.TIMESTAMP,
                "timestamp_malformed",
                f"an RFC 3161 timestamp cannot be read: {short(str(err))}",
                "the timestamp is damaged",
                MALFORMED,
            )
            continue
        for tsa in trust_root.timestamp_authorities:
            certs = list(tsa.certificates)
            if len(certs) < 2:
                continue
            builder = VerifierBuilder().tsa_certificate(certs[0]).add_root_certificate(certs[-1])
            for cert in certs[1:-1]:
                builder = builder.add_intermediate_certificate(cert)
            try:
                builder.build().verify_message(response, signature)
            except (TimestampError, ValueError) as err:
                problems.append(f"{tsa.name}: {short(str(err), 80)}")
                continue
            when = response.tst_info.gen_time
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            if not tsa.validity.contains(when):
                problems.append(f"{tsa.name}: time {when.isoformat()} outside {tsa.validity.describe()}")
                continue
            verified += 1
            run.add_signed_time(when, f"the RFC 3161 timestamp of {tsa.name}")
            if run.signed_time is None:
                run.signed_time, run.signed_time_source = when, f"the RFC 3161 timestamp of {tsa.name}"
            run.ok(
                Stage.TIMESTAMP,
                "timestamp_ok",
                f"an RFC 3161 timestamp from {tsa.name} ({tsa.uri or 'no uri'}) "
                f"puts the signature at {when.isoformat()}",
            )
            break
    if not verified and not any(c.code == "timestamp_malformed" for c, _ in run.checks):
        known = ", ".join(t.name for t in trust_root.timestamp_authorities) or "none"
        run.fail(
            Stage.TIMESTAMP,
            "tsa_untrusted",
            f"no RFC 3161 timestamp of the bundle verifies with a timestamp authority of the trust root "
            f"{trust_root.name!r} (authorities: {known}){': ' + '; '.join(problems[:3]) if problems else ''}",
            "the timestamp comes from an authority this trust root does not know; use that instance's root",
            Outcome.UNTRUSTED,
        )


def first_timestamp_time(timestamps: list[bytes]) -> datetime | None:
    """The (unverified) time of the first RFC 3161 timestamp, for explaining a failure."""
    if not timestamps:
        return None
    from rfc3161_client import decode_timestamp_response

    try:
        when = decode_timestamp_response(timestamps[0]).tst_info.gen_time
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
