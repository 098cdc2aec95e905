"""People who sign in with login and password: their checks, their rows, their passwords and the sign-in throttle.

Passwords are hashed with argon2id (argon2-cffi, the reference implementation's bindings, its RFC 9106 defaults);
only the hash is kept, and a hash made with older parameters is replaced at the next good sign-in. Hashing is
slow on purpose (tens of milliseconds), so callers hash and check outside database steps (hash_password,
password_matches), and the database steps here take the hash.

Failed sign-ins are counted per login and per address (SigninThrottle). After [web] signin_free_failures in a row
for a login (signin_address_free_failures for an address), each further try must wait 1, 2, 4 ... up to 60
seconds after the last failure; after signin_lock_after in a row a login is locked for signin_lock_minutes (an
admin can unlock it sooner). Unknown logins are counted the same way, so the answers do not tell which exist.
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import argon2

from screenpop.daemon import i18n
from screenpop.daemon.auth import roles, signin
from screenpop.daemon.config import WebConfig
from screenpop.db import audit, collation
from screenpop.db.models import ApiToken, Person, SigninThrottle, WebSession, utcnow

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_LOGIN = 64
MAX_NAME = 200
LOGIN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")
LANGUAGES = i18n.LANGUAGES  # the languages there are catalogues for (daemon/i18n.py)
MAX_WAIT = 60
DIRECTORY = "ldap"  # Person.source of people whose password the organisation's directory checks (daemon/auth/directory.py)
MANAGED_BY_DIRECTORY = i18n.lazy_gettext("This password is managed by the organisation's directory (LDAP); change it there.")

_hasher = argon2.PasswordHasher()


@functools.cache
def _nobody() -> str:
    """The hash checked when the login is unknown, so a wrong login takes as long as a wrong password.

    Made on first use, not at import: hashing is slow on purpose and the daemon's start should not wait for it.
    """
    return _hasher.hash("no such person; this hash only spends the time a real check would")


class PeopleError(Exception):
    """A person's input or action refused: status (400, 404, 409) and a message a person can act on."""

    def __init__(self, status: int, message: Message) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- input -------------------------------------------------------------------------------------------


def clean_login(value: Any) -> str:
    """A login as stored: lower case, 1 to 64 of letters a-z, digits and . _ - @."""
    login = value.strip().lower() if isinstance(value, str) else ""
    if not login or len(login) > MAX_LOGIN or not set(login) <= LOGIN_CHARS:
        raise PeopleError(400, i18n.lazy_gettext("login: 1 to %(max)s of the letters a-z, digits and . _ - @",
                                                 max=MAX_LOGIN))
    return login


def check_password(value: Any) -> str:
    """A new password as given, if long enough: 8 to 1024 characters."""
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise PeopleError(400, i18n.lazy_gettext("password: %(min)s to %(max)s characters",
                                                 min=MIN_PASSWORD, max=MAX_PASSWORD))
    if "\x00" in value:
        raise PeopleError(400, i18n.lazy_gettext("password: must not contain NUL characters"))
    return value


def person_fields(body: dict, creating: bool) -> dict:
    """Person columns from body (strings as a form or the command line gives them): name, role, extension, language;
    login only when creating. An operator needs an extension (their calls and pops are that extension's)."""
    fields: dict[str, Any] = {}
    if creating:
        fields["login"] = clean_login(body.get("login"))
    if "name" in body or creating:
        name = body.get("name")
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
            raise PeopleError(400, i18n.lazy_gettext("name: 1 to %(max)s characters, no control characters",
                                                     max=MAX_NAME))
        fields["name"] = name
    if "role" in body or creating:
        role = body.get("role", "operator")
        if role not in roles.ROLES:
            raise PeopleError(400, i18n.lazy_gettext("role: one of %(roles)s", roles=', '.join(roles.ROLES)))
        fields["role"] = role
    if "extension" in body:
        extension = body.get("extension")
        extension = extension.strip() if isinstance(extension, str) else ""
        if len(extension) > 32 or any(not (c.isascii() and (c.isalnum() or c in "*#+_.-")) for c in extension):
            raise PeopleError(400, i18n.lazy_gettext("extension: at most 32 letters, digits and * # + _ . -"))
        fields["extension"] = extension or None
    if "language" in body:
        language = body.get("language") or None
        if language is not None and language not in LANGUAGES:
            raise PeopleError(400, i18n.lazy_gettext("language: one of %(languages)s, or none (the browser's)",
                                                     languages=', '.join(LANGUAGES)))
        fields["language"] = language
    return fields


# ---- passwords (outside database steps: slow on purpose) ---------------------------------------------


