"""The Bybit venue's REST transport: pybit's HTTP session, called on threads, paced, retried, guarded.

pybit is synchronous, so every call runs in a bounded thread pool (``threads``) whose size also sizes
the requests connection pool (kept alive, so a call reuses a warm connection). Around each call the
transport, on the event loop:

- waits when the endpoint's rate-limit budget (from ``X-Bapi-Limit*`` headers,
  :mod:`engine.venue.bybit.limits`) is nearly spent, and hands what those headers say to ``on_limits``
  (the engine's :class:`~engine.venue.budget.CallBudget` follows them);
- maps pybit's exceptions and Bybit's retCodes to the typed :mod:`engine.venue.errors`;
- retries what is safe to retry (:mod:`engine.venue.bybit.retry`), sleeping on the injected clock;
- re-syncs its timestamp offset after a 10002 (clock drift) before retrying;
- stops every call after an HTTP 403 (IP ban), shared by all transports on the same host, and
  reports it once through ``on_critical``.

pybit's own retry loop is disabled: it blocks its worker thread while it sleeps, and hides retCodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from requests.adapters import HTTPAdapter

from engine.core.clock import Clock, now_ms, real_seconds
from engine.core.models import CallCounter
from engine.venue.budget import WindowReport
from engine.venue.bybit.keys import REDACTOR, ApiKeys
from engine.venue.bybit.limits import HEADER_RESET, RateBudget, window_report
from engine.venue.bybit.parse import ms_to_s, next_cursor
from engine.venue.bybit.retry import RetryPolicy, rate_limit_wait
from engine.venue.bybit.wire import SERVER_TIME
from engine.venue.errors import (
    AuthError,
    DuplicateOrder,
    IpBanned,
    MalformedReply,
    RateLimited,
    RequestExpired,
    TransientError,
    VenueError,
    error_from_code,
)

log = logging.getLogger("opconsole.venue.bybit")

IP_BAN_COOLDOWN_S = 600.0
"""Bybit lifts a temporary IP ban after about 10 minutes; calls stay stopped at least that long."""

_NEVER = frozenset({-1})
"""Given to pybit as its retry codes: a set it can never match (an empty one means its defaults)."""


# --- the IP-ban stop ----------------------------------------------------------------------------


class IpGuard:
    """Stops every call to one host after an HTTP 403 (an IP ban), for at least ``cooldown_s``."""

    def __init__(self, clock: Clock, cooldown_s: float = IP_BAN_COOLDOWN_S) -> None:
        self._clock = clock
        self._cooldown_s = cooldown_s
        self.banned_until: float | None = None
        self.reason = ""

    @property
    def banned(self) -> bool:
        """Whether calls are stopped now."""
        return self.banned_until is not None and self._clock.now() < self.banned_until

    def trip(self, reason: str) -> None:
        """Record a ban (from now on every call raises :class:`IpBanned` without reaching the host)."""
        self.banned_until = self._clock.now() + self._cooldown_s
        self.reason = reason

    def check(self) -> None:
        """Raise :class:`IpBanned` while the ban lasts."""
        if self.banned:
            raise IpBanned(f"calls stopped after an IP ban: {self.reason}")

    def lift(self) -> None:
        """The operator's override: allow calls again (the next one is the probe)."""
        self.banned_until = None


_IP_GUARDS: dict[str, IpGuard] = {}
"""One guard per host for the whole process: a ban hits the IP, so every account on the host stops."""


def shared_ip_guard(url: str, clock: Clock) -> IpGuard:
    """The process's guard for ``url``'s host (created on first use)."""
    host = urlsplit(url).netloc or url
    if host not in _IP_GUARDS:
        _IP_GUARDS[host] = IpGuard(clock)
    return _IP_GUARDS[host]


# --- pybit session ------------------------------------------------------------------------------


