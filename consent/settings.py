"""Settings of the consent package (``EXCHANGE_`` environment variables)."""

from __future__ import annotations

from datetime import date

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_", extra="ignore")

    agreement_response_working_days: int = Field(
        default=10, ge=1, description="Working days a steward has to answer a request."
    )
    agreement_overdue_check_seconds: float = Field(
        default=300, gt=0, description="How often overdue requests are looked for."
    )
    holidays: list[date] = Field(
        default_factory=list, description="Public holidays (JSON list of ISO dates)."
    )
