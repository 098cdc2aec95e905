"""The peewee models: customers and their numbers, employees and teams, orders, custom fields, categories and card
layouts, calls with their parties and pop events, CDR legs, API tokens, missed calls marked done, settings, sign-in
links, people, sign-in throttling, web sessions, the audit trail, call recordings with their listen log,
conversation analysis (figures, transcripts, phrase alerts) and the schema version."""
from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    DecimalField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    SQL,
    TextField,
)

from screenpop.db import collation

database = DatabaseProxy()

FIELD_ENTITIES = ("customer", "order")
FIELD_KINDS = ("text", "longtext", "number", "money", "date", "choice", "yesno", "link")
DIRECTIONS = ("INCOMING", "OUTGOING", "INTERNAL")
POP_EVENTS = ("ringing", "dialing", "answered", "answered_elsewhere", "missed", "transferred", "ended")


def utcnow() -> dt.datetime:
    """Naive UTC now: every timestamp in the database is naive UTC."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Employee(BaseModel):
    """An operator or other staff member, reachable on one extension."""

    id = AutoField()
    name = CharField(max_length=200)
    extension = CharField(max_length=32, unique=True)
    active = BooleanField(default=True)


class Customer(BaseModel):
    """A person or company that calls in or is called."""

    id = AutoField()
    external_id = CharField(max_length=100, null=True, unique=True)
    name = CharField(max_length=300, default="")
    company = CharField(max_length=300, default="")
    category = CharField(max_length=16, default="regular")
    note = TextField(default="")
    city = CharField(max_length=200, default="")
    country = CharField(max_length=200, default="")
    photo = CharField(max_length=500, null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # custom field values as one JSON object {key: stored text} (daemon/customers/fields.py), read with the row;
    # custom_text: the text and choice values, for the search index (db/search.py)
    custom = TextField(default="{}", constraints=[SQL("DEFAULT '{}'")])
    custom_text = TextField(default="", constraints=[SQL("DEFAULT ''")])
    # name and company as each language sorts them (db/collation.py customer_keys), written with them: the lists'
    # A-to-Z orders read an index on these; compared character by character (PostgreSQL: COLLATE "C", migration 23)
    name_key_en = TextField(default="", constraints=[SQL("DEFAULT ''")])
    name_key_is = TextField(default="", constraints=[SQL("DEFAULT ''")])
    company_key_en = TextField(default="", constraints=[SQL("DEFAULT ''")])
    company_key_is = TextField(default="", constraints=[SQL("DEFAULT ''")])

    def save(self, *args: Any, **kwargs: Any) -> int:
        """Saved with its sort keys for its name and company as they are now (an UPDATE query or a bulk insert
        writes them itself: daemon/customers/data.py, importer.py)."""
        for column, key in collation.customer_keys(self.name, self.company).items():
            setattr(self, column, key)
        return super().save(*args, **kwargs)


class Phone(BaseModel):
    """One number of a customer; e164 is the normalised form, rev the reversed digits for suffix lookup, country_code
    set only when e164 is a valid number of that country (a suffix never matches a valid number of another country)."""

    id = AutoField()
    customer = ForeignKeyField(Customer, backref="phones", on_delete="CASCADE")
    e164 = CharField(max_length=32, index=True)
    rev = CharField(max_length=32, index=True)
    country_code = IntegerField(null=True)
    raw = CharField(max_length=64)
    label = CharField(max_length=64, default="")

    class Meta:
        indexes = ((("customer", "e164"), True),)


class Order(BaseModel):
    """A customer's order: stage, responsible employee, amount and what has been paid."""

    id = AutoField()
    customer = ForeignKeyField(Customer, backref="orders", on_delete="CASCADE")
    number = CharField(max_length=64, unique=True)
    title = CharField(max_length=300, default="")
    stage = CharField(max_length=100, default="")
    responsible = ForeignKeyField(Employee, null=True, backref="orders", on_delete="SET NULL")
    amount = DecimalField(max_digits=14, decimal_places=2, default=0)
    paid = DecimalField(max_digits=14, decimal_places=2, default=0)
    status = CharField(max_length=16, default="open")
    custom = TextField(default="{}", constraints=[SQL("DEFAULT '{}'")])  # custom field values, as Customer.custom