class _Session(HTTP):
    """pybit's HTTP session, signing with the transport's clock plus a measured offset to the server's.

    pybit stamps requests with the wall clock and offers no offset; after a 10002 (our clock is off)
    the transport measures the server's clock and this session applies the difference. Its ``repr``
    hides the keys (pybit's dataclass repr would print them).
    """

    def __init__(self, *, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.time_offset_ms = 0

    def __repr__(self) -> str:
        return f"<BybitSession {self.endpoint}>"

    def _prepare_headers(
        self, payload: Any, recv_window: int, content_type: str = "application/json"
    ) -> dict[str, str]:
        timestamp = now_ms(self.clock) + self.time_offset_ms
        signature = self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp)
        return {
            "Content-Type": content_type,
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-SIGN": signature,
            "X-BAPI-SIGN-TYPE": "2",
            "X-BAPI-TIMESTAMP": str(timestamp),
            "X-BAPI-RECV-WINDOW": str(recv_window),
        }


def tune_connection_pool(session: requests.Session, size: int) -> None:
    """Keep up to ``size`` warm keep-alive connections, one per worker thread, and block rather than
    open throwaway connections when all are busy; requests' own retries stay off (we retry)."""
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=size, pool_block=True, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


# --- errors -------------------------------------------------------------------------------------


def checked_result(endpoint: str, body: Any) -> dict[str, Any]:
    """The ``result`` object of a V5 reply pybit accepted; :class:`MalformedReply` naming
    ``endpoint`` and the field when the envelope is not one (no ``result`` object, a ``list`` that is
    not a list of objects), so no KeyError or TypeError ever leaves the venue."""
    if not isinstance(body, dict):
        raise MalformedReply(endpoint, "body", body, "not a JSON object")
    code = body.get("retCode", body.get("ret_code"))
    if code != 0 or isinstance(code, bool):
        raise MalformedReply(endpoint, "retCode", code, "not 0 in an accepted reply")
    result = body.get("result")
    if not isinstance(result, dict):
        raise MalformedReply(endpoint, "result", result, "missing or not an object")
    if "list" in result:
        items = result["list"]
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise MalformedReply(endpoint, "result.list", items, "not a list of objects")
    return result


def map_exception(exc: BaseException) -> tuple[VenueError, Any]:
    """pybit / requests exceptions as typed venue errors, with the response headers when there are.

    Messages are redacted: Bybit's 10004 answer quotes the signed string, API key included.
    """
    if isinstance(exc, InvalidRequestError):
        headers = exc.resp_headers or {}
        if not isinstance(exc.status_code, int):  # pybit takes any truthy retCode for an error
            return MalformedReply("", "retCode", exc.status_code, "not an integer"), headers
        reset_at = None
        if exc.status_code == 10006 and headers.get(HEADER_RESET):
            reset_at = int(headers[HEADER_RESET]) / 1000.0
        message = REDACTOR.redact(str(exc.message))
        return error_from_code(int(exc.status_code), message, reset_at=reset_at), headers
    if isinstance(exc, FailedRequestError):
        status = int(exc.status_code or 0)
        if status == 403:
            return IpBanned("HTTP 403 from Bybit: the IP is banned or rate-limited; all calls stop"), None
        if status >= 500 or status == 409:  # 409 is pybit's "could not decode JSON"
            return TransientError(f"HTTP {status}: {REDACTOR.redact(str(exc.message))}"), None
        return VenueError(f"HTTP {status}: {REDACTOR.redact(str(exc.message))}"), None
    if isinstance(exc, requests.exceptions.RequestException):
        return TransientError(f"network error: {type(exc).__name__}: {REDACTOR.redact(str(exc))}"), None
    if isinstance(exc, PermissionError):
        return AuthError(str(exc)), None
    return VenueError(f"{type(exc).__name__}: {REDACTOR.redact(str(exc))}"), None


