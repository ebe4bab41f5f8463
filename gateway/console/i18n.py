"""Message catalogs (``messages/<lang>/*.json``, one file per persona, merged) and the choice
of language: the ``exchange_lang`` cookie, else the browser's ``Accept-Language``, else zh-CN.

Templates call ``t("key", name=value)``; a missing key shows itself (``[key]``) and the unit
test ``tests/unit/gateway/test_console_i18n.py`` fails while a key is missing in a language.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from starlette.requests import Request

LANGS = ("zh-CN", "en")
DEFAULT = "zh-CN"
COOKIE = "exchange_lang"
_DIR = Path(__file__).parent / "messages"


@cache
def catalog(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted((_DIR / lang).glob("*.json")):
        merged |= json.loads(path.read_text(encoding="utf-8"))
    return merged


def negotiate(cookie: str | None, accept_language: str) -> str:
    if cookie in LANGS:
        return str(cookie)
    ranked: list[tuple[float, str]] = []
    for part in accept_language.split(",")[:20]:
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        ranked.append((weight, tag.strip().lower()))
    for _, tag in sorted(ranked, key=lambda r: -r[0]):
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


def language(request: Request) -> str:
    return negotiate(request.cookies.get(COOKIE), request.headers.get("accept-language", ""))


class Translator:
    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._messages = catalog(lang)

    def __call__(self, key: str, **values: object) -> str:
        text = self._messages.get(key)
        if text is None:
            return f"[{key}]"
        return text.format(**values) if values else text