class CustomField(BaseModel):
    """A field an admin defined on customers or orders: its values live in the record's custom JSON under key."""

    id = AutoField()
    entity = CharField(max_length=16)  # FIELD_ENTITIES
    key = CharField(max_length=40)
    label = CharField(max_length=100)
    kind = CharField(max_length=16)  # FIELD_KINDS
    required = BooleanField(default=False)
    options = TextField(default="[]")  # a choice's options, a JSON list of strings
    position = IntegerField(default=0)

    class Meta:
        indexes = ((("entity", "key"), True),)


class Category(BaseModel):
    """A customer category the admin edits: name (what customer.category holds), colour, the flag shown on the pop."""

    name = CharField(max_length=16, primary_key=True)
    colour = CharField(max_length=7)  # #rrggbb
    flag = CharField(max_length=40, default="")
    position = IntegerField(default=0)
    is_default = BooleanField(default=False)  # new customers and empty CSV cells get it; exactly one is


class CardLayoutRow(BaseModel):
    """A card layout an admin made (daemon/push/layouts.py): the pop's lines by key, in order, with their styles, as
    a JSON list; the one named "default" replaces the built-in layout for extensions in no team."""

    name = CharField(max_length=40, primary_key=True)
    items = TextField(default="[]")

    class Meta:
        table_name = "card_layout"


class Team(BaseModel):
    """A named set of extensions whose pops use one layout."""

    name = CharField(max_length=40, primary_key=True)
    layout = ForeignKeyField(CardLayoutRow, column_name="layout", on_delete="RESTRICT")


class TeamMember(BaseModel):
    """An extension in a team: one team at most, so its pops have one layout."""

    extension = CharField(max_length=20, primary_key=True)
    team = ForeignKeyField(Team, column_name="team", on_delete="CASCADE", on_update="CASCADE")

    class Meta:
        table_name = "team_member"


class Call(BaseModel):
    """One business call, keyed by its a-leg UUID, with its outcome."""

    id = AutoField()
    uuid = CharField(max_length=64, unique=True)
    direction = CharField(max_length=16)
    external_number = CharField(max_length=128, null=True)
    external_name = TextField(null=True)
    external_e164 = CharField(max_length=32, null=True)  # indexed by the composites below
    did = CharField(max_length=64, null=True)
    from_extension = CharField(max_length=32, null=True)
    customer = ForeignKeyField(Customer, null=True, backref="calls", on_delete="SET NULL", index=False)  # composites
    matches = IntegerField(default=0)
    extension = CharField(max_length=32, null=True, index=True)
    employee = ForeignKeyField(Employee, null=True, backref="calls", on_delete="SET NULL")
    answered_by = CharField(max_length=32, null=True)
    external_answered = BooleanField(null=True)
    started_at = DateTimeField(index=True)
    answered_at = DateTimeField(null=True)
    ended_at = DateTimeField(null=True)
    ring_seconds = FloatField(null=True)
    talk_seconds = FloatField(null=True)
    a_leg_billsec = IntegerField(null=True)
    hangup_cause = CharField(max_length=64, null=True)
    missed = BooleanField(default=False)
    node = CharField(max_length=200, default="")
    # built from FreeSWITCH's CDRs alone (the daemon saw none of it live); a database default too, so a daemon of
    # the version before (a rolling upgrade on one PostgreSQL) still inserts calls
    recovered = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])
    # seconds on hold (CHANNEL_HOLD to CHANNEL_UNHOLD, over the call's legs), inside talk_seconds; the mod_callcenter
    # queue the caller waited in. Database defaults too, for a daemon of the version before (migration 21)
    hold_seconds = FloatField(default=0.0, constraints=[SQL("DEFAULT 0")])
    queue = CharField(max_length=200, null=True)

    class Meta:
        # analytics (covering): a customer's or a number's calls in time order, for callbacks, returned missed
        # calls and the per-customer figures
        indexes = (
            # a customer's calls newest first (the record page); the first answered call after a missed one, that
            # returned it, found in start order without reading the rows (migration 21 added id and the rest)
            (("customer", "started_at", "id", "answered_at", "direction"), False),
            (("external_e164", "started_at", "id", "answered_at", "direction"), False),
            (("customer", "direction", "started_at", "answered_at", "missed"), False),
            (("external_e164", "direction", "started_at", "answered_at"), False),
        )


