"""Call back from the tray: `POST /api/v1/originate` with the tray's token, so FreeSWITCH rings this operator's
phone and then dials the number (docs/originate.md). The daemon answers once the phone is picked up (or not), so
this waits up to ANSWER_WAIT seconds: call it off the GUI thread."""
from __future__ import annotations

import logging

from screenpop.tray import http, i18n
from screenpop.tray.config import TrayConfig, TrayConfigError
from screenpop.tray.i18n import gettext as _

log = logging.getLogger("screenpop.tray")

ANSWER_WAIT = 90.0  # the daemon's own wait for FreeSWITCH ([originate] ring_timeout, then its job answer) fits in it


def call_back(config: TrayConfig, number: str) -> tuple[bool, str]:
    """Ring this operator's phone, then dial number: (placed, what happened in words, for the operator to read)."""
    try:
        status, body = http.post_json(config.url("/api/v1/originate"), {"number": number},
                                      {"Authorization": f"Bearer {config.resolved_token()}",
                                       "Accept-Language": i18n.language()}, timeout=ANSWER_WAIT)  # refusals in our words
    except (OSError, ValueError, TrayConfigError) as exc:
        log.warning("call back %s: no answer from the daemon (%s)", number, exc)
        return False, _("the daemon did not answer (%(error)s)", error=exc)
    if status == 200:
        log.info("call back %s: the phone answered, dialling", number)
        return True, _("dialling %(number)s", number=number)
    error = body.get("error") if isinstance(body, dict) else None
    reason = error if isinstance(error, str) else f"HTTP {status}"
    log.warning("call back %s refused: %s", number, reason)
    return False, reason
