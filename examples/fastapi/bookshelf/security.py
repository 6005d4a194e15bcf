"""Passwords and bearer tokens: stdlib only (PBKDF2 hashes, random tokens stored in the database).

Tokens live in the ``api_tokens`` table, so a token issued in one test is gone in the next test's
fresh database -- exactly like a real deployment whose database was reset.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Low on purpose: this is a test fixture app (a real app would use 600_000+ or argon2).
ITERATIONS = 1_000


def hash_password(password: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), ITERATIONS).hex()
    return f"pbkdf2_sha256${ITERATIONS}${salt}${digest}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    mine = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations)).hex()
    return hmac.compare_digest(mine, digest)


def new_token() -> str:
    return secrets.token_urlsafe(32)