class CallParty(BaseModel):
    """One extension's part in a call: when it rang, answered, talked, missed or was transferred away."""

    id = AutoField()
    call = ForeignKeyField(Call, backref="parties", on_delete="CASCADE")
    extension = CharField(max_length=32, index=True)
    employee = ForeignKeyField(Employee, null=True, on_delete="SET NULL")
    role = CharField(max_length=16)
    seq = IntegerField(default=0)
    rang_at = DateTimeField(null=True)
    answered_at = DateTimeField(null=True)
    ended_at = DateTimeField(null=True)
    talk_seconds = FloatField(null=True)
    outcome = CharField(max_length=24, null=True)
    talked = BooleanField(default=False)
    hold_seconds = FloatField(default=0.0, constraints=[SQL("DEFAULT 0")])  # its holds, inside talk_seconds

    class Meta:
        indexes = ((("call", "extension"), True),)


class CallEvent(BaseModel):
    """Append-only pop log: one row per state change an extension is told about; id is the push event id."""

    id = BigAutoField()
    call = ForeignKeyField(Call, backref="events", on_delete="CASCADE")
    uuid = CharField(max_length=64)
    extension = CharField(max_length=32)
    event = CharField(max_length=24)
    direction = CharField(max_length=16)
    peer_number = CharField(max_length=128, default="")  # the other party: caller, callee or other extension
    peer_name = TextField(default="")
    customer = ForeignKeyField(Customer, null=True, on_delete="SET NULL")
    matches = IntegerField(default=0)
    at = DateTimeField()

    class Meta:
        indexes = ((("extension", "id"), False),)


class CdrLeg(BaseModel):
    """One call leg's CDR as FreeSWITCH's mod_json_cdr posted it, kept once per leg UUID (its repeats are ignored).

    parent is the leg it was created for (originator, queue member, loopback twin); body the CDR's JSON text.
    """

    id = AutoField()
    uuid = CharField(max_length=64, unique=True)
    parent = CharField(max_length=64, null=True, index=True)
    received_at = DateTimeField(default=utcnow, index=True)  # old legs are pruned ([cdr] keep_days)
    body = TextField()


class ApiToken(BaseModel):
    """A hashed API token bound to a role and, for operators, to one extension."""

    id = AutoField()
    name = CharField(max_length=100, default="")
    token_hash = CharField(max_length=128, unique=True)
    role = CharField(max_length=16, default="operator")
    extension = CharField(max_length=32, null=True)
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)


class MissedDone(BaseModel):
    """A missed call someone marked done (followed up another way): who and when; deleting the row is the undo.

    A table of its own, not columns of Call, so no save() of a call (the writer, a page) can overwrite it."""

    call = ForeignKeyField(Call, primary_key=True, on_delete="CASCADE")
    done_at = DateTimeField(default=utcnow)
    extension = CharField(max_length=32, null=True)  # who marked it: their extension (an admin token may have none)
    token = ForeignKeyField(ApiToken, null=True, on_delete="SET NULL")


RECORDING_STATUSES = ("recording", "stopped", "ok", "missing", "unreadable", "discarded", "deleted")


