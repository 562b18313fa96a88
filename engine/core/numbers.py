"""Numbers and positions as an operator reads them: thousands separators, an instrument's own decimals,
and a position named in a trader's words.

One place for the console's cells and the engine's operator-facing sentences (validation errors,
alerts), so ``need 1,010,998.99 USDT`` and a table's ``95,085.3`` read the same way. The wire format
(no separators, exactly the step's decimals) stays :func:`engine.core.models.format_step`.
"""

from __future__ import annotations

import math

from engine.core.models import Monitor, step_decimals

LARGE = 1e12
"""From here on a figure is shown in scientific notation: a fat-fingered 1e300 must not print 300
digits into a one-line message."""


def fmt_number(value: float, step: float | None = None) -> str:
    """A price or quantity with thousands separators: with ``step`` (the instrument's tick size or
    qty step) exactly its decimals, so a column of them lines up (``95,085.3`` at a 0.1 tick,
    ``3,412.0500`` at 0.0001); without it, the value as it is (up to 10 significant digits)."""
    if not math.isfinite(value) or abs(value) >= LARGE:
        return f"{value:.3g}"
    if step is not None and math.isfinite(step) and step > 0:
        return f"{value:,.{step_decimals(step)}f}"
    return f"{value:,.10g}"


def fmt_usdt(value: float, signed: bool = False) -> str:
    """An amount of USDT with two decimals and thousands separators (``+`` on gains when ``signed``)."""
    sign = "+" if signed else ""
    if not math.isfinite(value) or abs(value) >= LARGE:
        return f"{value:{sign}.3g}"
    return f"{value:{sign},.2f}"


def fmt_position(
    side: str, symbol: str, account: str, size: float | None = None, step: float | None = None
) -> str:
    """A position in a trader's words, for a dialog, toast, log line or alert: ``SELL 0.45 ETHUSDT on
    main`` (the size at ``step``'s decimals; left out when unknown or flat), never the monitor key
    ``main:ETHUSDT:Sell``, which stays for machines (an alert's ``key``)."""
    amount = f" {fmt_number(size, step)}" if size else ""
    return f"{side.upper()}{amount} {symbol} on {account}"


def fmt_key(key: str, size: float | None = None, step: float | None = None) -> str:
    """A monitor key ``account:symbol:side`` in a trader's words (:func:`fmt_position`), for a
    message that has only the key."""
    account, symbol, side = [*key.split(":"), "", "", ""][:3]
    return fmt_position(side, symbol, account, size, step)


def fmt_monitor(m: Monitor) -> str:
    """A monitor's position in a trader's words (:func:`fmt_position` at its current size), the
    subject of an operator-facing alert or refusal; the alert's ``key`` keeps the machine name."""
    return fmt_position(m.side.value, m.symbol, m.account, m.size)
