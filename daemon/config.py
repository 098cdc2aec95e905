"""The daemon's configuration: one TOML file, every option with a documented default (see docs/configuration.md)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """The configuration file is unreadable or holds a value that cannot work. message is the catalogue's msgid,
    translated where it is shown (config.py sits below daemon/i18n.py), its %(name)s placeholders filled from
    variables; str() is the English text, for the log."""

    def __init__(self, message: str, **variables: Any) -> None:
        super().__init__(message % variables if variables else message)
        self.message = message
        self.variables = variables


def _read_secret(option: str, path: str) -> str:
    """A secret kept in a file (a password, a token), without surrounding blanks; never logged."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("%(option)s: cannot read %(path)s: %(reason)s", option=option, path=path, reason=exc.strerror) from exc


def default_state_dir() -> Path:
    """Where the embedded database lives: systemd's StateDirectory, else /var/lib for root, else XDG state."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/screenpop")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "screenpop"


@dataclass
class FreeswitchConfig:
    """How to reach FreeSWITCH's event socket (mod_event_socket)."""

    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"
    password_file: str = ""
    connect_timeout: float = 5.0
    command_timeout: float = 5.0
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0
    keepalive: float = 2.0
    startup_wait: float = 30.0

    def secret(self) -> str:
        """The ESL password: the file wins over the inline value; never logged."""
        return _read_secret("[freeswitch] password_file", self.password_file) if self.password_file else self.password


@dataclass
class DatabaseConfig:
    """Where calls and customers are stored: sqlite:///path or postgresql://user@host/db."""

    url: str = ""
    batch_max: int = 500
    photo_dir: str = ""
    queue_max: int = 100000
    employee_reload: float = 30.0

    def resolved_photo_dir(self) -> Path:
        """Where customer photos are stored: the configured folder, or photos/ in the state directory."""
        return Path(self.photo_dir) if self.photo_dir else default_state_dir() / "photos"

    def resolved_url(self) -> str:
        """The configured URL, or the embedded SQLite file in the state directory."""
        return self.url or f"sqlite:///{default_state_dir() / 'screenpop.db'}"


@dataclass
class NumbersConfig:
    """Phone number rules: what an extension looks like, the default region, suffix matching."""

    default_region: str = "US"
    extension_pattern: str = r"^[1-9][0-9]{1,4}$"
    suffix_digits: int = 8


@dataclass
class PbxConfig:
    """Which SIP profiles face the phone network; legs through a gateway always count as external."""

    trunk_profiles: list[str] = field(default_factory=lambda: ["external"])
    trunk_contexts: list[str] = field(default_factory=lambda: ["public"])


@dataclass
class HttpConfig:
    """The daemon's HTTP listener (API, push stream, web pages)."""

    listen: str = "127.0.0.1:8080"
    certfile: str = ""
    keyfile: str = ""
    heartbeat: float = 15.0
    public_url: str = ""
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 1000

    def address(self) -> tuple[str, int]:
        """listen as (host, port); "[::1]:8080" for IPv6, ":8080" for every address."""
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError("[http] listen must be host:port, got %(value)s", value=repr(self.listen))
        host = host.strip("[]") if host.startswith("[") else host
        return host or "0.0.0.0", int(port)


@dataclass
class AnalyticsConfig:
    """Call analytics: the call centre's time zone for periods, hours and days (empty: the system's zone), and the
    service figures' thresholds (docs/analytics.md, "Service")."""

    timezone: str = ""
    service_level_seconds: float = 20.0  # the service level: inbound calls answered within this many seconds
    short_abandon_seconds: float = 5.0  # an unanswered caller who hung up within this long is a short abandon


@dataclass
class WebConfig:
    """The web pages (docs/web.md): how long a sign-in lasts, how long a tray's one-time link works, photo uploads,
    and how failed password sign-ins are slowed down and lock a login (docs/accounts.md)."""

    session_hours: float = 12.0
    signin_link_seconds: int = 60
    photo_max_mb: int = 10
    signin_free_failures: int = 3
    signin_address_free_failures: int = 20
    signin_lock_after: int = 10
    signin_lock_minutes: float = 15.0

    def upload_max_bytes(self) -> int:
        """The largest photo upload request: photo_max_mb, and room for the form around the file."""
        return self.photo_max_mb * 1024 * 1024 + 64 * 1024


