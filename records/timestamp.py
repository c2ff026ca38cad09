"""RFC 3161 time-stamp requests and tokens, without network I/O (``rfc3161-client``).

The request asks for a SHA-256 imprint (so it equals a checkpoint's hash), a nonce (so an
answer cannot be replayed from another request) and the authority's certificate in the
token (so the token can be checked later against the authority's root alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client.tsp import TimeStampRequest

CONTENT_TYPE = "application/timestamp-query"


def request(data: bytes) -> TimeStampRequest:
    """A time-stamp request for ``data``; send ``.as_bytes()`` to the authority."""
    return (TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
            .nonce(nonce=True).cert_request(cert_request=True).build())


def load_roots(pem: bytes) -> list[x509.Certificate]:
    """The authority's trusted root certificates; ValueError if the PEM holds none."""
    roots = x509.load_pem_x509_certificates(pem)
    if not roots:
        raise ValueError("no certificate in the time-stamp authority's CA file")
    return roots


@dataclass(frozen=True)
class TokenCheck:
    problem: str  # "" when the token is valid for the data
    time: str  # the authority's time, ISO 8601 UTC; "" when unreadable


def check(response: bytes, data: bytes, roots: list[x509.Certificate],
          sent: TimeStampRequest | None = None) -> TokenCheck:
    """Verify a DER TimeStampResp over ``data`` against ``roots``; with ``sent``, also its
    nonce and policy (an answer to that very request)."""
    try:
        decoded = decode_timestamp_response(response)
    except ValueError as exc:
        return TokenCheck(f"not a time-stamp response: {exc}", "")
    try:
        when = decoded.tst_info.gen_time.isoformat()
    except ValueError:
        when = ""
    builder = VerifierBuilder.from_request(sent) if sent is not None else VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify_message(decoded, data)
    except (VerificationError, ValueError) as exc:
        return TokenCheck(str(exc) or type(exc).__name__, when)
    return TokenCheck("", when)
