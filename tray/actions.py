"""What an operator can do from a pop: which page a click on it opens, and its buttons.

The daemon decides where a call leads (the card's `record_url`: the customer's record, the new-customer page for a
caller nobody knows, the chooser when several customers share the number, none for an internal or withheld caller)
and whether its number can be called back (`can_call`, docs/card.md); this module only turns that into the
notification's actions, so a hostile caller ID or number never changes them.
"""
from __future__ import annotations

from dataclasses import dataclass

from screenpop.tray.i18n import gettext as _

DEFAULT = "default"  # the spec's key for a click on the notification itself
CALL = "call"
POP_EVENTS = ("ringing", "dialing", "missed")


@dataclass(frozen=True)
class PopActions:
    """A pop's actions: page is what a click (and every button but Call back) opens; number is what Call back dials."""

    page: str | None
    buttons: tuple[tuple[str, str], ...]  # (action key, label), in the order shown
    number: str | None

    def dbus_list(self) -> list[str]:
        """The Notify call's flat list: key, label, key, label… ('default' first when the pop opens a page)."""
        out = [DEFAULT, self.buttons[0][1]] if self.page and self.buttons else []
        for key, label in self.buttons:
            out += [key, label]
        return out


NONE = PopActions(None, (), None)


def page_path(card: dict) -> str | None:
    """The card's record_url as a path on the daemon (an absolute one is cut to its path), or None."""
    url = card.get("record_url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        rest = url.split("//", 1)[1]
        url = "/" + rest.split("/", 1)[1] if "/" in rest else None
    if isinstance(url, str) and url.startswith("/") and not url.startswith("//") and url.isprintable():
        return url
    return None


def call_number(card: dict) -> str | None:
    """The number Call back dials: the card's own, when the daemon says it can be called; else None."""
    number = card.get("number")
    if card.get("can_call") is True and isinstance(number, str) and number.strip() and number.isprintable():
        return number.strip()
    return None


def actions_for(card: dict) -> PopActions:
    """The actions of a ringing, dialing or missed pop: Open (a known customer), Choose (several share the number),
    New customer / Add number (a caller nobody knows), plus Call back on a missed call that can be called back."""
    if card.get("event") not in POP_EVENTS:
        return NONE
    page = page_path(card)
    buttons: list[tuple[str, str]] = []
    if page:  # the button says where the page leads (a source may name a customer the lookup did not find)
        if page.startswith("/customers/new"):
            buttons.append(("new", _("New customer / Add number")))
        elif page.startswith("/customers/choose"):
            buttons.append(("choose", _("Choose")))
        else:
            buttons.append(("open", _("Open")))
    number = call_number(card) if card.get("event") == "missed" else None
    if number:
        buttons.append((CALL, _("Call back")))
    return PopActions(page, tuple(buttons), number)