class Recording(BaseModel):
    """One file FreeSWITCH recorded of a call (RECORD_START / RECORD_STOP, docs/recordings.md).

    call_uuid is the call's a-leg (Call.uuid: the recording may start before the call row is written); party says
    who is on the left channel of a stereo file (the recorded leg's own side: customer or operator), extension the
    operator on it. fs_path is the path as FreeSWITCH wrote it, path where the daemon reads it ([recordings]
    paths). status: recording, stopped (not checked yet), ok, missing, unreadable, discarded (FreeSWITCH removed
    a too-short file), deleted (by retention, at deleted_at). keep holds it from retention.
    """

    id = AutoField()
    call_uuid = CharField(max_length=64, index=True)
    leg_uuid = CharField(max_length=64)
    party = CharField(max_length=16, default="")
    extension = CharField(max_length=32, null=True)
    fs_path = TextField()
    path = TextField()
    started_at = DateTimeField(index=True)
    stopped_at = DateTimeField(null=True)
    seconds = FloatField(null=True)  # FreeSWITCH's record_ms at the stop
    completion_cause = CharField(max_length=32, null=True)
    size = BigIntegerField(null=True)
    status = CharField(max_length=16, default="recording", index=True)
    checked_at = DateTimeField(null=True)
    keep = BooleanField(default=False)
    deleted_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("call_uuid", "fs_path"), True),)


class RecordingListen(BaseModel):
    """Someone played a recording: who (the token and what it was then), when, which call (admins read the log)."""

    id = AutoField()
    recording = ForeignKeyField(Recording, on_delete="CASCADE")
    call_uuid = CharField(max_length=64)
    token = ForeignKeyField(ApiToken, null=True, on_delete="SET NULL")
    who = CharField(max_length=200, default="")
    role = CharField(max_length=16, default="")
    at = DateTimeField(default=utcnow, index=True)


class Setting(BaseModel):
    """A value every daemon on the database shares, such as the web sessions' signing key (made once)."""

    key = CharField(max_length=64, primary_key=True)
    value = TextField()


class SigninLink(BaseModel):
    """A one-time web sign-in link minted with a token: only the secret's hash is kept; used_at marks it spent."""

    id = AutoField()
    secret_hash = CharField(max_length=128, unique=True)
    token = ForeignKeyField(ApiToken, on_delete="CASCADE")
    next_path = CharField(max_length=2000, default="/")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)
    used_at = DateTimeField(null=True)


class Person(BaseModel):
    """Someone who signs in to the pages with login and password (daemon/auth/people.py): their role, their
    extension when they take calls, their preferred language (None: the browser's), disabled_at when switched off.
    Only an argon2 hash of the password is kept."""

    id = AutoField()
    login = CharField(max_length=64, unique=True)
    name = CharField(max_length=200)
    password_hash = CharField(max_length=255, default="")
    role = CharField(max_length=16, default="operator")
    extension = CharField(max_length=32, null=True)
    language = CharField(max_length=16, null=True)
    created_at = DateTimeField(default=utcnow)
    password_changed_at = DateTimeField(null=True)
    disabled_at = DateTimeField(null=True)
    source = CharField(max_length=16, default="local")


class SigninThrottle(BaseModel):
    """Failed sign-ins in a row for one login ("login:anna") or one address ("address:10.0.0.7"): what slows
    the next try down and locks a login; a good sign-in clears its login's row."""

    key = CharField(max_length=200, primary_key=True)
    failures = IntegerField(default=0)
    last_failed_at = DateTimeField()


class WebSession(BaseModel):
    """A signed-in browser: only its session id's hash is kept; ended_at marks it signed out, on every daemon. It
    belongs to a person (signed in with a password, or by a tray's link of their extension), or else to a token."""

    id = AutoField()
    sid_hash = CharField(max_length=128, unique=True)
    person = ForeignKeyField(Person, null=True, on_delete="CASCADE")
    token = ForeignKeyField(ApiToken, null=True, on_delete="CASCADE")
    address = CharField(max_length=64, default="")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(index=True)
    ended_at = DateTimeField(null=True)


