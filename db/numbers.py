"""Phone number rules: the one place that decides what is an extension, what is E.164 and what is never matched."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult

if TYPE_CHECKING:
    from screenpop.daemon.config import NumbersConfig

Kind = Literal["extension", "e164", "raw"]

MAX_INPUT = 64
WITHHELD = frozenset({"anonymous", "unknown", "restricted", "private", "unavailable", "withheld"})
_DIALLABLE = re.compile(r"\+?[0-9 ()./-]+")
_SEPARATORS = re.compile(r"[ ()./-]")


@dataclass(frozen=True, slots=True)
class Number:
    """A classified number: kind says how to treat it; e164 and rev are set only for kind 'e164'.

    country_code is the country calling code when e164 is valid in that country's plan (not merely plausible):
    only then can a lookup tell that another country's number with the same last digits is someone else's.
    """

    kind: Kind
    raw: str
    e164: str | None = None
    rev: str | None = None
    country_code: int | None = None


@dataclass(frozen=True, slots=True)
class NumberForms:
    """One number in the forms another system may keep it in (docs/sources.md): "+3545551234" (e164), the digits
    its own country writes it with nationally, trunk prefix included ("5551234"; "02079460018" in the UK), and the
    E.164 digits without the plus ("3545551234")."""

    e164: str
    national: str
    digits: str


@dataclass(frozen=True)
class NumberRules:
    """How this site's numbers look: the region for national numbers, the extension pattern, suffix length."""

    default_region: str
    extension_pattern: str
    suffix_digits: int
    extensions: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        region = self.default_region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown default_region {self.default_region!r} (use a two-letter country code, e.g. IS or US)")
        if not 4 <= self.suffix_digits <= 15:
            raise ValueError("suffix_digits must be between 4 and 15")
        object.__setattr__(self, "default_region", region)
        idd = PhoneMetadata.metadata_for_region(region).international_prefix or ""
        object.__setattr__(self, "_extension_re", re.compile(self.extension_pattern, re.ASCII))
        object.__setattr__(self, "_idd_is_00", re.fullmatch(idd, "00") is not None)
        object.__setattr__(self, "_cached", lru_cache(maxsize=4096)(self._classify))
        object.__setattr__(self, "_shown", lru_cache(maxsize=4096)(self._display))

    @classmethod
    def from_config(cls, numbers: NumbersConfig, extensions: frozenset[str] = frozenset()) -> NumberRules:
        """Rules from the [numbers] section of the daemon configuration."""
        return cls(numbers.default_region, numbers.extension_pattern, numbers.suffix_digits, extensions)

    def classify(self, raw: str) -> Number:
        """Classify a caller or callee number as an internal extension, an E.164 number, or raw text never matched."""
        if not isinstance(raw, str):
            return Number("raw", "" if raw is None else str(raw))
        return self._cached(raw)

    def is_extension(self, raw: str) -> bool:
        """Whether raw is one of this site's internal extensions."""
        return self.classify(raw).kind == "extension"

    def dial_form(self, raw: str, number_format: str = "e164") -> str | None:
        """The number as the PBX dials it: an extension as it is, an E.164 number as +E.164 or ("national") in the
        home region's national digits; None for anything else (withheld, text). Only digits and a leading +."""
        number = self.classify(raw)
        if number.kind == "extension":
            text = number.raw.strip()
            return text if text.isascii() and text.isdigit() else None
        if number.kind != "e164" or number.e164 is None:
            return None
        if number_format == "national":
            parsed = phonenumbers.parse(number.e164, None)
            if phonenumbers.region_code_for_number(parsed) == self.default_region:
                return _national_digits(parsed)
        return number.e164

    def display_form(self, raw: str) -> tuple[str, str | None]:
        """The number as people read it, and its region when it is not the home region's: an E.164 number of the
        home region in national form ("555 1234"), any other in international form ("+45 45 55 12 34", "DK");
        an extension, a withheld number or text as given (the caller chose it: whoever shows it escapes it)."""
        if not isinstance(raw, str):
            return ("" if raw is None else str(raw)), None
        return self._shown(raw)

    def _display(self, raw: str) -> tuple[str, str | None]:
        number = self.classify(raw)
        if number.kind != "e164" or number.e164 is None:
            return raw.strip(), None
        parsed = phonenumbers.parse(number.e164, None)
        region = phonenumbers.region_code_for_number(parsed) or phonenumbers.region_code_for_country_code(
            parsed.country_code)
        if region == self.default_region:
            return phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL), None
        known = region if region in phonenumbers.SUPPORTED_REGIONS else None  # not "001" (non-geographic)
        return phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL), known

    def forms(self, raw: str) -> NumberForms | None:
        """The forms of an external number other systems may store (sources query by them); None for an
        extension, a withheld number or text that cannot be made E.164."""
        number = self.classify(raw)
        if number.kind != "e164" or number.e164 is None:
            return None
        national = _national_digits(phonenumbers.parse(number.e164, None))
        return NumberForms(number.e164, national or number.e164[1:], number.e164[1:])

    def _classify(self, raw: str) -> Number:
        text = raw.strip()
        if not text or len(text) > MAX_INPUT or text.lower() in WITHHELD:
            return Number("raw", raw)
        if text in self.extensions or self._extension_re.fullmatch(text):
            return Number("extension", raw)
        if not _DIALLABLE.fullmatch(text):
            return Number("raw", raw)
        dialled = _SEPARATORS.sub("", text)
        if not dialled.strip("+0"):
            return Number("raw", raw)
        reading = self._to_e164(dialled)
        if reading is None:
            return Number("raw", raw)
        e164, country_code = reading
        return Number("e164", raw, e164, e164[:0:-1], country_code)

    def _to_e164(self, dialled: str) -> tuple[str, int | None] | None:
        """The E.164 form of a dialled string and its country code if valid, preferring a valid reading."""
        readings = [self._parse(dialled)]
        if dialled.startswith("00") and not self._idd_is_00:
            readings.append(self._parse("+" + dialled[2:]))
        parsed = [n for n in readings if n is not None]
        for number in parsed:
            if phonenumbers.is_valid_number(number):
                return phonenumbers.format_number(number, PhoneNumberFormat.E164), number.country_code
        for number in parsed:
            if _plausible(number):
                return phonenumbers.format_number(number, PhoneNumberFormat.E164), None
        return None

    def _parse(self, dialled: str) -> phonenumbers.PhoneNumber | None:
        try:
            return phonenumbers.parse(dialled, self.default_region)
        except NumberParseException:
            return None


def is_withheld(raw: str) -> bool:
    """Whether the caller withheld the number ("anonymous", "private", …, or nothing at all)."""
    return not isinstance(raw, str) or raw.strip().lower() in WITHHELD or not raw.strip()


def _national_digits(number: phonenumbers.PhoneNumber) -> str:
    """The digits of a number as its own country dials it nationally (trunk prefix included)."""
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return "".join(c for c in national if c.isascii() and c.isdigit())


def valid_country_code(e164: str) -> int | None:
    """The country calling code of a stored E.164 number that is valid in its country's plan, else None."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    return number.country_code if phonenumbers.is_valid_number(number) else None


def _plausible(number: phonenumbers.PhoneNumber) -> bool:
    """Not in the numbering plan, but a full-length number of a real country code (lab and test ranges such as +1 555).

    is_possible_number alone is too lax (it also accepts local-only lengths), so the exact IS_POSSIBLE result,
    a known country code and a non-zero national number are all required.
    """
    if phonenumbers.region_code_for_country_code(number.country_code) == phonenumbers.UNKNOWN_REGION:
        return False
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return False
    return number.national_number != 0
