"""Operator accounts (issue 12, item 1): adding, removing, re-keying and checking them.

An operator signs in to the admin with an email and a password. Accounts live in the store
(`crm_templates.storage.operators`); the password is kept only as a Werkzeug
``generate_password_hash`` string (scrypt, a salted memory-hard KDF that Werkzeug maintains),
never in clear.

Besides the accounts, a site may keep the bootstrap account of ``CRM_OPERATOR_PASSWORD`` (or
``CRM_OPERATOR_PASSWORD_HASH``): it has the id `BOOTSTRAP_ID` (``"operator"``), no email, and
lives in the server's settings, not in the store.

Every signed-in operator session is tied to its account's session generation (`generation_key`):
removing an account or changing its password bumps it, which ends every session of that
account in every process sharing the store.

This is the core: no Flask, no Jinja2.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .errors import CrmValidationError, DuplicateError, EntryNotFoundError
from .ids import new_id, utc_now
from .storage.base import Store
from .storage.operators import OperatorAccount

BOOTSTRAP_ID = "operator"
#: Password length bounds (characters). The floor follows NIST SP 800-63B's minimum for
#: user-chosen secrets; the cap keeps hashing a bounded amount of work.
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
ID_PREFIX = "op_"
# A hash of a random password: an unknown email is checked against it, so a wrong email takes
# as long as a wrong password (no account enumeration by timing).
_DUMMY_HASH: str | None = None


class OperatorNotFoundError(EntryNotFoundError):
    """No operator account has that email (or id)."""


def normalise_email(email: Any) -> str:
    """The canonical (trimmed, validated, lower-case) form of an operator's email;
    `CrmValidationError` for something that is not an email address (customers' rule)."""
    from .service import Crm

    return Crm.normalise_email(email.strip() if isinstance(email, str) else email)


def check_password(password: Any) -> str:
    """``password`` if it is a string of `MIN_PASSWORD` to `MAX_PASSWORD` characters without
    line breaks or NUL, else `CrmValidationError` (saying which rule failed)."""
    if not isinstance(password, str):
        raise CrmValidationError("an operator password must be text")
    if len(password) < MIN_PASSWORD:
        raise CrmValidationError(
            f"an operator password needs at least {MIN_PASSWORD} characters; got {len(password)}"
        )
    if len(password) > MAX_PASSWORD:
        raise CrmValidationError(f"an operator password has at most {MAX_PASSWORD} characters")
    if any(c in password for c in "\r\n\x00"):
        raise CrmValidationError("an operator password cannot contain line breaks or NUL")
    return password


def hash_password(password: str) -> str:
    """A Werkzeug scrypt hash of ``password`` (``scrypt:32768:8:1$salt$hash``)."""
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password, method="scrypt")


def password_matches(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (constant time in the digest compare)."""
    from werkzeug.security import check_password_hash

    return check_password_hash(password_hash, password)


def generation_key(operator_id: str) -> str:
    """The session-generation key of an operator: ``"operator"`` for the bootstrap account (as
    before accounts existed), ``"operator:<id>"`` for an account."""
    return BOOTSTRAP_ID if operator_id == BOOTSTRAP_ID else f"operator:{operator_id}"


def add_operator(store: Store, email: str, password: str) -> OperatorAccount:
    """Create an account; `CrmValidationError` for a bad email or password, `DuplicateError`
    when the email has an account already."""
    address = normalise_email(email)
    hashed = hash_password(check_password(password))
    if store.get_operator_by_email(address) is not None:
        raise DuplicateError(f"operator {address} exists; change its password instead")
    now = utc_now()
    account = OperatorAccount(
        id=new_id(ID_PREFIX), email=address, password_hash=hashed, created_at=now, updated_at=now
    )
    try:
        store.create_operator(account)
    except DuplicateError:
        raise DuplicateError(f"operator {address} exists; change its password instead") from None
    return account


def get_operator(store: Store, email: str) -> OperatorAccount:
    """The account of ``email``; `OperatorNotFoundError` when there is none."""
    address = normalise_email(email)
    account = store.get_operator_by_email(address)
    if account is None:
        raise OperatorNotFoundError(f"there is no operator {address}")
    return account


def set_password(store: Store, email: str, password: str) -> OperatorAccount:
    """Give the account of ``email`` a new password and end its sessions everywhere;
    `OperatorNotFoundError` when there is none."""
    hashed = hash_password(check_password(password))
    account = get_operator(store, email)
    updated = replace(account, password_hash=hashed, updated_at=utc_now())
    if not store.update_operator(updated):
        raise OperatorNotFoundError(f"there is no operator {account.email}")
    store.bump_session_generation(generation_key(account.id))
    return updated


def remove_operator(store: Store, email: str) -> OperatorAccount:
    """Delete the account of ``email`` and end its sessions everywhere; the removed account.
    `OperatorNotFoundError` when there is none."""
    account = get_operator(store, email)
    store.bump_session_generation(generation_key(account.id))
    if not store.delete_operator(account.id):
        raise OperatorNotFoundError(f"there is no operator {account.email}")
    return account


def list_operators(store: Store) -> list[OperatorAccount]:
    """Every account, by email."""
    return store.list_operators()


def authenticate(store: Store, email: Any, password: Any) -> OperatorAccount | None:
    """The account whose email and password these are, or None (an invalid email, an
    unknown one and a wrong password alike; an unknown email costs one hash check too)."""
    global _DUMMY_HASH
    if not isinstance(password, str) or not isinstance(email, str):
        return None
    try:
        address = normalise_email(email)
    except CrmValidationError:
        address = None
    account = None if address is None else store.get_operator_by_email(address)
    if account is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(new_id())
        password_matches(_DUMMY_HASH, password)
        return None
    return account if password_matches(account.password_hash, password) else None


__all__ = [
    "BOOTSTRAP_ID",
    "OperatorAccount",
    "OperatorNotFoundError",
    "add_operator",
    "authenticate",
    "check_password",
    "generation_key",
    "get_operator",
    "hash_password",
    "list_operators",
    "normalise_email",
    "remove_operator",
    "set_password",
]
