"""The webhook sink: each alert as a JSON POST to ``alerts.webhook.url``.

The body is ``{"id", "time", "severity", "type", "key", "message", "folded"}`` (``time`` ISO 8601
UTC; ``folded`` how many alerts like it the cooldown held back before it), one alert per request,
compact JSON with sorted keys. Any 2xx answer is delivery; a 429 or 503 with a ``Retry-After`` in
seconds is honoured; anything else is retried with the delivery job's backoff.

**Signature.** When the environment variable named by ``alerts.webhook.secret_env`` is set (default
``OPCONSOLE_WEBHOOK_SECRET``), every request carries ``X-Opconsole-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes under that secret. A receiver recomputes it over the raw body and
compares in constant time (``hmac.compare_digest``). ``X-Opconsole-Alert-Id`` repeats the id, so a
re-delivery after a crash can be recognised without parsing the body.

A webhook URL often holds a secret of its own (Slack's and Discord's do): its path and query are
masked in errors and logs like the signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from engine.alerts.model import Severity
from engine.alerts.outbox import OutboxItem
from engine.alerts.sink import HttpPoster
from engine.core.clock import iso_utc

SIGNATURE_HEADER = "X-Opconsole-Signature"
ID_HEADER = "X-Opconsole-Alert-Id"
PER_RUN = 20
"""Requests at most per delivery run (the rest wait for the next run)."""


def body_of(item: OutboxItem) -> bytes:
    """The JSON body for one alert (compact, sorted keys: the bytes the signature covers)."""
    payload: dict[str, Any] = {
        "id": item.id,
        "time": iso_utc(item.time),
        "severity": item.severity,
        "type": item.type,
        "key": item.key,
        "message": item.message,
        "folded": item.folded,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that may be a credential: its path and query (and user info)."""
    parts = urlsplit(url)
    found = [parts.path, parts.query, parts.password or ""]
    return [p for p in found if len(p) >= 6]


class WebhookSink:
    """Delivers outbox items to one URL, signed when a secret is given (see the module doc)."""

    name = "webhook"

    def __init__(
        self,
        *,
        url: str,
        timeout_s: float,
        secret: str | None = None,
        min_severity: Severity = Severity.WARNING,
    ) -> None:
        self.min_severity = Severity(min_severity)
        self._url = url
        self._secret = secret or None
        self._http = HttpPoster(self.name, timeout_s, secrets=[*_url_secrets(url), self._secret or ""])

    @property
    def signed(self) -> bool:
        """Whether requests carry the HMAC signature."""
        return self._secret is not None

    def redact(self, text: str) -> str:
        """``text`` with the secret and the URL's credential-like parts masked."""
        return self._http.redact(text)

    def plan(self, items: Sequence[OutboxItem], now: float) -> list[list[OutboxItem]]:
        """One request per alert, at most :data:`PER_RUN` per run."""
        return [[item] for item in items[:PER_RUN]]

    async def send(self, batch: Sequence[OutboxItem], now: float) -> None:
        """POST each item of ``batch`` (one, as planned); a DeliveryError unless the answer is 2xx."""
        for item in batch:
            body = body_of(item)
            headers = {"Content-Type": "application/json", ID_HEADER: item.id}
            if self._secret is not None:
                headers[SIGNATURE_HEADER] = signature(self._secret, body)
            answer = await self._http.post(self._url, body, headers)
            if not 200 <= answer.status < 300:
                raise self._http.refused(answer)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
