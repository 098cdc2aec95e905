"""Phone number classification: extensions first, E.164 for anything that can be, raw (never matched) otherwise."""
from __future__ import annotations

import phonenumbers
import pytest

from screenpop.daemon.config import NumbersConfig
from screenpop.db.numbers import Number, NumberRules

from support import RULES

US = NumberRules("US", r"^[1-9][0-9]{1,4}$", 8)


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("+3545551234", "+3545551234"),
        ("+354 555 1234", "+3545551234"),
        ("+354-555-1234", "+3545551234"),
        ("5551234", "+3545551234"),
        ("555 1234", "+3545551234"),
        ("555-1234", "+3545551234"),
        ("  5551234\n", "+3545551234"),
        ("\t+3545551234 ", "+3545551234"),
        ("003545551234", "+3545551234"),
        ("00354 555 1234", "+3545551234"),
        ("6991234", "+3546991234"),
        ("+3544101234", "+3544101234"),
        ("+447911123456", "+447911123456"),
        ("0044 7911 123456", "+447911123456"),
        ("+12025550123", "+12025550123"),
        ("+1 (202) 555-0123", "+12025550123"),
        ("+46701234567", "+46701234567"),
        ("+4930123456", "+4930123456"),
    ],
)
def test_iceland_numbers_become_e164(raw: str, e164: str) -> None:
    number = RULES.classify(raw)
    assert number == Number("e164", raw, e164, e164[:0:-1], phonenumbers.parse(e164).country_code)
    assert number.kind == "e164"


@pytest.mark.parametrize("raw", ["+1 555 555 1234", "+1 554 555 1234"])
def test_a_number_valid_in_no_plan_has_no_country_code(raw: str) -> None:
    """Plausible only (a lab or test range): E.164 and looked up, but no plan says whose country it is."""
    number = RULES.classify(raw)
    assert number.kind == "e164" and number.country_code is None


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("2025550123", "+12025550123"),
        ("(202) 555-0123", "+12025550123"),
        ("1 202 555 0123", "+12025550123"),
        ("+3545551234", "+3545551234"),
        ("0113545551234", "+3545551234"),
        ("003545551234", "+3545551234"),
        ("00 354 555 1234", "+3545551234"),
        ("00447911123456", "+447911123456"),
        ("+1 555 555 1234", "+15555551234"),
        ("5555551234", "+15555551234"),
    ],
)
def test_us_numbers_including_foreign_00_prefix(raw: str, e164: str) -> None:
    assert US.classify(raw).e164 == e164


@pytest.mark.parametrize("raw", ["10", "100", "1001", "99999", " 1001 "])
def test_extensions_are_recognised_before_any_parsing(raw: str) -> None:
    number = RULES.classify(raw)
    assert number == Number("extension", raw)
    assert number.kind != "e164"
    assert RULES.is_extension(raw)


def test_listed_extensions_count_even_when_the_pattern_does_not_match() -> None:
    rules = NumberRules("IS", r"^[1-9][0-9]{2}$", 8, frozenset({"5551234", "0"}))
    assert rules.classify("5551234").kind == "extension"
    assert rules.classify("0").kind == "extension"
    assert rules.classify("5551235").kind == "e164"


def test_extension_pattern_matches_ascii_digits_only() -> None:
    rules = NumberRules("IS", r"\d{3,4}", 8)
    assert rules.classify("1001").kind == "extension"
    assert rules.classify("١٠٠١").kind == "raw"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "UNKNOWN",
        "restricted",
        "private",
        "unavailable",
        "withheld",
        "0",
        "0000000000",
        "+0000000000",
        "000 000 0000",
        "+",
        "++3545551234",
        "354+5551234",
        "+3545",
        "+999123456",
        "+35455512345678",
        "5551234x12",
        "tel:5551234",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "'; DROP TABLE customer; --",
        "5551234; DROP TABLE phone",
        "\x00",
        "555\x001234",
        "\x1b[31m5551234",
        "555\u202e1234",
        "５５５１２３４",
        "\ud800",
        "1" * 200,
        "+" + "9" * 199,
        "x" * 200,
        "😀" * 50,
        "1-800-FLOWERS",
        "call me at 5551234",
    ],
)
def test_hostile_or_hopeless_input_stays_raw(raw: str) -> None:
    number = RULES.classify(raw)
    assert number == Number("raw", raw)
    assert number.kind != "e164"
    assert US.classify(raw).kind in ("raw", "extension")


def test_short_service_numbers_are_raw_unless_they_look_like_extensions() -> None:
    four_digit_extensions = NumberRules("IS", r"[1-9][0-9]{3}", 8)
    assert four_digit_extensions.classify("112").kind == "raw"
    assert NumberRules("US", r"[1-9][0-9]{3}", 8).classify("911").kind == "raw"
    assert RULES.classify("112").kind == "extension"


def test_us_local_only_number_is_not_guessed() -> None:
    assert US.classify("5551234").kind == "raw"


@pytest.mark.parametrize("value", [None, 5551234, b"5551234", ["5551234"]])
def test_non_strings_never_raise(value: object) -> None:
    assert RULES.classify(value).kind == "raw"


def test_raw_is_kept_as_given_and_rev_is_reversed_digits() -> None:
    number = RULES.classify(" 00354 555-1234 ")
    assert number.raw == " 00354 555-1234 "
    assert number.e164 == "+3545551234"
    assert number.rev == "4321555453"


def test_rules_from_config_and_bad_rules() -> None:
    rules = NumberRules.from_config(NumbersConfig(default_region="is", suffix_digits=7))
    assert rules.default_region == "IS"
    assert rules.suffix_digits == 7
    assert rules.classify("5551234").e164 == "+3545551234"
    with pytest.raises(ValueError, match="default_region"):
        NumberRules("XX", r"\d{3}", 8)
    with pytest.raises(ValueError, match="suffix_digits"):
        NumberRules("IS", r"\d{3}", 3)


def test_classification_is_cached_and_stable() -> None:
    first = RULES.classify("5551234")
    assert RULES.classify("5551234") is first