def hash_password(clear: str) -> str:
    """The stored form of a password (argon2id with a fresh salt)."""
    return _hasher.hash(check_password(clear))


def password_matches(stored: str | None, clear: str) -> bool:
    """Whether clear is the password stored hashed; None (unknown login) or "" (a directory person: no hash here)
    spends the same time and says no."""
    try:
        return _hasher.verify(stored or _nobody(), clear) and bool(stored)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash was made with other parameters than today's (then the next good sign-in replaces it)."""
    try:
        return _hasher.check_needs_rehash(stored)
    except argon2.exceptions.InvalidHashError:
        return True


# ---- rows --------------------------------------------------------------------------------------------


def get(person_id: int) -> Person:
    person = Person.get_or_none(Person.id == person_id)
    if person is None:
        raise PeopleError(404, i18n.lazy_gettext("no person %(person_id)s", person_id=person_id))
    return person


def by_login(login: str) -> Person | None:
    """The person with this login (any case), or None."""
    try:
        return Person.get_or_none(Person.login == clean_login(login))
    except PeopleError:
        return None


def _check(fields: dict, person_id: int | None) -> None:
    role = fields.get("role")
    extension = fields.get("extension")
    if person_id is not None:
        current = get(person_id)
        role = role or current.role
        extension = fields["extension"] if "extension" in fields else current.extension
    if role == "operator" and not extension:
        raise PeopleError(400, i18n.lazy_gettext("extension: an operator needs the extension their calls ring on"))
    if extension:
        other = Person.get_or_none((Person.extension == extension) & (Person.disabled_at.is_null()))
        if other is not None and other.id != person_id:
            raise PeopleError(409, i18n.lazy_gettext("extension: %(extension)s is %(login)s's already",
                                                     extension=extension, login=other.login))


def create(fields: dict, password_hash: str) -> Person:
    """A new person (fields from person_fields(creating=True)) with the hash of their first password."""
    if Person.get_or_none(Person.login == fields["login"]):
        raise PeopleError(409, i18n.lazy_gettext("login: %(login)s is taken", login=fields['login']))
    _check(fields, None)
    person = Person.create(**fields, password_changed_at=utcnow())
    _store_hash(person.id, password_hash)
    audit.record("person", person.id, "added", f"{person.login}, {person.role}")
    return person


def update(person_id: int, fields: dict) -> Person:
    """Change name, role, extension or language; a role or extension change ends the person's sessions."""
    current = get(person_id)
    _check(fields, person_id)
    changed = {k: v for k, v in fields.items() if getattr(current, k) != v}
    if changed:
        Person.update(**changed).where(Person.id == person_id).execute()
        audit.record("person", person_id, "changed", ", ".join(f"{k} {v or 'none'}" for k, v in changed.items()))
        if {"role", "extension"} & set(changed):
            end_sessions(person_id)
    return get(person_id)


def set_password(person_id: int, password_hash: str, keep_sid: str | None = None, by_admin: bool = True) -> int:
    """A new password hash; every session of the person ends but keep_sid (their own, when they change it). How many
    ended. A directory person's password is the directory's: refused."""
    if get(person_id).source == DIRECTORY:
        raise PeopleError(409, MANAGED_BY_DIRECTORY)
    _store_hash(person_id, password_hash)
    Person.update(password_changed_at=utcnow()).where(Person.id == person_id).execute()
    audit.record("person", person_id, "password reset" if by_admin else "password changed")
    return end_sessions(person_id, keep_sid)


def _store_hash(person_id: int, password_hash: str) -> None:
    """Write a password hash on the connection's own cursor: peewee's debug log shows every query's parameters,
    and a hash in a log could be attacked offline."""
    sql, params = Person.update(password_hash=password_hash).where(Person.id == person_id).sql()
    cursor = Person._meta.database.cursor()
    cursor.execute(sql, params)
    cursor.close()


def replace_hash(person_id: int, password_hash: str) -> None:
    """The same password hashed with today's parameters (after a good sign-in): not a change, no audit line."""
    _store_hash(person_id, password_hash)


def set_disabled(person_id: int, disabled: bool) -> bool:
    """Disable (their sessions end, they cannot sign in) or enable a person; False if nothing changed."""
    person = get(person_id)
    if bool(person.disabled_at) == disabled:
        return False
    if not disabled and person.extension:
        _check({"extension": person.extension}, person_id)
    Person.update(disabled_at=utcnow() if disabled else None).where(Person.id == person_id).execute()
    audit.record("person", person_id, "disabled" if disabled else "enabled")
    if disabled:
        end_sessions(person_id)
    return True


