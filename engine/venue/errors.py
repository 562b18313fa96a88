"""Typed venue errors, mapped from Bybit V5 retCodes so the engine reacts to meaning, not numbers."""

from __future__ import annotations


class VenueError(Exception):
    """Any failure reported by a venue. ``code`` is Bybit's retCode (0 when not from Bybit)."""

    retryable = False

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (retCode {self.code})" if self.code else self.message


class RateLimited(VenueError):
    """10006: too many requests. ``reset_at`` is when the budget refills (epoch seconds)."""

    retryable = True

    def __init__(self, message: str, code: int = 10006, reset_at: float | None = None) -> None:
        super().__init__(message, code)
        self.reset_at = reset_at


class InsufficientBalance(VenueError):
    """110007 (and 110004 / 110012 / 110045): not enough available balance for the order."""


class OrderNotFound(VenueError):
    """110001: the order does not exist or is already finished."""


class QtyTooSmall(VenueError):
    """10001 (qty): the quantity is below minOrderQty or rounds to zero."""


class NothingToReduce(VenueError):
    """110017, Bybit's "Reduce-only rule not satisfied" (e.g. "current position is zero, cannot fix
    reduce-only order qty"): a reduce-only order met no position to reduce. The position is flat
    (or on the other side) on the venue already: a close or a take-profit sent again would be
    refused again; the fills that flattened it, or a reconciliation, say what happened."""


class InvalidRequest(VenueError):
    """10001 and other parameter errors: the request itself is wrong; retrying will not help."""


class NotModified(InvalidRequest):
    """10001 "The order remains unchanged as the parameters entered match the existing ones": an
    amend that asks for what the order already is. What the amend wanted is on the venue (a retry
    of an amend that landed while its answer was lost gets this), so it is a success, not a refusal."""


class AuthError(VenueError):
    """10003 (invalid key) / 10004 (bad signature) / 10005 (permission) / 33004 (expired)."""


class RequestExpired(VenueError):
    """10002: the request's timestamp is outside recv_window (clock drift); retry after a resync."""

    retryable = True


class IpBanned(VenueError):
    """HTTP 403 from Bybit: the IP is banned for a while. All calls must stop."""


class TransientError(VenueError):
    """Timeouts, connection resets, HTTP 5xx, 10000 / 10016 (server busy): safe to retry."""

    retryable = True


class DuplicateOrder(VenueError):
    """110072: an order with this orderLinkId already exists (a retry that had already landed)."""


class MalformedReply(VenueError):
    """A reply the engine cannot trust: a number that does not parse or is not finite ("NaN", "inf",
    ``1e999``), an instrument whose tickSize or qtyStep is 0. Nothing is acted on from it; the loops
    treat it like any venue error. ``endpoint`` is empty until the venue names it (:meth:`at`)."""

    def __init__(self, endpoint: str, field: str, value: object, why: str = "") -> None:
        self.endpoint = endpoint
        self.field = field
        self.value = value
        self.why = why
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        where = f"{endpoint}: " if endpoint else ""
        super().__init__(f"{where}malformed reply: {field} = {shown}" + (f" ({why})" if why else ""))

    def at(self, endpoint: str) -> MalformedReply:
        """The same error, naming the endpoint (or stream topic) whose reply it was."""
        return MalformedReply(endpoint, self.field, self.value, self.why)


HEDGE_MODE_FIX = (
    "switch the account to one-way mode: Bybit → Derivatives → Position mode, "
    "or /v5/position/switch-mode mode=0"
)
"""What the operator does about a hedge-mode account (every hedge-mode message names it)."""


class HedgeModeAccount(InvalidRequest):
    """The account is in hedge mode (positions by ``positionIdx`` 1 / 2), which the engine does not
    trade: its orders are one-way (``positionIdx`` 0), which Bybit refuses there with 10001
    "position idx not match position mode"."""

    def __init__(self, message: str = "the account is in hedge mode", code: int = 10001) -> None:
        text = message if HEDGE_MODE_FIX in message else f"{message}; {HEDGE_MODE_FIX}"
        super().__init__(text, code)


_BY_CODE: dict[int, type[VenueError]] = {
    10000: TransientError,
    10001: InvalidRequest,
    10002: RequestExpired,
    10003: AuthError,
    10004: AuthError,
    10005: AuthError,
    10006: RateLimited,
    10016: TransientError,
    33004: AuthError,
    110001: OrderNotFound,
    110004: InsufficientBalance,
    110007: InsufficientBalance,
    110012: InsufficientBalance,
    110045: InsufficientBalance,
    110017: NothingToReduce,
    110072: DuplicateOrder,
}


_HEDGE_MODE_MESSAGE = "position idx not match position mode"
"""Bybit's wording (10001) for a one-way order sent to a hedge-mode account."""
_NOT_MODIFIED_MESSAGES = ("remains unchanged", "not modified")
"""Wordings of a 10001 for an amend that changes nothing (Bybit's "The order remains unchanged as the
parameters entered match the existing ones")."""
_QTY_TOO_SMALL_MESSAGES = ("minimum limit allowed", "below the minimum order qty")
"""Wordings of a 10001 about a quantity under minOrderQty (Bybit's "The number of contracts exceeds
minimum limit allowed"; the simulator's own)."""


TRIGGER_ALREADY_REACHED = frozenset({110092, 110093})
"""retCodes of a conditional whose trigger price is already reached (110092 rising, 110093 falling):
the price it watches is on the wrong side, so it would fire at once."""


def is_trigger_already_reached(error: VenueError | None) -> bool:
    """Whether ``error`` refused a trigger price for being on the wrong side of the watched price.

    The request was fine otherwise: a stop moved there waits until the price allows it."""
    return error is not None and error.code in TRIGGER_ALREADY_REACHED


def error_from_code(code: int, message: str, reset_at: float | None = None) -> VenueError:
    """Build the typed error for a Bybit retCode; unknown codes become a plain :class:`VenueError`."""
    if code == 10001 and _HEDGE_MODE_MESSAGE in message.lower():
        return HedgeModeAccount(message, code)
    if code == 10001 and any(wording in message.lower() for wording in _QTY_TOO_SMALL_MESSAGES):
        return QtyTooSmall(message, code)
    if code == 10001 and any(wording in message.lower() for wording in _NOT_MODIFIED_MESSAGES):
        return NotModified(message, code)
    cls = _BY_CODE.get(code, VenueError)
    if cls is RateLimited:
        return RateLimited(message, code, reset_at=reset_at)
    return cls(message, code)
