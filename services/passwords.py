"""Passwords: argon2id hashes (argon2-cffi's RFC 9106 low-memory profile) and rules a person can follow.

The rules: 10 to 200 characters, any characters (spaces too), and not a common or breached password nor one with
digits or symbols stuck on its end ("dragon2024!"), nor the account's own email. The list of common passwords
(`common_passwords.txt`, about 11 000: the most frequent from breaches, from zxcvbn's MIT-licensed lists) ships
with the package; nothing is looked up over the network.
"""

import re
import unicodedata
from functools import lru_cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import InvalidRequest

MIN_LENGTH = 10
MAX_LENGTH = 200  # long passphrases are welcome; argon2 hashes any length, this only bounds the work per request

_HASHER = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
_TRAILING = re.compile(r"[\W\d_]+$")
# Verified against when the email is unknown, so both answers take one argon2 verification (no timing oracle).
_DUMMY_HASH = _HASHER.hash("no account has this password: it only spends the time a real check takes")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = (files("services") / "common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line)


def normalised(password: str) -> str:
    """NFKC, so the same password typed on two keyboards is the same string."""
    return unicodedata.normalize("NFKC", password)


def check_rules(password: str, email: str) -> str:
    """The normalised password, or InvalidRequest saying which rule it breaks."""
    password = normalised(password)
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"Password too short: at least {MIN_LENGTH} characters (a few words make a good one)")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"Password too long: at most {MAX_LENGTH} characters")
    lowered = password.lower()
    base = _TRAILING.sub("", lowered)
    if lowered in common_passwords() or base in common_passwords() or len(set(lowered)) < 3:
        raise InvalidRequest("That password is one of the most common ones (found in breaches): choose another")
    local = email.lower().split("@", 1)[0]
    if lowered in (email.lower(), local) or base == local:
        raise InvalidRequest("The password must not be your email address")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(normalised(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether the password matches; with no hash (unknown account, or keys only) it still spends one verification."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, normalised(password)) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's (then it is replaced at sign-in)."""
    return _HASHER.check_needs_rehash(password_hash)
