"""Who the fake V5 server lets in: the API keys it knows, and Bybit's HMAC-SHA256 signature check.

Bybit signs REST requests over ``timestamp + api_key + recv_window + payload`` and the private
WebSocket's ``auth`` op over ``GET/realtime + expires``; both sides of the server check with
:meth:`KeyPair.signed`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyPair:
    """What the server knows of one API key: its secret and the account it trades."""

    secret: str
    account: str

    def signed(self, text: str, signature: str) -> bool:
        """Whether ``signature`` is the hex HMAC-SHA256 of ``text`` under this key's secret.

        Compared in constant time, as a real server must, so the check leaks nothing by its timing.
        """
        expected = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)


def key_pairs(keys: Mapping[str, tuple[str, str]]) -> dict[str, KeyPair]:
    """``{api_key: (secret, account)}`` as the server's table of :class:`KeyPair`."""
    return {key: KeyPair(secret, account) for key, (secret, account) in keys.items()}


def account_names(keys: Mapping[str, KeyPair]) -> list[str]:
    """The accounts the keys trade, each once, in name order."""
    return sorted({pair.account for pair in keys.values()})
