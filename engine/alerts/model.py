"""The alert record: something the operator should know, with a severity, a type and a message.

The pure decisions return alerts without a time; the bus stamps each one when it is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict


class Severity(StrEnum):
    """How loudly an alert asks for attention (a ``str``, so ``Severity.CRITICAL == "critical"``)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertRow(TypedDict):
    """One entry of the snapshot's ``alerts[]`` section."""

    time: str
    severity: str
    type: str
    message: str
    key: str  # what the alert is about: a monitor key, an account, a symbol; "" for the engine


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert; ``time`` (epoch seconds on the engine clock) is set by the bus when published.

    ``key`` names what it is about (``main:BTCUSDT:Buy``, ``mirror``, ``BTCUSDT``; empty for the
    engine as a whole): cooldown and de-duplication are per (type, key).
    """

    severity: Severity
    type: str
    message: str
    time: float | None = None
    key: str = ""