@dataclass
class ClusterConfig:
    """Several daemons on one PostgreSQL (docs/cluster.md): standby election per node and its timings."""

    election: bool = True
    poll_interval: float = 0.5
    hang_timeout: float = 3.0


@dataclass
class CdrConfig:
    """FreeSWITCH's JSON CDRs (docs/cdr.md): mod_json_cdr's HTTP Basic credentials, the largest CDR taken, how
    long received CDRs are kept.

    No password (inline or in a file): the endpoint refuses every CDR. encode_values: whether FreeSWITCH
    URL-encodes the variables' values (mod_json_cdr's ``encode-values``, true unless set otherwise there).
    """

    user: str = "freeswitch"
    password: str = ""
    password_file: str = ""
    max_body_kb: int = 1024
    encode_values: bool = True
    keep_days: int = 30

    def secret(self) -> str:
        """The password mod_json_cdr's ``cred`` sends: the file wins over the inline value; never logged."""
        return _read_secret("[cdr] password_file", self.password_file) if self.password_file else self.password


LISTEN_ROLES = ("admin", "manager", "operator")  # who may play recordings: that role and the ones above it


@dataclass
class RecordingsConfig:
    """Call recordings (docs/recordings.md): where the daemon finds the files FreeSWITCH writes, which folders it
    may serve files from, who may listen, how long recordings are kept, how often the files are checked.

    paths maps a FreeSWITCH path prefix to the daemon's ("/var/lib/freeswitch/recordings" = "/mnt/pbx/recordings");
    roots: the folders files are served from (the paths' local sides are added). keep_days 0: never deleted.
    """

    paths: dict[str, str] = field(default_factory=dict)
    roots: list[str] = field(default_factory=lambda: ["/var/lib/freeswitch/recordings"])
    listen: str = "manager"
    keep_days: int = 0
    sweep_interval: float = 3600.0
    check_interval: float = 5.0

    def served_roots(self) -> list[str]:
        """Every folder recordings are served from: roots, then the local side of each path mapping."""
        return list(dict.fromkeys([*self.roots, *self.paths.values()]))


@dataclass
class OriginateConfig:
    """Click-to-call (docs/originate.md): the dial string `bgapi originate` runs, the form of the number it dials,
    how long the operator's phone rings, and how many calls one token may start per window.

    The dial string's {extension}, {number} and {timeout} are replaced (the number: only + and digits); the rest,
    FreeSWITCH's own ${...} variables included, is passed as written.
    """

    dial_string: str = ("{origination_caller_id_number={number},origination_caller_id_name='Call to {number}',"
                        "originate_timeout={timeout}}user/{extension} {number} XML default")
    number_format: str = "e164"
    ring_timeout: int = 30
    rate_limit: int = 3
    rate_window: float = 10.0


SOURCE_TYPES = ("sql", "http")
SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite")
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass
class SourceConfig:
    """One [[sources]] entry (docs/sources.md): a system the card's extra fields are read from when a call comes in,
    by the caller's number; its timeout, cache time, pause after failures in a row and largest answer.

    sql: url is the database's (postgresql://, mysql:// or mariadb://, sqlite:///path), query is run with {e164},
    {national} and {digits} bound as parameters, and its first row's columns are the fields. http: url is a template
    with the same placeholders (URL-encoded), fields maps each field's label to its path in the JSON answer.
    {secret} in a sql url or an http header value is replaced by the contents of secret_file.
    """

    name: str = ""
    type: str = ""
    url: str = ""
    query: str = ""
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    secret_file: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    external_id: str = ""
    timeout: float = 0.3
    cache_seconds: float = 60.0
    failures: int = 3
    pause: float = 30.0
    max_bytes: int = 65536

    def secret(self) -> str:
        """What {secret} stands for: the contents of secret_file (never logged); empty without one."""
        return _read_secret(f"[[sources]] {self.name}: secret_file", self.secret_file) if self.secret_file else ""


