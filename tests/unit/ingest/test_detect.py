"""Sensitive-data detection: checksums right and wrong, edge cases, headers."""

from __future__ import annotations

import pytest

from ingest import detect
from ingest.detect import Kind


def make_id(prefix: str = "110105", born: str = "19491001", seq: str = "123") -> str:
    first = prefix + born + seq
    return first + detect.resident_id_check(first)


def test_resident_id_checksum_and_birth_date() -> None:
    good = make_id()
    assert detect.is_resident_id(good)
    assert detect.is_resident_id(good.lower())  # x as check character
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    assert not detect.is_resident_id(wrong)
    assert not detect.is_resident_id(make_id(born="19490230"))  # 30 February
    assert not detect.is_resident_id(make_id(born="29990101"))  # born in the future
    assert not detect.is_resident_id(good[:17])  # 17 characters
    assert not detect.is_resident_id(good + "1")


def test_resident_id_with_x_check_character() -> None:
    for seq in range(1000):
        first = f"11010519491001{seq:03d}"
        if detect.resident_id_check(first) == "X":
            assert detect.is_resident_id(first + "X")
            assert detect.is_resident_id(first + "x")
            assert not detect.is_resident_id(first + "0")
            return
    pytest.fail("no X check character in 1000 sequence numbers")


def test_known_published_example() -> None:
    # GB 11643-1999's own worked example: 11010519491231002X.
    assert detect.is_resident_id("11010519491231002X")
    assert not detect.is_resident_id("110105194912310021")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("13800138000", True),
        ("+86 138 0013 8000", True),
        ("86-13800138000", True),
        ("12800138000", False),  # no 12x prefix
        ("1380013800", False),
        ("010-12345678", False),
    ],
)
def test_mobile(value: str, ok: bool) -> None:
    assert detect.is_mobile(value) is ok


def test_bank_card_luhn() -> None:
    assert detect.is_bank_card("6222 0212 3456 7890 127") is detect.luhn_ok("6222021234567890127")
    assert detect.is_bank_card("4111111111111111")  # the classic Luhn-valid test number
    assert not detect.is_bank_card("4111111111111112")
    assert not detect.is_bank_card("0111111111111116")  # leading zero
    assert not detect.is_bank_card(make_id("622202"))  # an identity number is not a card


def test_email() -> None:
    assert detect.is_email("zhang.san@example.gov.cn")
    assert not detect.is_email("zhang.san@")
    assert not detect.is_email("not an email")


def test_unified_social_credit_code() -> None:
    assert detect.is_credit_code("91350100M000100Y43")  # a published valid example
    first = "91110000600037341"
    code = first + detect.credit_code_check(first)
    assert detect.is_credit_code(code)
    bad = code[:17] + ("0" if code[17] != "0" else "1")
    assert not detect.is_credit_code(bad)
    assert not detect.is_credit_code("91350100I000100Y43")  # I is not in the alphabet


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("姓名", Kind.PERSON_NAME),
        ("full_name", Kind.PERSON_NAME),
        ("Name", Kind.PERSON_NAME),
        ("联系人", Kind.PERSON_NAME),
        ("家庭住址", Kind.ADDRESS),
        ("home_address", Kind.ADDRESS),
        ("单位名称", None),  # an organisation's name
        ("company_name", None),
        ("username", None),
        ("amount", None),
    ],
)
def test_header_kinds(header: str, kind: Kind | None) -> None:
    assert detect.header_kind(header) == kind


def test_column_kind_needs_most_values() -> None:
    ids = [make_id(seq=f"{i:03d}") for i in range(10)]
    assert detect.column_kind("x", ids) == Kind.RESIDENT_ID
    assert detect.column_kind("x", [*ids[:7], "a", "b", "c"]) is None  # 70 % < 80 %
    assert detect.column_kind("x", [*ids, "", " "]) == Kind.RESIDENT_ID  # empties ignored
    assert detect.column_kind("手机号", ["13800138000", "13900139000"]) == Kind.MOBILE
    assert detect.column_kind("姓名", ["测试甲", "测试乙"]) == Kind.PERSON_NAME
    assert detect.column_kind("x", []) is None
