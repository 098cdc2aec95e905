"""Web sign-in state in the database: the session signing key, one-time sign-in links and the sessions.

The key is made once by whichever daemon needs it first and read by every other daemon on the same database,
so sessions survive restarts and work on any node. A link's secret is shown once (in the URL the tray opens);
only its SHA-256 is stored, and spending it is one conditional UPDATE, so it works once even when several
daemons share one PostgreSQL. A session's id lives in the signed cookie and, as a SHA-256, in WebSession: signing
out ends it for every daemon, so a copied cookie opens nothing afterwards. A session belongs to a person (signed
in with a password, or by a tray's link when the token's extension is theirs, daemon/auth/people.py) or to a token.

Neither the key nor a secret reaches a log at any level: peewee logs each query's parameters at debug level, so
the key is inserted on the connection's own cursor, and only hashes of the others are ever written.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import peewee

from screenpop.daemon.auth import tokens
from screenpop.db.models import ApiToken, Person, Setting, SigninLink, WebSession, utcnow

SESSION_KEY = "web_session_key"
KEEP_SPENT = dt.timedelta(days=1)


def session_key() -> str:
    """The key that signs web session cookies; made on first use, the same for every daemon afterwards."""
    key = Setting.select(Setting.value).where(Setting.key == SESSION_KEY).scalar()
    if key is None:
        sql, params = Setting.insert(key=SESSION_KEY, value=secrets.token_hex(32)).on_conflict_ignore().sql()
        cursor = Setting._meta.database.cursor()  # not execute_sql, which logs the parameters
        cursor.execute(sql, params)
        cursor.close()
        key = Setting.select(Setting.value).where(Setting.key == SESSION_KEY).scalar()
    return key


def sid_hash(secret: str) -> str:
    """The stored form of a session id or link secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def mint(token_id: int, next_path: str, seconds: int) -> str:
    """A new one-time link secret for token_id, valid for seconds; links spent or expired a day ago are dropped."""
    now = utcnow()
    SigninLink.delete().where(SigninLink.expires_at < now - KEEP_SPENT).execute()
    secret = secrets.token_urlsafe(32)
    SigninLink.create(secret_hash=sid_hash(secret), token=token_id, next_path=next_path,
                      expires_at=now + dt.timedelta(seconds=seconds))
    return secret


def spend(secret: str) -> tuple[int, str] | str:
    """(token id, next path) if the secret is a link that was never used and has not expired; else why not."""
    digest = sid_hash(secret)
    now = utcnow()
    spent = (SigninLink.update(used_at=now)
             .where((SigninLink.secret_hash == digest) & SigninLink.used_at.is_null() & (SigninLink.expires_at > now))
             .execute())
    link = SigninLink.get_or_none(SigninLink.secret_hash == digest)
    if spent == 1 and link is not None:
        return link.token_id, link.next_path
    if link is None:
        return "unknown link"
    if link.used_at is not None:
        return f"link {link.id} was already used"
    return f"link {link.id} has expired"


def token_state(token_id: int) -> tokens.TokenCheck:
    """The token behind a session or link, as it is now (revoked, role changed, deleted)."""
    row = ApiToken.select(ApiToken.id, ApiToken.role, ApiToken.extension, ApiToken.revoked_at).where(
        ApiToken.id == token_id).tuples().first()
    return tokens.interpret(row)


def open_session(person_id: int | None, token_id: int | None, seconds: int, address: str = "") -> str:
    """A new session id for a person or a token (or a person by a token's link), valid for seconds, opened from
    address; sessions ended or expired a day ago are dropped."""
    now = utcnow()
    WebSession.delete().where((WebSession.expires_at < now - KEEP_SPENT) | (WebSession.ended_at < now - KEEP_SPENT)).execute()
    sid = secrets.token_urlsafe(32)
    WebSession.create(sid_hash=sid_hash(sid), person=person_id, token=token_id, address=address[:64],
                      expires_at=now + dt.timedelta(seconds=seconds))
    return sid


def session_owner(sid: str) -> tuple[int | None, int | None] | str:
    """(person id, token id) of a live session; else why it is not live (unknown, signed out, expired)."""
    row = WebSession.select(WebSession.id, WebSession.person, WebSession.token, WebSession.expires_at,
                            WebSession.ended_at).where(WebSession.sid_hash == sid_hash(sid)).first()
    if row is None:
        return "unknown session"
    if row.ended_at is not None:
        return f"session {row.id} was signed out"
    if row.expires_at <= utcnow():
        return f"session {row.id} has expired"
    return row.person_id, row.token_id


def end_session(sid: str) -> int | None:
    """Sign a session out for every daemon; the id of the session ended, or None if it was not live."""
    row = WebSession.get_or_none((WebSession.sid_hash == sid_hash(sid)) & WebSession.ended_at.is_null())
    if row is None:
        return None
    WebSession.update(ended_at=utcnow()).where(WebSession.id == row.id).execute()
    return row.id


def live_sessions() -> list[dict]:
    """Every session not ended or expired, newest first, with who it belongs to (the admin's sessions page)."""
    now = utcnow()
    query = (WebSession.select(WebSession, Person.login, Person.name, ApiToken.name.alias("token_name"))
             .join(Person, peewee.JOIN.LEFT_OUTER, on=WebSession.person == Person.id)
             .join(ApiToken, peewee.JOIN.LEFT_OUTER, on=WebSession.token == ApiToken.id, src=WebSession)
             .where(WebSession.ended_at.is_null() & (WebSession.expires_at > now))
             .order_by(WebSession.created_at.desc(), WebSession.id.desc()))
    return list(query.dicts())


def end_session_id(session_id: int) -> bool:
    """End one session by its id (an admin ending someone's session); False if it was not live."""
    return bool(WebSession.update(ended_at=utcnow()).where(
        (WebSession.id == session_id) & WebSession.ended_at.is_null()).execute())