def end_sessions(person_id: int, keep_sid: str | None = None) -> int:
    """End every live session of a person (but keep_sid); how many."""
    query = WebSession.update(ended_at=utcnow()).where((WebSession.person == person_id) & WebSession.ended_at.is_null())
    if keep_sid is not None:
        query = query.where(WebSession.sid_hash != signin.sid_hash(keep_sid))
    return query.execute()


def listing(lang: str) -> list[Person]:
    """Everyone, enabled first, A to Z by name as a reader of lang expects (then by login)."""
    return sorted(Person.select(), key=lambda p: (p.disabled_at is not None, collation.sort_key(p.name, lang), p.login))


def owner_of_token(token_id: int) -> Person | None:
    """The enabled person a token belongs to: the one on the token's extension (a tray's token), else None."""
    token = ApiToken.get_or_none(ApiToken.id == token_id)
    if token is None or not token.extension:
        return None
    return Person.get_or_none((Person.extension == token.extension) & Person.disabled_at.is_null())


# ---- the sign-in throttle ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a sign-in is not tried now: locked (until, for the login) or slowed (wait: seconds to wait)."""

    message: Any  # translated when shown (i18n.lazy_gettext): the refusal is made on the database worker
    locked_until: dt.datetime | None = None
    wait: int = 0


def _wait(failures: int, free: int) -> int:
    """Seconds the next try waits after the last failure: none up to free failures, then 1, 2, 4 ... MAX_WAIT."""
    return 0 if failures < free else min(2 ** (failures - free), MAX_WAIT)


def throttled(login: str, address: str, config: WebConfig) -> Refusal | None:
    """Whether a sign-in for login from address must be refused before its password is looked at, and why."""
    now = utcnow()
    rows = {r.key: r for r in SigninThrottle.select().where(SigninThrottle.key.in_([f"login:{login}", f"address:{address}"]))}
    by_login, by_address = rows.get(f"login:{login}"), rows.get(f"address:{address}")
    if by_login is not None and by_login.failures >= config.signin_lock_after:
        until = by_login.last_failed_at + dt.timedelta(minutes=config.signin_lock_minutes)
        if until > now:
            return Refusal(i18n.lazy_gettext("This account is locked after %(failures)s failed sign-ins in a row.",
                                        failures=by_login.failures), until)
    for row, free in ((by_login, config.signin_free_failures), (by_address, config.signin_address_free_failures)):
        if row is None:
            continue
        ready = row.last_failed_at + dt.timedelta(seconds=_wait(row.failures, free))
        if ready > now:
            seconds = max(1, int((ready - now).total_seconds() + 0.999))
            return Refusal(i18n.lazy_ngettext("Too many failed sign-ins: wait %(num)s second and try again.",
                                              "Too many failed sign-ins: wait %(num)s seconds and try again.", seconds),
                           wait=seconds)
    return None


def failed(login: str, address: str, config: WebConfig) -> int:
    """Count a failed sign-in for login and address; the login's failures in a row (a run ends after
    signin_lock_minutes without one, or a minute if that is shorter than the longest wait)."""
    now = utcnow()
    forget = now - max(dt.timedelta(minutes=config.signin_lock_minutes), dt.timedelta(seconds=MAX_WAIT))
    SigninThrottle.delete().where(SigninThrottle.last_failed_at < forget).execute()  # runs that ended: the table stays small
    count = 0
    for key in (f"login:{login}", f"address:{address}"):
        row = SigninThrottle.get_or_none(SigninThrottle.key == key)
        failures = row.failures + 1 if row is not None and row.last_failed_at > forget else 1
        (SigninThrottle.insert(key=key, failures=failures, last_failed_at=now)
         .on_conflict(conflict_target=[SigninThrottle.key],
                      update={SigninThrottle.failures: failures, SigninThrottle.last_failed_at: now}).execute())
        count = count or failures
    return count


def succeeded(login: str) -> None:
    """A good sign-in: the login's failures are forgotten (the address's are not, so one account cannot clear them)."""
    SigninThrottle.delete().where(SigninThrottle.key == f"login:{login}").execute()


def unlock(login: str) -> bool:
    """An admin unlocks a login at once; False if it was not locked or slowed."""
    return bool(SigninThrottle.delete().where(SigninThrottle.key == f"login:{login}").execute())


def locked(config: WebConfig) -> dict[str, dt.datetime]:
    """Logins locked now, with when their lock ends (the people page shows it)."""
    now = utcnow()
    out = {}
    for row in SigninThrottle.select().where(SigninThrottle.key.startswith("login:")
                                             & (SigninThrottle.failures >= config.signin_lock_after)):
        until = row.last_failed_at + dt.timedelta(minutes=config.signin_lock_minutes)
        if until > now:
            out[row.key.split(":", 1)[1]] = until
    return out
