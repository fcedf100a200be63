"""Stored passwords: scrypt outside the test suite, and a sign-in never needs to know which method made a hash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from werkzeug.security import generate_password_hash

from app.auth import accounts
from app.auth.models import User
from app.auth.roles import Role

REPO = Path(__file__).resolve().parents[2]


def test_rewind_stores_scrypt_hashes_when_the_suite_does_not_say_otherwise():
    made = subprocess.run(
        [sys.executable, "-c", "from app.auth.models import hash_password; print(hash_password('a long password'))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert made.startswith("scrypt:32768:"), made


def test_a_password_hashed_another_way_still_signs_in():
    """Changing HASH_METHOD must not lock out accounts whose hashes were made before."""
    user = User(name="old", role=Role.VIEWER)
    user.password_hash = generate_password_hash("a long password", method="scrypt")
    assert accounts.password_matches(user, "a long password")
    assert not accounts.password_matches(user, "not the password")
    user.set_password("a long password")
    assert not user.password_hash.startswith("scrypt:") and accounts.password_matches(user, "a long password")
