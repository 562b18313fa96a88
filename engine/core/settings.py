"""Settings: the packaged ``settings.toml`` is both the documented defaults and the schema.

A user file needs only the keys it changes. Every key it sets must exist in the defaults and have the
same type; values are then checked against :data:`_RULES` (ranges, enums, formats) and the tables
whose values must rise against :data:`_ORDERED`. A problem is one
:class:`SettingsError` naming the file and the dotted key, which the CLI prints as one line before
exiting with 2. Values the operator changes from the console are written with tomli-w to an override
file in the state directory and layered on top at the next start.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import tomli_w

from engine.core.clock import parse_iso_utc
from engine.core.errors import BadInput
from engine.core.files import write_atomic

OVERRIDE_FILE = "settings.override.toml"
ENV_CONFIG = "OPCONSOLE_CONFIG"
MASK = "***"
"""What ``check-config`` prints in place of a value that must not be shown."""


class SettingsError(BadInput):
    """A settings problem: ``where`` is the file (and key), ``what`` says what is wrong."""


def packaged_defaults_path() -> Path:
    """The defaults shipped in the wheel, or the repository's settings.toml in a source checkout."""
    engine_dir = Path(__file__).resolve().parents[1]
    packaged = engine_dir / "default_settings.toml"
    return packaged if packaged.exists() else engine_dir.parent / "settings.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(str(path), "no such file") from None
    except IsADirectoryError:
        raise SettingsError(str(path), "is a directory, not a settings file") from None
    except PermissionError:
        raise SettingsError(str(path), "permission denied") from None
    except UnicodeDecodeError as exc:
        # tomllib decodes the bytes itself: a Latin-1 file would otherwise end in a traceback.
        raise SettingsError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(str(path), f"not valid TOML: {exc}") from None


# --- value rules ------------------------------------------------------------------------------

Rule = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class _Range:
    """A number within ``low``..``high`` (both inclusive); every number of the schema has one.

    When ``low`` is above zero a value of zero or less is told "must be > 0" (what the operator
    most likely got wrong), one between zero and ``low`` gets the exact bound.
    """

    low: float
    high: float

    def __call__(self, value: Any) -> str | None:
        if value < self.low:
            bound = "> 0" if self.low > 0 >= value else f">= {self.low:g}"
            return f"must be {bound}, got {value}"
        if value > self.high:
            return f"must be <= {self.high:g}, got {value}"
        return None


def _between(low: float, high: float) -> Rule:
    return _Range(low, high)


DAY_S = 86_400.0
MIN_INTERVAL_S = 0.01
"""The shortest interval or TTL: anything shorter is a typo, and a loop every 1e-300 s never lets
virtual time advance (a virtual run hangs)."""
MAX_INT64 = 2**63 - 1


def _one_of(*choices: str) -> Rule:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"must be one of {', '.join(choices)}; got {value!r}"

    return check


def _iso_time(value: Any) -> str | None:
    try:
        parse_iso_utc(value)
    except ValueError:
        return f"must be an ISO 8601 time like 2026-01-01T00:00:00Z, got {value!r}"
    return None


def _hh_mm(value: Any) -> str | None:
    match = re.fullmatch(r"(\d{2}):(\d{2})", value)
    if match and int(match[1]) < 24 and int(match[2]) < 60:
        return None
    return f"must be HH:MM (UTC), got {value!r}"


def _tp_split(value: Any) -> str | None:
    if not value:
        return "must list at least one percentage"
    if any(part <= 0 for part in value):
        return f"every part must be > 0, got {value}"
    if abs(sum(value) - 100.0) > 1e-6:
        return f"must add up to 100, got {sum(value):g}"
    return None


def _symbols(value: Any) -> str | None:
    if not value:
        return "must list at least one symbol"
    bad = [s for s in value if not re.fullmatch(r"[A-Z0-9]{2,20}USDT", s)]
    return f"not linear USDT symbols: {', '.join(bad)}" if bad else None


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def looks_like_env_name(value: str) -> bool:
    """Whether ``value`` reads as the NAME of an environment variable rather than a pasted secret.

    Letters, digits and underscores, not starting with a digit, and one case throughout
    (``BYBIT_API_KEY``, ``my_key``): Bybit keys and secrets mix upper- and lower-case letters with
    digits, and a Telegram token holds a colon, so a pasted secret fails this.
    """
    return bool(_ENV_NAME.fullmatch(value)) and value in (value.upper(), value.lower())


def _env_name(value: Any) -> str | None:
    # Never echo the value: it may be the secret itself.
    if value == "" or looks_like_env_name(value):
        return None
    return "does not look like an environment variable name (a pasted key?)"


SECRET_NAME_KEYS = ("accounts.*.*_env", "mirror.*_env", "alerts.*.*_env")
"""Settings whose value names a secret's environment variable: their values are never printed."""


