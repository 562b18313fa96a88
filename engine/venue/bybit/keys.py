"""API keys for the Bybit venue: where they come from, and keeping them out of every log line.

Keys come from the environment variables whose NAMES are in the settings (``accounts.main.api_key_env``
…, ``mirror.api_key_env`` …) or from a TOML key file (``api_key`` / ``api_secret``) that must be
readable by its owner only (0600). They are never logged nor persisted: :class:`ApiKeys` does not
print its secret, and :func:`install_redaction` puts a filter on the loggers that could see them
(pybit's, websocket-client's, urllib3's, ours and the root handlers) that masks both values.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.errors import BadInput
from engine.core.settings import Settings, looks_like_env_name

MASK = "***"

_SETTINGS_PREFIX = {"main": "accounts.main", "mirror": "mirror"}

# A logger's filters see only the records created on it (not its children's), so each one is named.
_WATCHED_LOGGERS = (
    "opconsole.venue.bybit",
    "opconsole.venue.bybit.stream",
    "pybit",
    "pybit._http_manager",
    "pybit._websocket_stream",
    "pybit.unified_trading",
    "websocket",
    "urllib3",
    "urllib3.connectionpool",
    "aiohttp.access",
    "aiohttp.server",
)


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """An API key pair. ``repr`` shows neither value."""

    api_key: str
    api_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ApiKeys(api_key={MASK})"


def settings_prefix(account: str) -> str:
    """Where an account's key settings live: ``accounts.main`` or ``mirror``."""
    try:
        return _SETTINGS_PREFIX[account]
    except KeyError:
        raise BadInput("accounts", f"unknown account {account!r} (main or mirror)") from None


def read_key_file(path: Path, where: str) -> ApiKeys:
    """Read a 0600 TOML key file; refuse one that group or others can read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BadInput(where, f"key file {path} does not exist") from None
    except OSError as exc:
        raise BadInput(where, f"key file {path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):  # a directory (or a device) would fail below with a traceback
        raise BadInput(where, f"key file {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInput(where, f"key file {path} must be readable by its owner only (chmod 600)")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except UnicodeDecodeError:
        # Name the file, never its bytes: they are (part of) a secret.
        raise BadInput(where, f"key file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError:
        raise BadInput(where, f"key file {path} is not valid TOML") from None
    except OSError as exc:
        raise BadInput(where, f"key file {path} cannot be read: {exc.strerror or exc}") from None
    key, secret = data.get("api_key"), data.get("api_secret")
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        raise BadInput(where, f"key file {path} needs string values api_key and api_secret")
    return ApiKeys(key, secret)


def load_keys(settings: Settings, account: str, env: Mapping[str, str] | None = None) -> ApiKeys:
    """The account's keys: its key file when one is set, else its two environment variables."""
    env = os.environ if env is None else env
    prefix = settings_prefix(account)
    key_file = settings.get(f"{prefix}.key_file")
    if key_file:
        return read_key_file(Path(os.path.expanduser(key_file)), f"{prefix}.key_file")
    key_env = settings.get(f"{prefix}.api_key_env")
    secret_env = settings.get(f"{prefix}.api_secret_env")
    # Settings refuse these already; a value that slipped past (built in code) is still never echoed.
    for name, value in (("api_key_env", key_env), ("api_secret_env", secret_env)):
        if not value:
            raise BadInput(
                f"{prefix}.{name}", f"is empty: name an environment variable or set {prefix}.key_file"
            )
        if not looks_like_env_name(value):
            raise BadInput(
                f"{prefix}.{name}", "does not look like an environment variable name (a pasted key?)"
            )
    missing = [name for name in (key_env, secret_env) if not env.get(name)]
    if missing:
        raise BadInput(
            f"{prefix}.api_key_env",
            f"environment variable {' and '.join('$' + m for m in missing)} not set "
            f"(or set {prefix}.key_file to a 0600 TOML file)",
        )
    return ApiKeys(env[key_env], env[secret_env])


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by :data:`MASK` (longest first, so no fragment survives)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


class SecretRedactor(logging.Filter):
    """A logging filter that masks registered secrets in the message and the exception text."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: str) -> None:
        """Register more values to mask (short values are ignored: they would mask innocent text)."""
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 6)

    def redact(self, text: str) -> str:
        """``text`` with the registered secrets masked."""
        with self._lock:
            secrets = tuple(self._secrets)
        return redact(text, secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)
            record.exc_info = None
        return True


REDACTOR = SecretRedactor()
"""The process's one redactor: logging is process-wide, so the filter that guards it is too."""


def install_redaction(*secrets: str) -> SecretRedactor:
    """Mask ``secrets`` in every log line from the loggers that could carry them.

    A logger's filters only see records created on that logger, so the filter goes on each logger
    that may log a request or a response, and on the root logger's handlers for everything else.
    """
    REDACTOR.add(*secrets)
    for name in _WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
    return REDACTOR