class AlreadyPlaced(Exception):
    """A retried create got 110072: the first attempt had landed (the caller looks the order up)."""

    def __init__(self, error: DuplicateOrder) -> None:
        super().__init__(str(error))
        self.error = error


# --- call outcomes ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Answered:
    """A pybit call that returned (built on the worker, read on the loop)."""

    body: dict[str, Any]
    headers: Any
    elapsed_ms: float


@dataclass(slots=True)
class Reply:
    """A successful call's envelope, and whether it took a retry to get it."""

    body: dict[str, Any]
    retried: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> float:
        """Bybit's timestamp of the answer (epoch seconds)."""
        return ms_to_s(self.body.get("time"))


# --- the transport ------------------------------------------------------------------------------


class BybitTransport:
    """One account's pybit session behind :meth:`call` (see the module docstring).

    ``calls`` counts every request per endpoint path, ``budget`` holds the limits Bybit reported,
    ``last_rtt_ms`` is the last successful call's round trip. ``on_limits``, when set, is told what
    every private answer's limit headers say (:func:`~engine.venue.bybit.limits.window_report`).
    """

    def __init__(
        self,
        account: str,
        keys: ApiKeys,
        clock: Clock,
        *,
        testnet: bool,
        demo: bool,
        rest_url: str = "",
        threads: int = 8,
        timeout_s: float = 10.0,
        recv_window_ms: int = 5000,
        retry: RetryPolicy | None = None,
        seed: int = 0,
        ip_guard: IpGuard | None = None,
        on_critical: Callable[[str], None] | None = None,
    ) -> None:
        self.account = account
        self.clock = clock
        self.calls = CallCounter()
        self.budget = RateBudget()
        self.retry = retry or RetryPolicy()
        self.last_rtt_ms = 0.0
        self.on_critical = on_critical
        self.on_limits: Callable[[WindowReport], None] | None = None
        self._rng = random.Random(seed)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"bybit-{account}")
        self._session = _Session(
            clock=clock,
            testnet=testnet,
            demo=demo,
            api_key=keys.api_key,
            api_secret=keys.api_secret,
            # requests counts real seconds; ``timeout_s`` is the clock's (shorter on a sped-up one).
            timeout=real_seconds(clock, timeout_s),
            recv_window=recv_window_ms,
            max_retries=1,
            retry_codes=set(_NEVER),
            return_response_headers=True,
        )
        if rest_url:
            self._session.endpoint = rest_url
        tune_connection_pool(self._session.client, threads)
        self.ip_guard = ip_guard or shared_ip_guard(self._session.endpoint, clock)

    @property
    def url(self) -> str:
        """The REST origin the session calls."""
        return str(self._session.endpoint)

    @property
    def time_offset_ms(self) -> int:
        """The measured offset of the server's clock to ours (applied to every signature)."""
        return self._session.time_offset_ms

    async def run_blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking ``fn`` on the transport's worker threads (the streams connect through it too)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _blocking(self, method: str, params: dict[str, Any]) -> _Answered | BaseException:
        """On a worker thread: one pybit call; any exception is returned for the loop to map."""
        try:
            body, elapsed, headers = getattr(self._session, method)(**params)
        except BaseException as exc:
            return exc
        return _Answered(body=body, headers=headers, elapsed_ms=elapsed.total_seconds() * 1000)

    async def call(
        self, endpoint: str, method: str, params: dict[str, Any], *, idempotent: bool = True
    ) -> Reply:
        """One V5 call (pybit's ``method``) with pacing, typed errors and retries.

        ``idempotent`` permits retries after transient failures (the request may have landed). A
        retried create that finds its first attempt landed raises :class:`AlreadyPlaced`.
        """
        transient = waits = 0
        while True:
            self.ip_guard.check()
            delay = self.budget.delay(endpoint, self._server_now())
            if delay > 0:
                await self.clock.sleep(delay)
            self.budget.spend(endpoint, self._server_now())
            self.calls.hit(endpoint)
            outcome = await self.run_blocking(self._blocking, method, dict(params))
            if isinstance(outcome, _Answered):
                self.last_rtt_ms = outcome.elapsed_ms
                self.budget.update(endpoint, outcome.headers, self._server_now())
                self._report_limits(endpoint, outcome.headers, outcome.body)
                result = checked_result(endpoint, outcome.body)
                return Reply(outcome.body, retried=bool(transient or waits), result=result)
            error, headers = map_exception(outcome)
            if isinstance(error, MalformedReply):
                error = error.at(endpoint)
            self.budget.update(endpoint, headers, self._server_now())
            self._report_limits(endpoint, headers, None)
            if isinstance(error, IpBanned):
                self._ip_banned(error)
                raise error
            if isinstance(error, DuplicateOrder) and (transient or waits):
                raise AlreadyPlaced(error)
            if not self.retry.should_retry(
                error, idempotent=idempotent, transient_attempts=transient, rate_limit_waits=waits
            ):
                raise error
            if isinstance(error, RateLimited):
                waits += 1
                reset_at = error.reset_at or (self.clock.now() + 1.0)
                self.budget.exhaust(endpoint, reset_at)
                pause = rate_limit_wait(error, self.clock.now(), self._rng)
            else:
                transient += 1
                if isinstance(error, RequestExpired):
                    await self._resync_time()
                pause = self.retry.backoff(transient, self._rng)
            log.warning("%s %s: %s; retrying in %.2fs", self.account, endpoint, error, pause)
            await self.clock.sleep(pause)

    async def paged(self, endpoint: str, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a cursor-paginated list."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = dict(params, cursor=cursor) if cursor else params
            reply = await self.call(endpoint, method, page)
            batch = reply.result.get("list", [])
            items.extend(batch)
            cursor = next_cursor(reply.result)
            if not cursor or not batch:
                return items

    def _server_now(self) -> float:
        """Now on Bybit's clock (ours plus the measured offset): the limit headers' reset times are
        on it, so pacing against our own clock would wait too long, or not at all, by the offset."""
        return self.clock.now() + self.time_offset_ms / 1000.0

    def _report_limits(self, endpoint: str, headers: Any, body: Any) -> None:
        """Hand the answer's limit headers to ``on_limits``; the reset header is on the server's
        clock, so it is counted from the envelope's ``time`` (else our clock plus the measured offset)."""
        if self.on_limits is None:
            return
        answered_at = self._server_now()
        if isinstance(body, dict):
            # A malformed time is not this check's to name: the estimate serves then.
            with contextlib.suppress(MalformedReply):
                answered_at = ms_to_s(body.get("time")) or answered_at
        report = window_report(endpoint, headers, answered_at)
        if report is not None:
            self.on_limits(report)

    def _ip_banned(self, error: IpBanned) -> None:
        first = not self.ip_guard.banned
        self.ip_guard.trip(str(error))
        if first:
            log.critical("%s: %s", self.account, error)
            if self.on_critical is not None:
                self.on_critical(f"{self.account}: {error}")

    async def _resync_time(self) -> None:
        """Measure the server clock's offset to ours (``/v5/market/time``) and sign with it."""
        before = now_ms(self.clock)
        self.calls.hit(SERVER_TIME)
        outcome = await self.run_blocking(self._blocking, "get_server_time", {})
        after = now_ms(self.clock)
        if not isinstance(outcome, _Answered):
            return
        result = outcome.body.get("result", {})
        server_ms = int(result.get("timeNano", 0)) // 1_000_000 or int(outcome.body.get("time", 0))
        if server_ms:
            self._session.time_offset_ms = server_ms - (before + after) // 2
            log.warning("%s: clock offset to Bybit is %d ms; re-synced", self.account, self.time_offset_ms)

    def close(self) -> None:
        """Stop the worker threads and close the connection pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.client.close()
