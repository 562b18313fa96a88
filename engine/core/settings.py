"""Settings: the packaged ``settings.toml`` is both the documented defaults and the schema.

A user file needs only the keys it changes. Every key it sets must exist in the defaults and have the
same type; values are then checked against :data:`_RULES` (ranges, enums, formats). A problem is one
:class:`SettingsError` naming the file and the dotted key, which the CLI prints as one line before
exiting with 2. Values the operator changes from the console are written with tomli-w to an override
file in the state directory and layered on top at the next start.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from engine.core.clock import parse_iso_utc
from engine.core.errors import BadInput
from engine.core.files import write_atomic

OVERRIDE_FILE = "settings.override.toml"
ENV_CONFIG = "OPCONSOLE_CONFIG"


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
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(str(path), f"not valid TOML: {exc}") from None


# --- value rules ------------------------------------------------------------------------------

Rule = Callable[[Any], str | None]


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


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


def _url_or_empty(value: Any) -> str | None:
    if value == "" or re.match(r"^(https?|wss?)://", value):
        return None
    return f"must be empty or an http(s)/ws(s) URL, got {value!r}"


# Patterns are fnmatch-style over dotted keys; the first matching rule applies.
_RULES: list[tuple[str, Rule]] = [
    ("venue.kind", _one_of("sim", "bybit")),
    ("venue.network", _one_of("mainnet", "testnet", "demo")),
    ("venue.base_url", _url_or_empty),
    ("venue.ws_url", _url_or_empty),
    ("venue.max_retries", _non_negative),
    ("mirror.sizing", _one_of("balance_ratio", "fixed_ratio")),
    ("profile.*", _one_of("optimized", "baseline")),
    ("trading.default_approach", _one_of("fast", "conservative")),
    ("trading.trigger_by", _one_of("LastPrice", "MarkPrice", "IndexPrice")),
    ("trading.tp_split", _tp_split),
    ("trading.*_fee_rate", _non_negative),
    ("trading.*_pct", _non_negative),
    ("trading.min_tp_notional", _non_negative),
    ("trading.sl_retry_attempts", _non_negative),
    ("sim.latency", _one_of("none", "realistic")),
    ("sim.epoch", _iso_time),
    ("sim.symbols", _symbols),
    ("sim.seed", _non_negative),
    ("sim.demo_trades", _non_negative),
    ("sim.volatility", _non_negative),
    ("sim.slippage_bps", _non_negative),
    ("alerts.daily_summary_utc", _hh_mm),
    ("alerts.telegram.base_url", _url_or_empty),
    ("alerts.webhook.url", _url_or_empty),
    ("monitor.urgency.*", _positive),
    # Everything numeric that is left (TTLs, intervals, sizes, rates, balances) must be > 0.
    ("*", _positive),
]


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
    if isinstance(value, bool) or (isinstance(value, str) and rule in (_positive, _non_negative)):
        return None
    if isinstance(value, list) and rule in (_positive, _non_negative):
        return None
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
            raise SettingsError(f"{source}: {key}", str(exc)) from None
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
        return Settings(data, (*self.sources, source))

    def to_toml(self) -> str:
        """The effective settings as TOML (what ``check-config`` prints)."""
        return tomli_w.dumps(dict(self.data))

    def state_dir(self, cli_state_dir: str | os.PathLike[str] | None = None) -> Path:
        """The state directory: ``--state-dir`` when given, else ``persistence.dir``."""
        raw = cli_state_dir if cli_state_dir is not None else self.get("persistence.dir")
        return Path(os.path.expanduser(str(raw)))


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
        sources.append(str(user))
    settings = Settings(data, tuple(sources))
    if apply_override:
        override = settings.state_dir(state_dir) / OVERRIDE_FILE
        if override.is_file():
            _merge(data, _read_toml(override), _schema(), str(override))
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
