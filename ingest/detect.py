"""Sensitive-data detection: pure checks of single values and of column headers.

Values: Chinese resident identity numbers (GB 11643-1999, ISO 7064 MOD 11-2 check digit and a
real birth date), mainland mobile numbers, bank card numbers (Luhn), e-mail addresses, unified
social credit codes (GB 32100-2015, MOD 31 check character). Headers: names and addresses, in
English or Chinese. A column is a kind when most of its sampled values are (``column_kind``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from enum import StrEnum


class Kind(StrEnum):
    RESIDENT_ID = "resident_id"
    MOBILE = "mobile"
    BANK_CARD = "bank_card"
    EMAIL = "email"
    CREDIT_CODE = "credit_code"  # unified social credit code of an organisation
    PERSON_NAME = "person_name"
    ADDRESS = "address"


# What each kind proposes: classification, and whether it may identify the data subject.
PROPOSAL: dict[Kind, tuple[str, bool]] = {
    Kind.RESIDENT_ID: ("secret", True),
    Kind.BANK_CARD: ("secret", False),
    Kind.MOBILE: ("sensitive", True),
    Kind.EMAIL: ("sensitive", True),
    Kind.CREDIT_CODE: ("sensitive", False),
    Kind.PERSON_NAME: ("sensitive", False),
    Kind.ADDRESS: ("sensitive", False),
}
# The one field that names the data subject: the strongest identifier found.
SUBJECT_PREFERENCE = (Kind.RESIDENT_ID, Kind.MOBILE, Kind.EMAIL)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID = re.compile(r"^\d{17}[\dX]$")


def resident_id_check(first17: str) -> str:
    """The check character of an 18-character resident identity number."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def is_resident_id(value: str) -> bool:
    v = value.strip().upper()
    if not _ID.match(v) or resident_id_check(v[:17]) != v[17]:
        return False
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    return date(1880, 1, 1) <= born <= date.today()


_MOBILE = re.compile(r"^(?:\+?86)?1[3-9]\d{9}$")
_SEPARATORS = re.compile(r"[\s-]")


def is_mobile(value: str) -> bool:
    return bool(_MOBILE.match(_SEPARATORS.sub("", value.strip())))


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


_CARD = re.compile(r"^[1-9]\d{11,18}$")


def is_bank_card(value: str) -> bool:
    v = _SEPARATORS.sub("", value.strip())
    return bool(_CARD.match(v)) and luhn_ok(v) and not is_resident_id(v)


_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value.strip()))


_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC = re.compile(rf"^[{_USCC_CHARS}]{{18}}$")


def credit_code_check(first17: str) -> str:
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def is_credit_code(value: str) -> bool:
    v = value.strip().upper()
    return bool(_USCC.match(v)) and credit_code_check(v[:17]) == v[17] and not v.isdigit()


VALUE_CHECKS = (
    (Kind.RESIDENT_ID, is_resident_id),
    (Kind.CREDIT_CODE, is_credit_code),
    (Kind.MOBILE, is_mobile),
    (Kind.BANK_CARD, is_bank_card),
    (Kind.EMAIL, is_email),
)

_NAME_HEADERS = re.compile(
    r"(^|_)(name|full_?name|first_?name|last_?name|surname|given_?name|contact)($|_)|"
    r"姓名|名字|联系人|户主|法定代表人|负责人|申请人|患者",
    re.IGNORECASE,
)
_NOT_A_PERSON = re.compile(r"(org|company|dept|file|user_?name|host|product|单位|机构|公司|企业)")
_ADDRESS_HEADERS = re.compile(r"address|addr|street|residence|住址|地址|住所|户籍", re.IGNORECASE)


def header_kind(header: str) -> Kind | None:
    """Names and addresses cannot be told from their values: the header says it."""
    if _ADDRESS_HEADERS.search(header):
        return Kind.ADDRESS
    if _NAME_HEADERS.search(header) and not _NOT_A_PERSON.search(header.lower()):
        return Kind.PERSON_NAME
    return None


def value_kind(value: str) -> Kind | None:
    for kind, check in VALUE_CHECKS:
        if check(value):
            return kind
    return None


def column_kind(header: str, values: Iterable[str], threshold: float = 0.8) -> Kind | None:
    """The kind most sampled values are (at least ``threshold`` of the non-empty ones), else
    what the header says."""
    counts: dict[Kind, int] = {}
    seen = 0
    for v in values:
        if not v.strip():
            continue
        seen += 1
        if (k := value_kind(v)) is not None:
            counts[k] = counts.get(k, 0) + 1
    if seen and counts:
        kind, n = max(counts.items(), key=lambda kv: kv[1])
        if n / seen >= threshold:
            return kind
    return header_kind(header)
