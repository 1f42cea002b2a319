"""Password hashing (argon2id via argon2-cffi) and the password policy."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's defaults follow RFC 9106's low-memory recommendation
# (argon2id, 64 MiB, 3 passes); one verify costs tens of milliseconds,
# which is what makes offline guessing expensive after a database leak.
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so a miss costs as much time
    as a wrong password and response times do not reveal which emails exist.
    Made on first use: every CLI command and worker imports this module."""
    return _hasher.hash("bondline-dummy-password-for-timing")


MIN_LENGTH = 10
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash still costs one verify."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def policy_problem(password: str, email: str = "") -> str | None:
    """Why a new password is refused, or None. Length is what matters most
    (NIST SP 800-63B); composition rules are deliberately not imposed."""
    if len(password) < MIN_LENGTH:
        return f"the password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"the password must have at most {MAX_LENGTH} characters"
    if email and password.strip().lower() == email.strip().lower():
        return "the password must not be your email address"
    if len(set(password)) < 4:
        return "the password is too repetitive"
    return None
