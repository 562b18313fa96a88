"""The Telegram sink: alerts as Bot API ``sendMessage`` calls to one chat.

``POST {alerts.telegram.base_url}/bot<token>/sendMessage`` with ``chat_id`` and ``text``. The token
comes from the environment variable named by ``alerts.telegram.token_env``, never from the settings;
it is in the URL, so every error and log line is redacted before it is written (see
:class:`~engine.alerts.sink.HttpPoster`), and it is never stored or shown.

Telegram allows about 20 messages a minute to one chat and answers 429 with
``parameters.retry_after`` beyond that. The sink keeps a budget of :data:`PER_MINUTE` messages per
sliding minute on the engine clock (:class:`FloodBudget`); when more alerts wait than the budget
allows, they are folded into one message (``5 alerts: ...``, a line each), so a burst is one message.
Every message names the id of each alert it carries (``id <id>``), so a receiver can tell a
re-delivery after a crash from a new alert.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence

from engine.alerts.model import Severity
from engine.alerts.outbox import OutboxItem
from engine.alerts.sink import HttpPoster, parse_retry_after

PER_MINUTE = 20
"""Messages per minute to one chat (Telegram's documented flood limit is about that)."""
WINDOW_S = 60.0
MAX_CHARS = 4096
"""Telegram's limit on a message's text."""
LINE_CHARS = 400
"""An alert's line in a folded message is cut to this, so a folded message holds many alerts."""


class FloodBudget:
    """How many messages may go out now: at most ``per_window`` in any ``window_s`` on the clock."""

    def __init__(self, per_window: int = PER_MINUTE, window_s: float = WINDOW_S) -> None:
        if per_window < 1:
            raise ValueError(f"per_window must be >= 1, not {per_window!r}")
        self.per_window = per_window
        self.window_s = window_s
        self._sent: deque[float] = deque()

    def available(self, now: float) -> int:
        """Messages that may be sent at ``now``."""
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()
        return max(0, self.per_window - len(self._sent))

    def use(self, now: float) -> None:
        """Count one message sent (or attempted: a refused one counts against Telegram's limit too)."""
        self._sent.append(now)


def _head(item: OutboxItem) -> str:
    head = f"[{item.severity.upper()}] {item.type}"
    return f"{head} {item.key}" if item.key else head


def format_one(item: OutboxItem) -> str:
    """One alert as a message of its own."""
    lines = [_head(item), item.message]
    if item.folded:
        lines.append(f"(+{item.folded} more like it held back by the cooldown)")
    lines.append(f"id {item.id}")
    return "\n".join(lines)[:MAX_CHARS]


def format_line(item: OutboxItem) -> str:
    """One alert as a line of a folded message (the message cut, the id always kept)."""
    extra = f" (+{item.folded})" if item.folded else ""
    tail = f"{extra} · id {item.id}"
    text = f"{_head(item)}: {' '.join(item.message.split())}"
    room = LINE_CHARS - len(tail)
    if len(text) > room:
        text = text[: room - 1] + "…"
    return text + tail


def _fold_header(count: int) -> str:
    return f"{count} alerts:"


def format_batch(batch: Sequence[OutboxItem]) -> str:
    """The text of one message: one alert as itself, several folded a line each."""
    if len(batch) == 1:
        return format_one(batch[0])
    return "\n".join([_fold_header(len(batch)), *(format_line(item) for item in batch)])


def fold(items: Sequence[OutboxItem]) -> list[list[OutboxItem]]:
    """``items`` in as few folded messages as fit in :data:`MAX_CHARS` each, in order."""
    groups: list[list[OutboxItem]] = []
    current: list[OutboxItem] = []
    size = len(_fold_header(len(items)))  # the longest header any group can have
    for item in items:
        line = len(format_line(item)) + 1
        if current and size + line > MAX_CHARS:
            groups.append(current)
            current, size = [], len(_fold_header(len(items)))
        current.append(item)
        size += line
    if current:
        groups.append(current)
    return groups


def plan_messages(items: Sequence[OutboxItem], allowed: int) -> list[list[OutboxItem]]:
    """The messages to send now: one per alert when the budget allows them all; else the alerts
    folded, at most ``allowed`` messages (the rest wait for the budget)."""
    if allowed <= 0 or not items:
        return []
    if len(items) <= allowed:
        return [[item] for item in items]
    return fold(items)[:allowed]


class TelegramSink:
    """Delivers outbox items to one Telegram chat (see the module doc)."""

    name = "telegram"

    def __init__(
        self,
        *,
        token: str,
        chat_id: str,
        base_url: str,
        timeout_s: float,
        min_severity: Severity = Severity.WARNING,
        per_minute: int = PER_MINUTE,
    ) -> None:
        self.min_severity = Severity(min_severity)
        self.chat_id = chat_id
        self.budget = FloodBudget(per_minute)
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        self._http = HttpPoster(self.name, timeout_s, secrets=[token])

    def redact(self, text: str) -> str:
        """``text`` with the token masked."""
        return self._http.redact(text)

    def plan(self, items: Sequence[OutboxItem], now: float) -> list[list[OutboxItem]]:
        """Within the flood budget, folding a burst (see :func:`plan_messages`)."""
        return plan_messages(items, self.budget.available(now))

    async def send(self, batch: Sequence[OutboxItem], now: float) -> None:
        """One ``sendMessage``; a 429 carries its ``retry_after`` in the :class:`DeliveryError`."""
        self.budget.use(now)
        body = json.dumps({"chat_id": self.chat_id, "text": format_batch(batch)}).encode()
        answer = await self._http.post(self._url, body, {"Content-Type": "application/json"})
        try:
            reply = json.loads(answer.text)
        except ValueError:
            reply = None
        if 200 <= answer.status < 300 and isinstance(reply, dict) and reply.get("ok") is True:
            return
        retry_after = None
        if isinstance(reply, dict) and isinstance(reply.get("parameters"), dict):
            retry_after = parse_retry_after(reply["parameters"].get("retry_after"))
        raise self._http.refused(answer, retry_after)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()
