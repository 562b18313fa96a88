"""Fake Telegram Bot API and webhook servers for the alert-delivery tests, on 127.0.0.1.

Each server records what it received and checks the ids in it: an alert id that arrives twice is
recorded in ``duplicates`` (a re-delivery the outbox should have prevented). A :class:`Recorder` can
be shared by two servers, so a sink that moves to a new server across a restart is still checked.
Answers are scripted: a queue of (status, body, headers) served before the default 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine.core.clock import Clock

ID_RE = re.compile(r"\bid (\S+)")
"""How the Telegram sink names each alert it carries in a message."""


@dataclass
class Recorder:
    """What a fake server (or several) received, on the engine clock."""

    clock: Clock
    requests: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    messages: list[tuple[float, str]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def got_ids(self, ids: list[str]) -> None:
        for alert_id in ids:
            if alert_id in self.ids:
                self.duplicates.append(alert_id)
            self.ids.append(alert_id)


class FakeServer:
    """An aiohttp server on 127.0.0.1 and an ephemeral port; ``script`` holds the next answers."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.script: list[tuple[int, Any, dict[str, str]]] = []
        self.hold: asyncio.Event | None = None
        """When set to an event, requests wait for it before being answered (a server that hangs)."""
        self._runner: web.AppRunner | None = None
        self.port = 0

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests (that reach the handler's checks) with this."""
        self.script += [(status, body, headers or {})] * times

    def _scripted(self) -> web.Response | None:
        if not self.script:
            return None
        status, body, headers = self.script.pop(0)
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, headers=headers, content_type="application/json")

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> FakeServer:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class FakeTelegram(FakeServer):
    """``POST /bot<token>/sendMessage``: checks the token and the chat, records the ids in the text."""

    def __init__(self, recorder: Recorder, token: str, chat_id: str = "4242") -> None:
        super().__init__(recorder)
        self.token = token
        self.chat_id = chat_id

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{bot}/sendMessage", self.send_message)

    async def send_message(self, request: web.Request) -> web.Response:
        self.recorder.paths.append(request.path)
        if request.match_info["bot"] != f"bot{self.token}":
            # Like a careless server, echo the URL it was called on (the token is in it).
            return web.json_response({"ok": False, "description": f"Unauthorized {request.url}"}, status=401)
        payload = await request.json()
        if self.hold is not None:
            await self.hold.wait()
        now = self.recorder.clock.now()
        self.recorder.requests.append((now, payload))
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        if str(payload.get("chat_id")) != self.chat_id:
            return web.json_response({"ok": False, "description": "Bad Request: chat not found"}, status=400)
        text = payload["text"]
        self.recorder.messages.append((now, text))
        self.recorder.got_ids(ID_RE.findall(text))
        return web.json_response({"ok": True, "result": {"message_id": len(self.recorder.messages)}})


class FakeWebhook(FakeServer):
    """``POST /hook``: verifies the HMAC signature when it knows a secret, records the ids."""

    def __init__(self, recorder: Recorder, secret: str | None = None) -> None:
        super().__init__(recorder)
        self.secret = secret
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook/{token}", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.headers.append(dict(request.headers))
        self.recorder.requests.append((self.recorder.clock.now(), {"path": request.path}))
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("X-Opconsole-Signature", ""), expected):
                return web.json_response({"error": "bad signature"}, status=401)
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        body = json.loads(raw)
        self.bodies.append(body)
        self.recorder.got_ids([body["id"]])
        return web.json_response({"ok": True})
