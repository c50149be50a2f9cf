"""The sandbox's pure parts, without HTTP: regions, prices, the HLR rule, the request log."""

from __future__ import annotations

import phonenumbers
import pytest

from dispatcher.dev.sandbox.hlr import hlr_answer, hlr_status
from dispatcher.dev.sandbox.prices import SMS_PRICES, formula_price, sms_price
from dispatcher.dev.sandbox.regions import CALLING_CODES, REGION_CODES, region_for_e164
from dispatcher.dev.sandbox.requestlog import RequestLog
from dispatcher.dev.sandbox.validation import check_item


@pytest.mark.parametrize(("number", "region"), [
    ("+34600000100", "ES"), ("+351912345678", "PT"), ("+12125550100", "US"), ("+14165550100", "CA"),
    ("+17875550100", "PR"), ("+447700900123", "GB"), ("+441534456789", "JE"), ("+77012345678", "KZ"),
    ("+74951234567", "RU"), ("+3906698123", "VA"), ("+390612345678", "IT"), ("+5491112345678", "AR"),
    ("+80012345678", None), ("+2891234567", None),
])
def test_a_number_resolves_to_its_region_without_parsing(number: str, region: str | None) -> None:
    assert region_for_e164(number) == region


def test_regions_agree_with_phonenumbers_on_its_example_numbers() -> None:
    checked = 0
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            assert region_for_e164(e164) == phonenumbers.region_code_for_number(example), e164
            checked += 1
    assert checked > 400


def test_every_region_has_a_calling_code_and_a_price() -> None:
    assert set(REGION_CODES) == set(phonenumbers.SUPPORTED_REGIONS)
    assert set(CALLING_CODES.values()) <= set(REGION_CODES)
    for region in REGION_CODES:
        price = sms_price(region)
        assert price is not None and 0.005 <= price <= 0.1, region
    assert sms_price("ES") == 0.045
    assert sms_price("XX") is None


def test_the_formula_price_is_stable_and_in_range() -> None:
    others = [r for r in REGION_CODES if r not in SMS_PRICES]
    assert others
    for region in others:
        assert formula_price(region) == formula_price(region) == sms_price(region)
        assert 0.020 <= formula_price(region) <= 0.100
    assert len({formula_price(r) for r in others}) > 20


@pytest.mark.parametrize(("number", "status"), [("+34600000113", "invalid"), ("+34600000137", "unreachable"),
                                                ("+34600000131", "valid"), ("+34600000100", "valid"),
                                                ("+12125551337", "unreachable"), ("+447700900013", "invalid")])
def test_the_hlr_status_follows_the_last_two_digits(number: str, status: str) -> None:
    assert hlr_status(number) == status


def test_the_hlr_answer_is_deterministic_and_ported_by_the_third_to_last_digit() -> None:
    answer = hlr_answer("+34600000900", "ES")
    assert answer == hlr_answer("+34600000900", "ES")
    assert (answer.status, answer.mcc, answer.ported) == ("valid", "214", True)
    assert not hlr_answer("+34600000100", "ES").ported
    assert hlr_answer("+34600000913", "ES").network is None


def test_an_item_lists_every_problem_at_once() -> None:
    valid, errors = check_item({"to": "+34600000100", "from": "", "text": "Привет", "clientId": ""}, {"ES": 45000})
    assert valid is None
    assert errors is not None and set(errors) == {"from", "allowUnicode", "clientId"}


def test_the_request_log_pages_filters_and_drops_the_oldest_rows_when_full() -> None:
    log = RequestLog(max_rows=10)
    for i in range(25):
        log.add(1000.0 + i, "POST /sms/bulk" if i % 2 else "GET /sms", 201, i)
    assert 9 <= len(log) <= 10
    rows = log.rows()
    assert rows[-1] == {"t": 1024.0, "endpoint": "GET /sms", "status": 201, "items": 24}
    assert [r["items"] for r in log.rows(since=1022.0)] == [22, 23, 24]
    assert [r["items"] for r in log.rows(since=1022.0, offset=1, limit=1)] == [23]
    log.clear()
    assert log.rows() == []


def test_the_request_log_names_each_rows_organization_when_asked() -> None:
    log = RequestLog(max_rows=10)
    for i, org in enumerate(["acme", None, "beta", "acme"]):
        log.add(1000.0 + i, "GET /sms", 200, 0, org)
    assert [r["org"] for r in log.rows(with_org=True)] == ["acme", None, "beta", "acme"]
    assert [r["org"] for r in log.rows(since=1002.0, with_org=True)] == ["beta", "acme"]
    assert "org" not in log.rows()[0]
    for i in range(20):  # dropping the oldest rows keeps each row's organization with it
        log.add(2000.0 + i, "GET /sms", 200, i, "beta" if i % 2 else "acme")
    assert [(r["items"], r["org"]) for r in log.rows(with_org=True)[-2:]] == [(18, "acme"), (19, "beta")]
