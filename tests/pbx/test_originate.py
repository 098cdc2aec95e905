"""Click-to-call's rules without FreeSWITCH: the originate command built from [originate], FreeSWITCH's answers in
words, the per-token rate limit (the end-to-end tests are tests/daemon/test_click_to_call.py)."""
from __future__ import annotations

import pytest

from screenpop.daemon.config import OriginateConfig
from screenpop.daemon.pbx.originate import OriginateError, Originator, RateLimit, answer_in_words

from support import RULES



def originator(**config) -> Originator:
    return Originator(esl=None, config=OriginateConfig(**config), rules=lambda: RULES)  # type: ignore[arg-type]


def test_the_default_dial_string_is_stock_freeswitchs_with_the_number_in_e164():
    assert originator().command("1001", "555 9876") == (
        "originate {origination_caller_id_number=+3545559876,origination_caller_id_name='Call to +3545559876',"
        "originate_timeout=30}user/1001 +3545559876 XML default")


def test_a_configured_dial_string_and_national_numbers():
    fusion = ("{origination_caller_id_number={number},originate_timeout={timeout},domain_name=pbx.example.com}"
              "user/{extension}@pbx.example.com {number} XML pbx.example.com")
    got = originator(dial_string=fusion, number_format="national", ring_timeout=25).command("101", "+354 555 9876")
    assert got == ("originate {origination_caller_id_number=5559876,originate_timeout=25,domain_name=pbx.example.com}"
                   "user/101@pbx.example.com 5559876 XML pbx.example.com")
    assert originator(number_format="national").command("101", "+44 20 7946 0000").endswith(" +442079460000 XML default")


@pytest.mark.parametrize("number", ["+3545559876 XML default &bridge(user/1002)", "1234}user/1002", "anonymous",
                                    "5559876'}sofia/gateway/pstn/+19005550000", "", "ab\ncd", "${sip_from_user}"])
def test_only_digits_and_a_plus_ever_reach_the_dial_string(number):
    with pytest.raises(OriginateError) as caught:
        originator().command("1001", number)
    assert caught.value.status == 400


@pytest.mark.parametrize("extension", ["1001 XML evil", "1001}", "", "${x}", "a" * 40])
def test_an_extension_that_is_not_one_is_refused(extension):
    with pytest.raises(OriginateError) as caught:
        originator().command(extension, "5559876")
    assert caught.value.status == 400


def test_freeswitchs_answers_in_words():
    assert answer_in_words("+OK e9c71ace-46b8-40e4-a596-6d9cae2b3d30\n", "1001") is None
    error = answer_in_words("-ERR USER_NOT_REGISTERED\n", "1001")
    assert (error.status, error.cause) == (409, "USER_NOT_REGISTERED")
    assert "not registered" in error.message and "1001" in error.message
    assert answer_in_words("-ERR NO_ANSWER\n", "1001").message == \
        "your phone (1001) rang but was not answered, so the number was not dialled"
    assert answer_in_words("-ERR MANDATORY_IE_MISSING\n", "1001").message == \
        "FreeSWITCH could not place the call (MANDATORY_IE_MISSING)"
    odd = answer_in_words("-ERR <script>alert(1)</script>", "1001")
    assert (odd.status, odd.cause) == (502, None) and "<" not in odd.message


def test_operators_call_from_their_own_extension_only_and_admins_name_one():
    with pytest.raises(OriginateError) as caught:
        originator().place(1, False, "1001", "1002", "5559876")
    assert caught.value.status == 403
    with pytest.raises(OriginateError) as caught:
        originator().place(2, True, None, None, "5559876")
    assert (caught.value.status, caught.value.message) == (400, "extension: name the extension whose phone rings first")


def test_rate_limit_is_a_sliding_window_per_key():
    now = [0.0]
    limit = RateLimit(2, 10.0, clock=lambda: now[0])
    assert limit.take("a") == 0 and limit.take("a") == 0
    assert limit.take("a") == 10.0
    assert limit.take("b") == 0
    now[0] = 9.0
    assert limit.take("a") == 1.0
    now[0] = 10.0
    assert limit.take("a") == 0
