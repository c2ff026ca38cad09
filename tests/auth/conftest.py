"""Fixtures of the auth tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth.keys import load_private_key, write_keypair
from tests.support.tokens import Keys


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    public_dir = tmp_path / "public"
    write_keypair("ed1", public_dir, tmp_path / "private" / "ed1.pem")
    write_keypair("ec1", public_dir, tmp_path / "private" / "ec1.pem", alg="ES256")
    return Keys(
        public_dir,
        load_private_key(tmp_path / "private" / "ed1.pem"),
        load_private_key(tmp_path / "private" / "ec1.pem"),
    )
