"""A delivery sink (Telegram, the webhook): what the delivery job asks of it, and the HTTP both share.

A sink plans which pending outbox items go out now and in which requests (:meth:`Sink.plan`: the
Telegram sink folds a burst into one message), sends one request per batch (:meth:`Sink.send`) and
says why it failed with a :class:`DeliveryError` whose text is safe to log and show: the sink has
removed its secrets from it (a Bot API URL holds the bot token; a webhook URL may hold one too).

:class:`HttpPoster` is the one HTTP client of the sinks: one aiohttp session, a total timeout per
request (a slow or dead server costs the delivery job that long, never the trading), and every
transport error turned into a redacted :class:`DeliveryError` with its cause dropped, since
aiohttp's exceptions print the URL.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from engine.alerts.model import Severity
from engine.alerts.outbox import OutboxItem
from engine.venue.bybit.keys import REDACTOR, install_redaction, redact

log = logging.getLogger("opconsole.alerts.delivery")

SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

MAX_ERROR_CHARS = 300
"""A failure's text is cut to this (a server's error page can be long)."""


class DeliveryError(Exception):
    """A sink could not deliver. ``str()`` is redacted; ``retry_after`` (seconds) when the server
    said when to try again (Telegram's ``parameters.retry_after``, an HTTP ``Retry-After``)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Sink(Protocol):
    """A delivery channel for the outbox's items."""

    name: str
    min_severity: Severity

    def plan(self, items: Sequence[OutboxItem], now: float) -> list[list[OutboxItem]]:
        """The requests to send now, each a batch of ``items`` (oldest first); [] to wait."""
        ...

    async def send(self, batch: Sequence[OutboxItem], now: float) -> None:
        """Deliver one batch; :class:`DeliveryError` when it was not accepted."""
        ...

    def redact(self, text: str) -> str:
        """``text`` without the sink's secrets."""
        ...

    async def close(self) -> None:
        """Release the HTTP session."""
        ...


def wants(min_severity: Severity, severity: Severity | str) -> bool:
    """Whether an alert of ``severity`` reaches a sink whose threshold is ``min_severity``."""
    return SEVERITY_RANK[Severity(severity)] >= SEVERITY_RANK[min_severity]


def parse_retry_after(value: object) -> float | None:
    """Seconds from a ``retry_after`` number or an HTTP ``Retry-After`` in seconds; None when absent
    or not a sane number (an HTTP-date ``Retry-After`` is not read: the backoff applies then)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds <= 86_400 else None


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What a server answered: status, headers and body text."""

    status: int
    headers: Mapping[str, str]
    text: str


class HttpPoster:
    """POSTs for one sink, with a total timeout and redacted errors.

    ``secrets`` are masked in every error this raises, and registered with the process's log
    redactor (:func:`engine.venue.bybit.keys.install_redaction`), so a log line from aiohttp itself
    never shows them either.
    """

    def __init__(self, name: str, timeout_s: float, secrets: Sequence[str] = ()) -> None:
        self.name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._secrets = tuple(s for s in secrets if s)
        self._session: aiohttp.ClientSession | None = None
        if self._secrets:
            install_redaction(*self._secrets)
            # Our own delivery logger too: its records are not seen by the filters of its parents.
            if REDACTOR not in log.filters:
                log.addFilter(REDACTOR)

    def redact(self, text: str) -> str:
        """``text`` with this sink's secrets masked."""
        return redact(text, self._secrets)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """POST ``body``; any transport failure (refused, timed out, reset) is a DeliveryError."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(url, data=body, headers=dict(headers)) as response:
                text = await response.text(errors="replace")
                return HttpAnswer(response.status, dict(response.headers), text)
        except TimeoutError:
            raise DeliveryError(f"{self.name}: no answer within {self._timeout.total:g} s") from None
        except Exception as exc:  # aiohttp's errors print the URL: never let one out as it is
            raise DeliveryError(self.error_text(exc)) from None

    def error_text(self, exc: BaseException) -> str:
        """``exc`` as a short, redacted line."""
        text = f"{self.name}: {type(exc).__name__}: {exc}"
        return self.redact(text)[:MAX_ERROR_CHARS]

    def refused(self, answer: HttpAnswer, retry_after: float | None = None) -> DeliveryError:
        """The error for a server that answered but did not accept (its body cut and redacted)."""
        body = " ".join(answer.text.split())
        message = self.redact(f"{self.name}: HTTP {answer.status}: {body}")[:MAX_ERROR_CHARS]
        if retry_after is None:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        return DeliveryError(message, retry_after)

    async def close(self) -> None:
        """Close the session (the sink can still be used: a new one is opened on demand)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = [
    "DeliveryError",
    "HttpAnswer",
    "HttpPoster",
    "Sink",
    "parse_retry_after",
    "wants",
]
