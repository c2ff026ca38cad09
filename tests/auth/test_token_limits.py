"""Booking-token limits: safe ids, no issue times in the future, bounded lifetimes, and a
jti bound to one seat (one participant in one visit)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from auth.issuer import issue_token
from auth.jti_memory import JtiMemory
from auth.keys import PemDirKeyStore
from auth.tokens import TokenVerifier, VisitClaim
from tests.support.tokens import (
    AUDIENCE,
    ISSUER,
    NOW,
    Keys,
    claims,
    family_token,
    refusal,
    signed,
)

BAD_IDS = ["../x", "a/b", "..", "", "x" * 5000, "a\0b", ".hidden", "a\\b", "a b", "-rf",
           "fam\n7", "x" * 129, "é"]
GOOD_IDS = ["V-2026-000187", "inmate-5531", "family-9", "visitor-88412", "j.lee@prison.gov",
            "sam+visits@example.org", "urn:uuid:4f1c2a9e-8b7d-4c0a-9e1f-2b3c4d5e6f70",
            "x" * 128, "7", "A_b.c..d"]


@pytest.fixture
def verifier(keys: Keys) -> TokenVerifier:
    return TokenVerifier(PemDirKeyStore(keys.public_dir), ISSUER, AUDIENCE, leeway_s=30)


@pytest.mark.parametrize("bad", BAD_IDS, ids=range(len(BAD_IDS)))
async def test_unsafe_sub_and_visit_id_are_bad_id(
    keys: Keys, verifier: TokenVerifier, bad: str
) -> None:
    visit = {"id": bad, "starts_at": NOW, "ends_at": NOW + 60}
    for token in (signed(keys, claims(sub=bad)), signed(keys, claims(visit=visit))):
        error = await refusal(verifier, token, now=NOW)
        assert error.code == "bad_id", error


async def test_a_10_kb_sub_is_refused_by_the_token_size_limit(
    keys: Keys, verifier: TokenVerifier
) -> None:
    # Too big to be a token at all: refused before any claim is read.
    assert (await refusal(verifier, family_token(keys, sub="x" * 10_240))).code == "malformed"


@pytest.mark.parametrize("good", GOOD_IDS)
async def test_record_numbers_uuids_and_emails_are_accepted(
    keys: Keys, verifier: TokenVerifier, good: str
) -> None:
    token = family_token(keys, sub=good, visit=VisitClaim(good, NOW + 600, NOW + 2400))
    got = await verifier.verify(token, now=NOW + 1000)
    assert (got.sub, got.visit.id if got.visit else None) == (good, good)


async def test_iat_may_be_ahead_by_the_leeway_only(keys: Keys, verifier: TokenVerifier) -> None:
    await verifier.verify(signed(keys, claims(iat=NOW + 30, jti="a")), now=NOW)
    error = await refusal(verifier, signed(keys, claims(iat=NOW + 31, jti="b")), now=NOW)
    assert error.code == "issued_in_future"


async def test_lifetime_counts_from_nbf_or_iat_whichever_is_later(
    keys: Keys, verifier: TokenVerifier
) -> None:
    day = 86400
    # A link mailed three weeks ahead, usable from an hour before the visit: accepted.
    starts = NOW + 21 * day
    ahead = VisitClaim("v-ahead", starts, starts + 3600)
    token = issue_token(keys.ed, kid="ed1", issuer=ISSUER, audience=AUDIENCE, sub="fam-7",
                        role="family", name="Sam", visit=ahead, now=NOW)
    await verifier.verify(token, now=starts - 600)
    # Usable from issue until three weeks later: refused, even though it is not expired.
    open_ended = signed(keys, claims(iat=NOW, nbf=NOW, exp=NOW + 21 * day, jti="x"))
    assert (await refusal(verifier, open_ended, now=NOW)).code == "lifetime_too_long"
    # Exactly the limit is allowed; a backdated nbf does not count before iat.
    await verifier.verify(signed(keys, claims(nbf=NOW - 99, exp=NOW + day, jti="y")), now=NOW)
    longer = signed(keys, claims(exp=NOW + day + 1, jti="z"))
    assert (await refusal(verifier, longer, now=NOW)).code == "lifetime_too_long"


async def test_max_lifetime_is_configurable(keys: Keys) -> None:
    strict = TokenVerifier(PemDirKeyStore(keys.public_dir), ISSUER, AUDIENCE, max_lifetime_s=600)
    assert (await refusal(strict, family_token(keys))).code == "lifetime_too_long"


def test_reference_issuer_defaults_fit_the_default_lifetime(keys: Keys) -> None:
    # Staff: 12 hours; a visit of up to 23 hours plus the hour before it.
    staff = issue_token(keys.ed, kid="ed1", issuer=ISSUER, audience=AUDIENCE, sub="o-1",
                        role="officer", name="Lee", now=NOW)
    long_visit = family_token(keys, visit=VisitClaim("v-long", NOW, NOW + 23 * 3600))
    for token in (staff, long_visit):
        payload = jwt.decode(token, options={"verify_signature": False})
        assert payload["exp"] - max(payload["iat"], payload["nbf"]) <= 86400


async def test_same_seat_may_reuse_its_token(keys: Keys, verifier: TokenVerifier) -> None:
    # Reconnects, the page's automatic rejoin and a second device all present it again.
    token = family_token(keys, jti="seat-1")
    for now in (NOW + 1000, NOW + 1001, NOW + 2000):
        assert (await verifier.verify(token, now=now)).sub == "fam-7"


@pytest.mark.parametrize(
    "other",
    [{"sub": "fam-8"}, {"visit": VisitClaim("v-43", NOW + 600, NOW + 2400)}],
    ids=["another participant", "another visit"],
)
async def test_jti_of_another_seat_is_token_reused(
    keys: Keys, verifier: TokenVerifier, other: dict[str, Any]
) -> None:
    await verifier.verify(family_token(keys, jti="shared"), now=NOW + 1000)
    error = await refusal(verifier, family_token(keys, jti="shared", **other))
    assert error.code == "token_reused"
    # The first seat still gets in.
    await verifier.verify(family_token(keys, jti="shared"), now=NOW + 1001)


async def test_jti_is_forgotten_once_its_token_expired(keys: Keys) -> None:
    memory = JtiMemory()
    verifier = TokenVerifier(PemDirKeyStore(keys.public_dir), ISSUER, AUDIENCE, jti_memory=memory)
    await verifier.verify(signed(keys, claims(jti="j", exp=NOW + 100)), now=NOW)
    later = signed(keys, claims(jti="j", sub="fam-8", exp=NOW + 400))
    assert (await refusal(verifier, later, now=NOW + 129)).code == "token_reused"
    await verifier.verify(later, now=NOW + 131)
    assert len(memory) == 1


def test_jti_memory_is_bounded() -> None:
    memory = JtiMemory(max_entries=3)
    for i in range(5):
        assert memory.claim(f"j{i}", (f"s{i}", "v"), forget_at=NOW + 100 + i, now=NOW)
    assert len(memory) == 3
    assert not memory.claim("j4", ("other", "v"), forget_at=NOW + 500, now=NOW)
    # The entries closest to expiry went first: j0 is free for anyone again.
    assert memory.claim("j0", ("other", "v"), forget_at=NOW + 500, now=NOW)


def test_jti_memory_keeps_a_digest_not_the_jti() -> None:
    memory = JtiMemory()
    memory.claim("j" * 8000, ("s", None), forget_at=NOW + 1, now=NOW)
    assert all(len(key) == 32 for key in memory._seats)