class AuditEntry(BaseModel):
    """One change to a customer, number, order or person (db/audit.py): what, who (a person, a token, or the
    actor's name as it was then) and when; customer is the record it is shown on."""

    id = BigAutoField()
    at = DateTimeField(default=utcnow)
    entity = CharField(max_length=16)
    entity_id = BigIntegerField()
    customer = BigIntegerField(null=True, index=True)
    action = CharField(max_length=32)
    detail = TextField(default="")
    person = ForeignKeyField(Person, null=True, on_delete="SET NULL")
    token = ForeignKeyField(ApiToken, null=True, on_delete="SET NULL")
    actor = CharField(max_length=200, default="")

    class Meta:
        indexes = ((("entity", "entity_id"), False),)
class RecordingAnalysis(BaseModel):
    """A recording's conversation analysis (daemon/analysis/, docs/analysis.md): done or failed (error says why,
    for the admin), when, by which speech engine; a recording without a row is still to be analysed."""

    recording_id = IntegerField(primary_key=True)
    call_uuid = CharField(max_length=64, index=True)
    state = CharField(max_length=8)  # done, failed
    error = TextField(default="")
    engine = CharField(max_length=20, default="")
    duration = FloatField(null=True)  # seconds of audio read
    truncated = BooleanField(default=False)  # the file held less audio than its header said; what was there counts
    analysed_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "recording_analysis"


class SideMetrics(BaseModel):
    """How one side (customer or operator) of a recording went, in seconds: talk, overtalk (both at once),
    silence (nobody, from the first speech to the last) and its longest stretch, first and last word, interruptions."""

    id = AutoField()
    recording_id = IntegerField()
    call_uuid = CharField(max_length=64, index=True)
    side = CharField(max_length=8)
    duration = FloatField()
    talk = FloatField()
    overtalk = FloatField()
    silence = FloatField()
    longest_silence = FloatField()
    spoke_first = BooleanField()
    spoke_last = BooleanField()
    interruptions = IntegerField()

    class Meta:
        table_name = "side_metrics"
        indexes = ((("recording_id", "side"), True),)


class TranscriptLine(BaseModel):
    """What one side said in a stretch of a recording, start and end in seconds from the recording's start."""

    id = AutoField()
    recording_id = IntegerField(index=True)
    call_uuid = CharField(max_length=64, index=True)
    side = CharField(max_length=8)
    start = FloatField()
    end = FloatField()
    text = TextField()

    class Meta:
        table_name = "transcript_line"


class PhraseAlert(BaseModel):
    """A phrase an admin wants to hear about (e.g. "cancel my contract", "lawyer"); side: customer, operator or
    either (empty). [analysis] phrases in the configuration are alerts too, without a row."""

    id = AutoField()
    phrase = CharField(max_length=200, unique=True)
    side = CharField(max_length=8, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "phrase_alert"


class PhraseMatch(BaseModel):
    """A transcript line that holds an alert's phrase: which phrase, call, recording, side, when, the line itself."""

    id = AutoField()
    phrase = CharField(max_length=200, index=True)
    recording_id = IntegerField(index=True)
    call_uuid = CharField(max_length=64, index=True)
    side = CharField(max_length=8)
    at = FloatField()
    text = TextField()
    found_at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "phrase_match"


ANALYSIS_MODELS = [RecordingAnalysis, SideMetrics, TranscriptLine, PhraseAlert, PhraseMatch]


class SchemaVersion(BaseModel):
    """Which migrations have been applied."""

    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)


ALL_MODELS = [Employee, Customer, Phone, Order, Call, CallParty, CallEvent, ApiToken, Setting, SigninLink, Person,
              SigninThrottle, WebSession, AuditEntry, CdrLeg, MissedDone, CustomField, Category, CardLayoutRow, Team,
              TeamMember, Recording, RecordingListen, *ANALYSIS_MODELS]