def names_secret(key: str) -> bool:
    """Whether the dotted ``key`` names an environment variable holding a secret."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in SECRET_NAME_KEYS)


def _url_or_empty(value: Any) -> str | None:
    if value == "" or re.match(r"^(https?|wss?)://", value):
        return None
    return f"must be empty or an http(s)/ws(s) URL, got {value!r}"


def _host(value: Any) -> str | None:
    """A listening address: a host name or IP literal, no scheme, port or spaces."""
    if not isinstance(value, str) or not value or any(c in value for c in " /\t") or value.count(":") == 1:
        return "must be a host name or IP address (e.g. 127.0.0.1), without scheme or port"
    return None


# Patterns are fnmatch-style over dotted keys; the first matching rule applies. Every number has a
# range here (a test checks that each numeric key of settings.toml has one); NaN and infinities are
# refused for every number before any rule runs (see _coerce).
_RULES: list[tuple[str, Rule]] = [
    *((pattern, _env_name) for pattern in SECRET_NAME_KEYS),
    ("venue.kind", _one_of("sim", "bybit")),
    ("venue.network", _one_of("mainnet", "testnet", "demo")),
    ("venue.base_url", _url_or_empty),
    ("venue.ws_url", _url_or_empty),
    ("venue.threads", _between(1, 256)),
    ("venue.timeout_s", _between(0.1, 300.0)),
    ("venue.recv_window_ms", _between(1, 60_000)),
    ("venue.max_retries", _between(0, 100)),
    ("venue.ws_*_s", _between(0.1, 3_600.0)),
    ("venue.rate_*", _between(1, 100_000)),
    ("mirror.sizing", _one_of("balance_ratio", "fixed_ratio")),
    ("mirror.ratio", _between(1e-6, 1_000.0)),
    ("mirror.sync_interval_s", _between(1.0, 86_400.0)),
    ("alerts.position.*_usdt", _between(0.0, 1e12)),
    ("alerts.position.*_pct", _between(0.0, 100.0)),
    ("mirror.max_failures", _between(1, 1_000)),
    ("mirror.retry_*_s", _between(0.1, 86_400.0)),
    ("profile.*", _one_of("optimized", "baseline")),
    ("persistence.compact_max_bytes", _between(1_024, 2**40)),
    ("persistence.compact_max_records", _between(1, 100_000_000)),
    ("trading.default_approach", _one_of("fast", "conservative")),
    ("trading.trigger_by", _one_of("LastPrice", "MarkPrice", "IndexPrice")),
    ("trading.tp_split", _tp_split),
    ("trading.*_leverage", _between(1, 200)),
    ("trading.entries", _between(1, 20)),
    ("trading.*_fee_rate", _between(0.0, 0.1)),
    ("trading.*_pct", _between(0.0, 100.0)),
    ("trading.min_tp_notional", _between(0.0, 1e9)),
    ("trading.sl_retry_attempts", _between(0, 100)),
    ("monitor.urgency.*_pct", _between(1e-6, 100.0)),
    ("monitor.stream_stretch", _between(1.0, 100.0)),
    ("sim.latency", _one_of("none", "realistic")),
    ("sim.epoch", _iso_time),
    ("sim.symbols", _symbols),
    ("sim.synthetic_symbols", _between(0, 10_000)),  # engine.sim.instruments.MAX_SYNTHETIC
    ("sim.seed", _between(0, MAX_INT64)),
    ("sim.demo_trades", _between(0, 100)),
    ("sim.volatility", _between(0.0, 100.0)),
    ("sim.slippage_bps", _between(0.0, 1_000.0)),
    ("sim.balances.*", _between(1e-6, 1e12)),
    ("alerts.daily_summary_utc", _hh_mm),
    ("alerts.cooldown_s", _between(0.0, DAY_S)),
    ("alerts.outbox_max", _between(1, 100_000)),
    ("alerts.*.min_severity", _one_of("info", "warning", "critical")),
    ("alerts.telegram.per_minute", _between(1, 30)),
    ("alerts.telegram.base_url", _url_or_empty),
    ("alerts.webhook.url", _url_or_empty),
    ("alerts.history", _between(1, 1_000_000)),
    ("metrics.port", _between(0, 65_535)),
    ("metrics.host", _host),
    ("ui.refresh_hz", _between(0.01, 100.0)),
    ("ui.log_max_lines", _between(1, 10_000_000)),
    # Intervals, periods, TTLs and windows: above zero, at least MIN_INTERVAL_S, at most a week.
    ("*_s", _between(MIN_INTERVAL_S, 7 * DAY_S)),
    ("cache.ttl.*", _between(MIN_INTERVAL_S, 7 * DAY_S)),
    ("monitor.intervals.*", _between(MIN_INTERVAL_S, 7 * DAY_S)),
    # Strings without a format of their own (paths, names, chat ids): anything goes.
    ("*", lambda value: None),
]


# Rules across keys: the values of each table's keys must rise in the order listed (``strict``: each
# above the one before, else at least equal). Each key alone has its range above.
_ORDERED: list[tuple[str, tuple[str, ...], bool]] = [
    ("monitor.urgency", ("critical_pct", "active_pct", "standard_pct", "inactive_pct"), True),
    ("monitor.intervals", ("critical", "active", "standard", "inactive", "idle"), False),
    ("mirror", ("retry_first_s", "retry_max_s", "retry_slow_s"), False),
    ("alerts", ("retry_first_s", "retry_max_s"), False),
]


def _check_order(data: Mapping[str, Any], source: str) -> None:
    """Raise :class:`SettingsError` for the first :data:`_ORDERED` table whose values do not rise."""
    for table, names, strict in _ORDERED:
        node: Any = data
        for part in table.split("."):
            node = node[part]
        values = [node[name] for name in names]
        if any(low >= high if strict else low > high for low, high in pairwise(values)):
            rule = (" < " if strict else " <= ").join(names)
            got = ", ".join(f"{value:g}" for value in values)
            verb = "increase" if strict else "not decrease"
            raise SettingsError(f"{source}: {table}", f"must {verb}: {rule}, got {got}")


def _rule_for(key: str) -> Rule:
    for pattern, rule in _RULES:
        if fnmatch.fnmatchcase(key, pattern):
            return rule
    raise AssertionError("the catch-all rule matches every key")


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _coerce(key: str, default: Any, value: Any) -> Any:
    """Check ``value`` against the default's type; ints are accepted where floats are expected."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"must be a boolean (true/false), got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        # TOML reads nan and inf; an infinite balance puts "Infinity" (not JSON) into the snapshot.
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ValueError(f"must be a list, got {value!r}")
        if default:
            return [_coerce(f"{key}[{i}]", default[0], item) for i, item in enumerate(value)]
        return value
    raise ValueError(f"unsupported value {value!r}")