@dataclass
class CardConfig:
    """How the pop writes amounts, dates and country names (docs/card.md): a CLDR locale (grouping and decimal
    separators, the currency symbol's place, month and country names), the currency, optionally a CLDR number
    pattern of one's own (e.g. "#,##0.00 ¤") and a number of decimals (-1: the currency's own, 0 for ISK)."""

    locale: str = "en_US"
    currency: str = "USD"
    money_format: str = ""
    decimals: int = -1
    layout_reload: float = 5.0  # seconds a daemon's cached card layouts may be old (docs/card.md, "Layouts")


@dataclass
class AnalysisConfig:
    """Conversation analysis of call recordings (docs/analysis.md): the audio figures, speech to text with one engine
    in the organisation's language, phrase alerts; the work queue's size and each recording's limits."""

    enabled: bool = True
    engine: str = "pocketsphinx"  # none, pocketsphinx (English, model in its package), vosk, faster-whisper
    model: str = ""  # vosk / faster-whisper: the model folder the admin installed
    language: str = "en"  # the organisation's language (an ISO 639-1 code)
    phrases: list[str] = field(default_factory=list)  # phrase alerts from the file, beside the admin page's
    queue_max: int = 200  # recordings waiting at most; more wait in the database for the next scan
    scan_interval: float = 5.0  # seconds between looks for recordings not yet analysed
    pause: float = 0.5  # at least this many seconds between two recordings' results stored (the hub's share of writes)
    max_minutes: float = 240.0  # longer recordings are refused (an error on the recording, not a stuck worker)
    timeout: float = 900.0  # seconds one recording may take before its process is ended and the recording failed


@dataclass
class I18nConfig:
    """The organisation's language (docs/i18n.md): what pages, pops and the CLI speak when a person's own setting
    and their browser or desktop say nothing we have a catalogue for ("en" or "is")."""

    default_language: str = "en"


LDAP_MEMBERSHIP = ("memberOf", "member")  # how a person's groups are found: their memberOf values, or a group search


@dataclass
class LdapConfig:
    """Signing in against the organisation's LDAP / Active Directory (docs/accounts.md, "The directory"): the
    servers, the service account that finds a person, the attributes read, and which groups give which role.

    user_filter's {login} is replaced by the typed login, RFC 4515-escaped. groups maps a group's DN to a role; a
    person in several gets the highest. membership "memberOf": the person's memberOf values (Active Directory, or
    OpenLDAP's memberof overlay); "member": groups under group_base_dn whose member is the person (groupOfNames).
    """

    enabled: bool = False
    urls: list[str] = field(default_factory=list)  # ldaps://dc1.example.org, or ldap://... with start_tls
    start_tls: bool = True  # ldap:// URLs: StartTLS before any password is sent
    ca_file: str = ""  # the CA that signed the servers' certificates (empty: the system's)
    timeout: float = 5.0  # seconds a whole directory check may take; past it the directory counts as down
    bind_dn: str = ""  # the service account that searches (empty: anonymous search)
    bind_password: str = ""
    bind_password_file: str = ""
    base_dn: str = ""
    user_filter: str = "(&(objectClass=inetOrgPerson)(uid={login}))"
    name_attribute: str = "displayName"  # else cn
    extension_attribute: str = "telephoneNumber"
    language_attribute: str = "preferredLanguage"
    membership: str = "member"
    group_base_dn: str = ""  # membership "member": where the groups are (empty: base_dn)
    groups: dict[str, str] = field(default_factory=dict)

    def secret(self) -> str:
        """The service account's password: the file wins over the inline value; never logged."""
        return _read_secret("[ldap] bind_password_file", self.bind_password_file) if self.bind_password_file else self.bind_password


@dataclass
class LogConfig:
    """Log verbosity: debug, info, warning or error."""

    level: str = "info"


