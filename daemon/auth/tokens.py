"""API tokens: the clear token is shown once at creation; only its SHA-256 is stored.

A token has a role, as a person does (daemon/auth/roles.py says what each may do): ``operator`` (bound to one
extension, sees only that extension's pops), ``manager`` or ``admin`` (may ask for any extension). A revoked
token stays in the table, so `screenpop token list` shows it.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from screenpop.daemon.auth.roles import ROLES
from screenpop.db.models import ApiToken, utcnow

PREFIX = "sp_"


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What a presented token turned out to be: the token row when valid, else the reason it is refused."""

    token_id: int | None
    role: str = ""
    extension: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def token_hash(clear: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(clear.encode("utf-8", "surrogateescape")).hexdigest()


def create(extension: str | None, role: str = "operator", name: str = "") -> tuple[ApiToken, str]:
    """A new token; returns the row and the clear token, which is not stored anywhere and cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "operator" and not extension:
        raise ValueError("an operator token needs the extension it belongs to")
    clear = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.create(name=name, token_hash=token_hash(clear), role=role, extension=extension or None)
    return row, clear


def check_sql(param: str) -> str:
    """The one query verify() runs, precompiled so the HTTP server can run it on its own connection."""
    return f"SELECT id, role, extension, revoked_at FROM api_token WHERE token_hash = {param}"


def interpret(row: tuple | None) -> TokenCheck:
    """A TokenCheck from the row check_sql returned (or None)."""
    if row is None:
        return TokenCheck(None, reason="unknown token")
    token_id, role, extension, revoked_at = row
    if revoked_at is not None:
        return TokenCheck(token_id, role, extension, reason=f"token {token_id} is revoked")
    if role not in ROLES:
        return TokenCheck(token_id, role, extension, reason=f"token {token_id} has an unknown role {role!r}")
    return TokenCheck(token_id, role, extension)


def verify(clear: str) -> TokenCheck:
    """Check a presented token against the table (models bound to the database)."""
    if not clear:
        return TokenCheck(None, reason="no token")
    db = ApiToken._meta.database
    return interpret(db.execute_sql(check_sql(db.param), (token_hash(clear),)).fetchone())


def revoke(token_id: int) -> bool:
    """Revoke a token by id; False if there is no such token or it was revoked already."""
    return bool(
        ApiToken.update(revoked_at=utcnow()).where((ApiToken.id == token_id) & ApiToken.revoked_at.is_null()).execute()
    )


def list_tokens() -> list[ApiToken]:
    """Every token, oldest first (hashes included; never the clear tokens, which are not stored)."""
    return list(ApiToken.select().order_by(ApiToken.id))