def _check_value(key: str, value: Any) -> str | None:
    rule = _rule_for(key)
    if isinstance(rule, _Range) and (isinstance(value, bool) or not isinstance(value, int | float)):
        return None  # the type check has run: a range only speaks to numbers
    return rule(value)


def _merge(
    base: dict[str, Any], layer: Mapping[str, Any], schema: Mapping[str, Any], source: str, prefix=""
) -> None:
    """Merge ``layer`` into ``base`` in place, validating each key against ``schema``."""
    for name, value in layer.items():
        key = f"{prefix}{name}"
        if name not in schema:
            raise SettingsError(f"{source}: {key}", "unknown key")
        expected = schema[name]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise SettingsError(f"{source}: {key}", f"must be a table, got {value!r}")
            _merge(base[name], value, expected, source, f"{key}.")
            continue
        try:
            coerced = _coerce(key, expected, value)
        except ValueError as exc:
            # The value of a secret's name may be the secret itself: never echo it.
            what = "must be a string, the name of an environment variable" if names_secret(key) else str(exc)
            raise SettingsError(f"{source}: {key}", what) from None
        # Check the value as written (so the message says "got -5", not "got -5.0").
        problem = _check_value(key, value if isinstance(coerced, float) else coerced)
        if problem:
            raise SettingsError(f"{source}: {key}", problem)
        base[name] = coerced


