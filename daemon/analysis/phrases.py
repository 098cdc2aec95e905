"""Phrase alerts: which transcript lines hold a phrase the organisation wants to hear about. Text is compared folded
(case, accents, punctuation) and by whole words, so "lawyer" matches "Lawyer!" but not "lawyers'" inside "flawyer"."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_NOT_WORD = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class Alert:
    """A phrase to find, on one side (customer, operator) or on either ("")."""

    phrase: str
    side: str = ""


def fold(text: str) -> str:
    """Lower case, accents and punctuation gone, single spaces: the form phrases and lines are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", plain).split())


def matches(alerts: list[Alert], side: str, text: str) -> list[str]:
    """The phrases of alerts that this side's line of text holds, as whole words."""
    line = f" {fold(text)} "
    return [a.phrase for a in alerts if (not a.side or a.side == side) and (p := fold(a.phrase)) and f" {p} " in line]