@dataclass
class Config:
    """The whole daemon configuration."""

    freeswitch: FreeswitchConfig = field(default_factory=FreeswitchConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    numbers: NumbersConfig = field(default_factory=NumbersConfig)
    pbx: PbxConfig = field(default_factory=PbxConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    log: LogConfig = field(default_factory=LogConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    cdr: CdrConfig = field(default_factory=CdrConfig)
    originate: OriginateConfig = field(default_factory=OriginateConfig)
    card: CardConfig = field(default_factory=CardConfig)
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    i18n: I18nConfig = field(default_factory=I18nConfig)
    ldap: LdapConfig = field(default_factory=LdapConfig)
    sources: list[SourceConfig] = field(default_factory=list)
    node: str = ""


def _section(cls: type, name: str, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError("[%(section)s] must be a table", section=name)
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError("[%(section)s] unknown option %(key)s (known: %(known)s)", section=name, key=repr(key),
                              known=", ".join(sorted(known)))
        default = getattr(cls(), key)
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        if (type(value) is not type(default) or (isinstance(value, list) and not all(isinstance(v, str) for v in value))
                or (isinstance(value, dict) and not all(isinstance(v, str) for v in value.values()))):
            where = {"section": name, "key": key, "got": type(value).__name__}
            if isinstance(default, list):
                raise ConfigError("[%(section)s] %(key)s must be list of strings, got %(got)s", **where)
            if isinstance(default, dict):
                raise ConfigError("[%(section)s] %(key)s must be table of strings, got %(got)s", **where)
            raise ConfigError("[%(section)s] %(key)s must be %(expected)s, got %(got)s", expected=type(default).__name__,
                              **where)
        values[key] = value
    return cls(**values)


def parse(data: dict[str, Any]) -> Config:
    """Build a Config from parsed TOML, rejecting unknown keys and wrong types with a clear message."""
    sections = {f.name: f.default_factory for f in fields(Config) if f.name not in ("node", "sources")}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "node":
            if not isinstance(value, str):
                raise ConfigError("node must be a string")
            kwargs["node"] = value
        elif key == "sources":
            kwargs["sources"] = _sources(value)
        elif key in sections:
            kwargs[key] = _section(type(sections[key]()), key, value)
        else:
            raise ConfigError("unknown section [%(section)s]", section=key)
    config = Config(**kwargs)
    try:
        re.compile(config.numbers.extension_pattern)
    except re.error as exc:
        raise ConfigError("[numbers] extension_pattern is not a regular expression: %(reason)s", reason=str(exc)) from exc
    if not 4 <= config.numbers.suffix_digits <= 15:
        raise ConfigError("[numbers] suffix_digits must be between 4 and 15")
    config.http.address()
    if bool(config.http.certfile) != bool(config.http.keyfile):
        raise ConfigError("[http] certfile and keyfile go together: set both for TLS, or neither")
    if not 0.1 <= config.http.heartbeat <= 300:
        raise ConfigError("[http] heartbeat must be between 0.1 and 300 seconds")
    if not 1 <= config.http.header_timeout <= 300:
        raise ConfigError("[http] header_timeout must be between 1 and 300 seconds")
    if not 1 <= config.http.idle_timeout <= 3600:
        raise ConfigError("[http] idle_timeout must be between 1 and 3600 seconds")
    if not 10 <= config.http.max_connections <= 100_000:
        raise ConfigError("[http] max_connections must be between 10 and 100000")
    if config.analytics.timezone:
        try:
            ZoneInfo(config.analytics.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError("[analytics] timezone %(value)s is not a known IANA zone (e.g. Europe/Berlin)",
                              value=repr(config.analytics.timezone)) from None
    for name in ("service_level_seconds", "short_abandon_seconds"):
        value = getattr(config.analytics, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
            raise ConfigError("[analytics] %(key)s must be a number of seconds from 0 to 3600, got %(value)s", key=name,
                              value=repr(value))
    originate = config.originate
    if "{extension}" not in originate.dial_string or "{number}" not in originate.dial_string:
        raise ConfigError("[originate] dial_string must contain {extension} and {number}")
    if any(c in originate.dial_string for c in "\r\n\x00"):
        raise ConfigError("[originate] dial_string must be one line")
    if originate.number_format not in ("e164", "national"):
        raise ConfigError("[originate] number_format must be e164 or national")
    if not 5 <= originate.ring_timeout <= 300:
        raise ConfigError("[originate] ring_timeout must be between 5 and 300 seconds")
    if not 1 <= originate.rate_limit <= 100:
        raise ConfigError("[originate] rate_limit must be between 1 and 100 calls")
    if not 1 <= originate.rate_window <= 3600:
        raise ConfigError("[originate] rate_window must be between 1 and 3600 seconds")
    if not 0.5 <= config.freeswitch.keepalive <= 60:
        raise ConfigError("[freeswitch] keepalive must be between 0.5 and 60 seconds")
    if not 0 <= config.freeswitch.startup_wait <= 600:
        raise ConfigError("[freeswitch] startup_wait must be between 0 and 600 seconds")
    if config.database.queue_max < 1000:
        raise ConfigError("[database] queue_max must be at least 1000")
    if not 0.1 <= config.database.employee_reload <= 3600:
        raise ConfigError("[database] employee_reload must be between 0.1 and 3600 seconds")
    if not 0.1 <= config.cluster.poll_interval <= 1.0:
        raise ConfigError("[cluster] poll_interval must be between 0.1 and 1 second (takeover within 5 s)")
    if not 1.0 <= config.cluster.hang_timeout <= 3.5:
        raise ConfigError("[cluster] hang_timeout must be between 1 and 3.5 seconds (takeover within 5 s)")
    if not 0.05 <= config.web.session_hours <= 24 * 30:
        raise ConfigError("[web] session_hours must be between 0.05 and 720")
    if not 5 <= config.web.signin_link_seconds <= 600:
        raise ConfigError("[web] signin_link_seconds must be between 5 and 600")
    if not 1 <= config.web.photo_max_mb <= 50:
        raise ConfigError("[web] photo_max_mb must be between 1 and 50")
    if not 1 <= config.web.signin_free_failures <= 100 or not 1 <= config.web.signin_address_free_failures <= 10000:
        raise ConfigError("[web] signin_free_failures must be between 1 and 100, signin_address_free_failures between 1 and 10000")
    if not 1 <= config.web.signin_lock_after <= 1000:
        raise ConfigError("[web] signin_lock_after must be between 1 and 1000")
    if not 0.1 <= config.web.signin_lock_minutes <= 24 * 60:
        raise ConfigError("[web] signin_lock_minutes must be between 0.1 and 1440")
    if not 16 <= config.cdr.max_body_kb <= 65536:
        raise ConfigError("[cdr] max_body_kb must be between 16 and 65536")
    if not 1 <= config.cdr.keep_days <= 3650:
        raise ConfigError("[cdr] keep_days must be between 1 and 3650")
    if not config.cdr.user or ":" in config.cdr.user:
        raise ConfigError("[cdr] user must be a name without ':' (mod_json_cdr sends cred as user:password)")
    config.cdr.secret()
    _check_card(config.card)
    _check_recordings(config.recordings)
    _check_analysis(config.analysis)
    _check_ldap(config.ldap)
    if config.i18n.default_language not in ("en", "is"):
        raise ConfigError("[i18n] default_language must be en or is, got %(value)s", value=repr(config.i18n.default_language))
    if config.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("[log] level must be debug, info, warning or error")
    return config


def _check_recordings(rec: RecordingsConfig) -> None:
    """[recordings]: absolute paths on both sides of each mapping and in roots, a known listen role, sane ages."""
    for fs_prefix, local in rec.paths.items():
        if not (fs_prefix.startswith("/") and local.startswith("/")):
            raise ConfigError("[recordings] paths: %(prefix)s = %(local)s must map an absolute path to an absolute path",
                              prefix=repr(fs_prefix), local=repr(local))
    for root in rec.roots:
        if not root.startswith("/"):
            raise ConfigError("[recordings] roots: %(root)s must be an absolute path", root=repr(root))
    if rec.listen not in LISTEN_ROLES:
        raise ConfigError("[recordings] listen must be one of %(roles)s, got %(value)s", roles=", ".join(LISTEN_ROLES),
                          value=repr(rec.listen))
    if not 0 <= rec.keep_days <= 36500:
        raise ConfigError("[recordings] keep_days must be between 0 (keep forever) and 36500")
    if not 1 <= rec.sweep_interval <= 86400:
        raise ConfigError("[recordings] sweep_interval must be between 1 and 86400 seconds")
    if not 0.1 <= rec.check_interval <= 3600:
        raise ConfigError("[recordings] check_interval must be between 0.1 and 3600 seconds")


def _check_card(card: CardConfig) -> None:
    """[card]: a locale and currency CLDR knows, a pattern it can parse, decimals 0-4 or -1."""
    from babel import Locale, UnknownLocaleError
    from babel.numbers import NumberFormatError, is_currency, parse_pattern

    try:
        Locale.parse(card.locale)
    except (UnknownLocaleError, ValueError, TypeError):
        raise ConfigError("[card] locale %(value)s is not a known locale (e.g. en_US, is_IS, de_DE)", value=repr(card.locale)) from None
    if not is_currency(card.currency):
        raise ConfigError("[card] currency %(value)s is not an ISO 4217 code (e.g. USD, EUR, ISK)", value=repr(card.currency))
    if card.money_format:
        try:
            parse_pattern(card.money_format)
        except (NumberFormatError, ValueError) as exc:
            raise ConfigError("[card] money_format %(value)s is not a CLDR number pattern: %(reason)s",
                              value=repr(card.money_format), reason=str(exc)) from None
        if "¤" not in card.money_format or any(c in card.money_format for c in "\r\n"):
            raise ConfigError("[card] money_format must hold the currency sign ¤ (e.g. \"#,##0.00 ¤\") on one line")
    if not -1 <= card.decimals <= 4:
        raise ConfigError("[card] decimals must be between 0 and 4, or -1 for the currency's own")
def _check_analysis(analysis: AnalysisConfig) -> None:
    """[analysis]: limits in range, phrases short and on one line (the engine is checked at start-up, when its
    package and model can be looked for: daemon/analysis/stt.py)."""
    if not 1 <= analysis.queue_max <= 100000:
        raise ConfigError("[analysis] queue_max must be between 1 and 100000")
    if not 0.1 <= analysis.scan_interval <= 3600:
        raise ConfigError("[analysis] scan_interval must be between 0.1 and 3600 seconds")
    if not 0 <= analysis.pause <= 60:
        raise ConfigError("[analysis] pause must be between 0 and 60 seconds")
    if not 0.1 <= analysis.max_minutes <= 24 * 60:
        raise ConfigError("[analysis] max_minutes must be between 0.1 and 1440")
    if not 1 <= analysis.timeout <= 86400:
        raise ConfigError("[analysis] timeout must be between 1 and 86400 seconds")
    if not re.fullmatch(r"[a-z]{2,3}([-_][A-Za-z]{2,4})?", analysis.language):
        raise ConfigError("[analysis] language must be a language code such as en or de, got %(value)s",
                          value=repr(analysis.language))
    for phrase in analysis.phrases:
        if not phrase.strip() or len(phrase) > 200 or any(c in phrase for c in "\r\n\x00"):
            raise ConfigError("[analysis] phrases: %(phrase)s must be 1 to 200 characters on one line", phrase=repr(phrase[:40]))


def _check_ldap(ldap: LdapConfig) -> None:
    """[ldap], when enabled: ldap:// or ldaps:// servers (ldap:// only with StartTLS unless the URL is loopback), a
    base DN, a filter with {login}, a known membership kind and groups mapped to known roles."""
    if not ldap.enabled:
        return
    if not ldap.urls:
        raise ConfigError("[ldap] urls: at least one server, e.g. [\"ldaps://dc1.example.org\"]")
    for url in ldap.urls:
        found = re.fullmatch(r"(ldaps?)://(\[[0-9a-fA-F:.]+\]|[^/\s:\[\]]+)(:\d{1,5})?/?", url)
        if not found:
            raise ConfigError("[ldap] urls: %(url)s must be ldap://host[:port] or ldaps://host[:port]", url=repr(url))
        if found[1] == "ldap" and not ldap.start_tls and found[2] not in ("127.0.0.1", "[::1]", "localhost"):
            raise ConfigError("[ldap] urls: %(url)s without start_tls would send passwords in clear; use ldaps:// "
                              "or start_tls = true", url=repr(url))
    if not ldap.base_dn:
        raise ConfigError("[ldap] base_dn: where the people are, e.g. \"ou=people,dc=example,dc=org\"")
    if "{login}" not in ldap.user_filter or not (ldap.user_filter.startswith("(") and ldap.user_filter.endswith(")")):
        raise ConfigError("[ldap] user_filter must be an LDAP filter in parentheses holding {login}")
    if ldap.membership not in LDAP_MEMBERSHIP:
        raise ConfigError("[ldap] membership must be memberOf or member, got %(value)s", value=repr(ldap.membership))
    if not 0.1 <= ldap.timeout <= 60:
        raise ConfigError("[ldap] timeout must be between 0.1 and 60 seconds")
    if not ldap.groups:
        raise ConfigError("[ldap] groups: map at least one group's DN to a role (operator, manager or admin)")
    for dn, role in ldap.groups.items():
        if role not in LISTEN_ROLES:
            raise ConfigError("[ldap] groups: %(dn)s = %(role)s: the role must be operator, manager or admin",
                              dn=repr(dn), role=repr(role))
    if ldap.ca_file and not os.path.isfile(ldap.ca_file):
        raise ConfigError("[ldap] ca_file: %(path)s is not a file", path=ldap.ca_file)
    ldap.secret()


def _sources(raw: Any) -> list[SourceConfig]:
    """The [[sources]] entries, each checked on its own; the templates and paths are compiled by daemon/sources/."""
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise ConfigError("sources must be an array of tables: [[sources]]")
    out: list[SourceConfig] = []
    for i, entry in enumerate(raw, 1):
        source = _section(SourceConfig, f"[sources] #{i}", entry)
        where = f"[[sources]] {source.name or f'#{i}'}"
        if not _SOURCE_NAME.fullmatch(source.name):
            raise ConfigError("%(where)s: name must be 1 to 40 letters, digits, _ or -", where=where)
        if source.name in {s.name for s in out}:
            raise ConfigError("%(where)s: another source has this name", where=where)
        if source.type not in SOURCE_TYPES:
            raise ConfigError("%(where)s: type must be sql or http", where=where)
        scheme = source.url.partition(":")[0].lower()
        if source.type == "sql":
            if scheme not in SQL_SCHEMES:
                raise ConfigError("%(where)s: url must start with %(schemes)s", where=where,
                                  schemes=", ".join(s + "://" for s in SQL_SCHEMES))
            if not source.query.strip():
                raise ConfigError("%(where)s: a sql source needs a query", where=where)
            if source.fields or source.headers or source.method != "GET":
                raise ConfigError("%(where)s: fields, headers and method are for http sources (a query's columns are its fields)", where=where)
        else:
            if scheme not in ("http", "https"):
                raise ConfigError("%(where)s: url must start with http:// or https://", where=where)
            if source.method not in ("GET", "POST"):
                raise ConfigError("%(where)s: method must be GET or POST", where=where)
            if not source.fields:
                raise ConfigError("%(where)s: an http source needs fields (label = \"path.in.the.answer\")", where=where)
            if source.query:
                raise ConfigError("%(where)s: query is for sql sources", where=where)
            if any(c in text for item in source.headers.items() for text in item for c in "\r\n\x00"):
                raise ConfigError("%(where)s: headers must be one line each", where=where)
        if not 0.01 <= source.timeout <= 30:
            raise ConfigError("%(where)s: timeout must be between 0.01 and 30 seconds", where=where)
        if not 0 <= source.cache_seconds <= 86400:
            raise ConfigError("%(where)s: cache_seconds must be between 0 and 86400", where=where)
        if not 1 <= source.failures <= 1000:
            raise ConfigError("%(where)s: failures must be between 1 and 1000", where=where)
        if not 0.1 <= source.pause <= 3600:
            raise ConfigError("%(where)s: pause must be between 0.1 and 3600 seconds", where=where)
        if not 256 <= source.max_bytes <= 16 << 20:
            raise ConfigError("%(where)s: max_bytes must be between 256 and 16777216", where=where)
        source.secret()
        out.append(source)
    return out


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read the TOML file at path (None: all defaults)."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("cannot read config %(path)s: %(reason)s", path=str(path), reason=exc.strerror) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config %(path)s is not valid TOML: %(reason)s", path=str(path), reason=str(exc)) from exc
    return parse(data)