def _walk(tree: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _walk(value, f"{key}.")
        else:
            yield key, value


@dataclass(frozen=True)
class Settings:
    """The effective settings: defaults, then the user's file, then the console's overrides."""

    data: Mapping[str, Any]
    sources: tuple[str, ...] = field(default=())

    def get(self, dotted: str) -> Any:
        """The value at a dotted key, e.g. ``cache.ttl.optimized.positions``."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(dotted)
            node = node[part]
        return copy.deepcopy(node) if isinstance(node, dict | list) else node

    def section(self, dotted: str) -> dict[str, Any]:
        """A table as a plain (copied) dict."""
        value = self.get(dotted)
        if not isinstance(value, dict):
            raise KeyError(f"{dotted} is not a table")
        return value

    def items(self) -> Iterable[tuple[str, Any]]:
        """Every leaf as (dotted key, value), in file order."""
        return _walk(self.data)

    def with_values(self, values: Mapping[str, Any], source: str = "override") -> Settings:
        """A copy with dotted keys replaced, validated like a file."""
        layer: dict[str, Any] = {}
        for dotted, value in values.items():
            node = layer
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        data = copy.deepcopy(dict(self.data))
        _merge(data, layer, _schema(), source)
        _check_order(data, source)
        return Settings(data, (*self.sources, source))

    def to_toml(self) -> str:
        """The effective settings as TOML (what ``check-config`` prints); a secret's name that does
        not look like one (a pasted key) is masked, never printed."""
        data = copy.deepcopy(dict(self.data))
        for key, value in _walk(self.data):
            if names_secret(key) and isinstance(value, str) and _env_name(value) is not None:
                *parents, leaf = key.split(".")
                node = data
                for part in parents:
                    node = node[part]
                node[leaf] = MASK
        return tomli_w.dumps(data)

    def state_dir(self, cli_state_dir: str | os.PathLike[str] | None = None) -> Path:
        """The state directory: ``--state-dir`` when given, else ``persistence.dir``.

        Raises :class:`BadInput` naming the option or key when the path cannot be a state directory
        (empty, a NUL byte, over the system's path limits, an existing file).
        """
        if cli_state_dir is not None:
            raw, where = str(cli_state_dir), "--state-dir"
        else:
            raw, where = (
                str(self.get("persistence.dir")),
                f"{self.sources[-1] if self.sources else 'settings'}: persistence.dir",
            )
        problem = state_dir_problem(raw)
        if problem:
            raise BadInput(where, problem)
        return Path(os.path.expanduser(raw))


# The longest name the store puts inside the state directory, with its slash: the directory's own
# path must leave room for it under PATH_MAX.
_STATE_FILE_ROOM = len("/sim-exchange.journal.jsonl") + 16


def _path_limit(name: str, fallback: int) -> int:
    try:
        return int(os.pathconf("/", name))
    except (OSError, ValueError):
        return fallback


def state_dir_problem(raw: str) -> str | None:
    """Why ``raw`` cannot name a state directory, or None (pure apart from the limits and a stat)."""
    if not raw.strip():
        return "is empty"
    if "\0" in raw:
        return "contains a NUL byte"
    path = Path(os.path.expanduser(raw))
    try:
        encoded = os.fsencode(path.absolute())
    except UnicodeEncodeError:
        return "cannot be encoded as a file name"
    name_max, path_max = _path_limit("PC_NAME_MAX", 255), _path_limit("PC_PATH_MAX", 4096)
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > name_max:
        return f"a path component is {longest} bytes long, over the limit of {name_max} (NAME_MAX)"
    if len(encoded) + _STATE_FILE_ROOM > path_max:
        return (
            f"the path is {len(encoded)} bytes long; with the state files in it, it exceeds the limit "
            f"of {path_max} bytes (PATH_MAX)"
        )
    try:
        if path.exists() and not path.is_dir():
            return f"{path} is a file, not a directory"
    except OSError as exc:
        return f"cannot be examined: {exc.strerror}"
    return None


_SCHEMA_CACHE: dict[str, Any] = {}


def _schema() -> dict[str, Any]:
    if not _SCHEMA_CACHE:
        _SCHEMA_CACHE.update(_read_toml(packaged_defaults_path()))
    return _SCHEMA_CACHE


def find_config(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """The user's settings file by the lookup order, or None to use the packaged defaults alone."""
    if explicit is not None:
        return Path(explicit)
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    local = Path("settings.toml")
    if local.is_file():
        return local
    return None


def load_settings(
    config: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    apply_override: bool = True,
) -> Settings:
    """Resolve, read, layer and validate the settings. Raises :class:`SettingsError`."""
    env = os.environ if env is None else env
    defaults_path = packaged_defaults_path()
    data = copy.deepcopy(_schema())
    sources = [str(defaults_path)]
    user = find_config(config, env)
    if user is not None and user.resolve() != defaults_path.resolve():
        _merge(data, _read_toml(user), _schema(), str(user))
        _check_order(data, str(user))
        sources.append(str(user))
    settings = Settings(data, tuple(sources))
    if apply_override:
        override = settings.state_dir(state_dir) / OVERRIDE_FILE
        if override.is_file():
            _merge(data, _read_toml(override), _schema(), str(override))
            _check_order(data, str(override))
            settings = Settings(data, (*sources, str(override)))
    return settings


def save_override(state_dir: Path, values: Mapping[str, Any]) -> Path:
    """Record console changes (dotted key -> value) in the override file, atomically, mode 0600.

    The existing overrides are kept; each value is validated before anything is written.
    """
    path = state_dir / OVERRIDE_FILE
    current = _read_toml(path) if path.is_file() else {}
    probe = Settings(copy.deepcopy(_schema()))
    probe.with_values(
        {k: v for k, v in _walk(current)} | dict(values), source=str(path)
    )  # raises on a bad value
    for dotted, value in values.items():
        node = current
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    write_atomic(path, tomli_w.dumps(current))
    return path
