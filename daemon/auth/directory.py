"""Signing in against the organisation's LDAP / Active Directory ([ldap], docs/accounts.md "The directory").

The service account finds the person by the typed login (RFC 4515-escaped into [ldap] user_filter, so a login can
never widen the search; exactly one entry or none), then the directory checks the password by a bind as that
person's DN. Their groups (memberOf, or a search for groups whose member they are) give the role through [ldap]
groups. The password is never kept: the local Person (source "ldap", no hash) is made or brought in line with the
directory at each sign-in, so sessions, the audit trail and the pages work as for anyone.

ldap3 is pure Python on the standard socket module, which gevent patches: a slow directory blocks only the sign-in
that waits for it, and [ldap] timeout bounds the whole check (connect, StartTLS, search, bind, groups).
"""
from __future__ import annotations

import logging
import math
import re
import ssl
from dataclasses import dataclass

import gevent
import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from screenpop.daemon.auth import people, roles
from screenpop.daemon.config import LdapConfig
from screenpop.db import audit
from screenpop.db.models import Person

log = logging.getLogger("screenpop.directory")

ACTOR = audit.Actor(name="the directory (LDAP)")  # who the audit trail names for what a sign-in copies from it


class DirectoryDown(Exception):
    """No server answered in time, or the service account was refused: directory accounts cannot sign in now."""


@dataclass(frozen=True)
class Account:
    """A person as the directory has them: their DN, name, role (None: in none of the mapped groups), extension
    and language (None when the directory has none we can use)."""

    dn: str
    name: str
    role: str | None
    extension: str | None
    language: str | None


def _dn_key(dn: str) -> str:
    """A DN as compared: its components (split at commas not escaped) without the blanks around them and their
    "=", case-folded."""
    return ",".join("=".join(side.strip() for side in part.split("=", 1))
                    for part in re.split(r"(?<!\\),", dn)).casefold()


class Directory:
    """The configured directory: checks a login and password and reads the account (check)."""

    def __init__(self, config: LdapConfig) -> None:
        self.config = config
        self.password = config.secret()
        self.tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=config.ca_file or None)
        self.groups = {_dn_key(dn): role for dn, role in config.groups.items()}

    def check(self, login: str, password: str) -> Account | None:
        """The account if the directory knows login and password is theirs; None if it does not know the login or
        the password is wrong. Raises DirectoryDown when no server answers within [ldap] timeout."""
        if not password:  # an empty password is an unauthenticated bind, which LDAP servers accept
            return None
        try:
            with gevent.Timeout(self.config.timeout, DirectoryDown(f"no answer within {self.config.timeout:g} s")):
                return self._check(login, password)
        except LDAPException as exc:  # a server that stopped answering half-way
            raise DirectoryDown(f"{type(exc).__name__}: {exc}") from None

    def _connect(self, user: str | None, password: str | None) -> ldap3.Connection:
        """A bound connection to the first server that answers (StartTLS first on ldap:// when configured). The
        servers are made anew each time: ldap3's remember an address that failed once as unavailable."""
        reasons = []
        for url in self.config.urls:
            server = ldap3.Server(url, connect_timeout=self.config.timeout, tls=self.tls, get_info=ldap3.NONE)
            conn = ldap3.Connection(server, user=user or None, password=password or None, read_only=True,
                                    receive_timeout=math.ceil(self.config.timeout),  # whole seconds: a socket option
                                    raise_exceptions=False)
            try:
                conn.open()
                if not server.ssl and self.config.start_tls:
                    conn.start_tls()
                conn.bind()
                return conn
            except LDAPException as exc:
                reasons.append(f"{server.host}:{server.port}: {exc}")
                conn.unbind()
        raise DirectoryDown("; ".join(reasons))

    def _check(self, login: str, password: str) -> Account | None:
        config = self.config
        service = self._connect(config.bind_dn, self.password)
        try:
            if not service.bound:
                raise DirectoryDown(f"the service account {config.bind_dn or '(anonymous)'} was refused: "
                                    f"{service.result.get('description')}")
            wanted = [config.name_attribute, "cn", config.extension_attribute, config.language_attribute]
            if config.membership == "memberOf":
                wanted.append("memberOf")
            service.search(config.base_dn, config.user_filter.replace("{login}", escape_filter_chars(login)),
                           ldap3.SUBTREE, attributes=wanted, size_limit=2)
            found = [e for e in service.response or () if e.get("type") == "searchResEntry"]
            if len(found) != 1:
                if found:
                    log.warning("directory: login %r matches %d entries under %s; refused", login, len(found),
                                config.base_dn)
                return None
            dn, attributes = found[0]["dn"], found[0]["attributes"]
            person = self._connect(dn, password)
            bound = person.bound
            person.unbind()
            if not bound:
                return None
            if config.membership == "memberOf":
                groups = _values(attributes, "memberOf")
            else:
                service.search(config.group_base_dn or config.base_dn, f"(member={escape_filter_chars(dn)})",
                               ldap3.SUBTREE, attributes=[])
                groups = [e["dn"] for e in service.response or () if e.get("type") == "searchResEntry"]
        finally:
            service.unbind()
        held = [self.groups[key] for key in map(_dn_key, groups) if key in self.groups]
        language = (_first(attributes, config.language_attribute) or "")[:2].lower()
        return Account(dn, _first(attributes, config.name_attribute) or _first(attributes, "cn") or login,
                       max(held, key=roles.ROLES.index) if held else None, _first(attributes, config.extension_attribute),
                       language if language in people.LANGUAGES else None)


def _values(attributes: dict, name: str) -> list[str]:
    """An attribute's values as strings (none when the entry lacks it)."""
    value = attributes.get(name) or []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _first(attributes: dict, name: str) -> str | None:
    values = [v.strip() for v in _values(attributes, name) if v.strip()]
    return values[0] if values else None


def adopt(login: str, account: Account) -> Person:
    """The local Person of a directory account, made or brought in line with the directory (name, role,
    extension; the language only when they have none): a database step, named in the audit trail as the directory.
    Raises people.PeopleError when the directory's values do not fit (an operator without an extension, an
    extension someone else has)."""
    return audit.acting(ACTOR, _adopt)(login, account)


def _adopt(login: str, account: Account) -> Person:
    body = {"name": account.name, "role": account.role, "extension": account.extension or ""}
    person = Person.get_or_none(Person.login == login)
    if person is None:
        fields = people.person_fields({**body, "login": login, "language": account.language or ""}, creating=True)
        return people.create({**fields, "source": people.DIRECTORY}, "")
    fields = people.person_fields({**body, **({"language": account.language} if person.language is None else {})},
                                  creating=False)
    return people.update(person.id, fields)


def refused(login: str) -> int:
    """A directory person now in none of screenpop's groups: their sessions end (a database step); how many."""
    person = Person.get_or_none((Person.login == login) & (Person.source == people.DIRECTORY))
    return people.end_sessions(person.id) if person is not None else 0
