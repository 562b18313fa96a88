"""The ``opconsole`` command line.

Every command resolves settings the same way, turns bad input into one line on stderr
(``opconsole: <where>: <what>``) with exit code 2, and never shows a traceback to the operator.
The heavy imports (Textual, aiohttp, the engine) happen inside each command, so ``check-config`` and
``--help`` stay instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.core.errors import BadInput, EngineFailure
from engine.core.settings import Settings, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def fail(where: str, what: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print the contract's one-line error and return the exit code."""
    print(f"opconsole: {where}: {what}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors follow the one-line ``opconsole: <where>: <what>`` contract."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("opconsole").strip() or "usage"
        print(f"opconsole: {where}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {text}")
    return value


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="settings file (default: lookup order)")
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (default: persistence.dir)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line interface (pinned in CONTRACTS.md)."""
    parser = _Parser(
        prog="opconsole",
        description="Operator console for a Bybit TP/SL trading engine "
        "(embedded simulated exchange by default).",
    )
    _add_config_args(parser)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run the engine (headless) for a while and write a snapshot")
    _add_config_args(run)
    run.add_argument("--headless", action="store_true", help="no UI (required for now)")
    run.add_argument("--clock", choices=("real", "virtual"), default="real", help="time source")
    run.add_argument(
        "--duration",
        type=_positive_float,
        metavar="S",
        help="seconds to run (simulated with --clock virtual)",
    )
    run.add_argument("--scenario", metavar="FILE", help="scenario TOML: trades to open")
    run.add_argument("--snapshot-out", metavar="FILE", help="write the snapshot JSON here on exit")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    check = sub.add_parser("check-config", help="validate settings and print the effective values")
    check.add_argument("file", nargs="?", help="settings file (default: lookup order)")
    check.add_argument("--state-dir", metavar="DIR", help="also layer this state directory's overrides")

    server = sub.add_parser("sim-server", help="fake Bybit V5 server over the simulator")
    _add_config_args(server)
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=_port, default=0, help="0 picks a free port (printed)")

    bench = sub.add_parser("bench", help="A/B benchmark of the optimized and baseline profiles")
    _add_config_args(bench)
    bench.add_argument("--positions", type=_positive_int, default=15)
    bench.add_argument("--minutes", type=_positive_float, default=60.0)
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--profile", choices=("both", "baseline", "optimized"), default="both")
    bench.add_argument("--json", action="store_true", help="machine-readable output")

    soak = sub.add_parser("soak", help="fault-injection soak over simulated hours")
    _add_config_args(soak)
    soak.add_argument("--hours", type=_positive_float, default=1.0)
    soak.add_argument("--seed", type=int, default=7)
    soak.add_argument("--json", action="store_true", help="machine-readable output")
    soak.add_argument(
        "--speed",
        type=_positive_float,
        default=30.0,
        help="simulated seconds per real second while the engine runs (default 30)",
    )

    export = sub.add_parser("export-trades", help="write the trade ledger as CSV")
    _add_config_args(export)
    export.add_argument("file", help="CSV file to write ('-' for stdout)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return _checked(load_settings(getattr(args, "config", None), getattr(args, "state_dir", None)))


def _checked(settings: Settings) -> Settings:
    """``settings`` after the checks core cannot make (see :mod:`engine.runtime.settings_check`)."""
    from engine.runtime.settings_check import check_settings  # light: the sim's catalog, no engine

    return check_settings(settings)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _checked(load_settings(args.file, args.state_dir))
    print("# effective settings, from: " + " <- ".join(settings.sources))
    print(settings.to_toml(), end="")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    if not args.headless:
        raise BadInput("run", "only --headless is supported; run plain `opconsole` for the console")
    _setup_logging(args.verbose)
    from engine.commands.headless import HeadlessOptions, run_headless

    settings = _settings(args)
    options = HeadlessOptions(
        clock=args.clock,
        duration_s=args.duration,
        scenario=Path(args.scenario) if args.scenario else None,
        snapshot_out=Path(args.snapshot_out) if args.snapshot_out else None,
    )
    return run_headless(settings, settings.state_dir(args.state_dir), options)


def cmd_console(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from console.app import run_console

    return run_console(settings, settings.state_dir(args.state_dir))


def cmd_sim_server(args: argparse.Namespace) -> int:
    _setup_logging(False)
    from engine.sim.server.command import main as server_main

    settings = _settings(args)
    return server_main(settings, args.host, args.port, settings.state_dir(args.state_dir))


def cmd_bench(args: argparse.Namespace) -> int:
    _settings(args)  # bad settings are reported before any child process starts
    from engine.commands.bench.command import run_bench
    from engine.commands.bench.workload import Workload

    workload = Workload(positions=args.positions, minutes=args.minutes, seed=args.seed, config=args.config)
    return run_bench(workload, args.profile, as_json=args.json)


def cmd_soak(args: argparse.Namespace) -> int:
    settings = _settings(args)  # bad settings are reported before anything starts
    from engine.commands.soak.command import run_soak

    # The soak's files (its market, the engines' state directories, logs): --state-dir, or a new
    # temporary directory (never persistence.dir: the soak must not touch the operator's state).
    work = settings.state_dir(args.state_dir) if args.state_dir else None
    return run_soak(args.config, args.hours, args.seed, as_json=args.json, speed=args.speed, work_dir=work)


def cmd_export_trades(args: argparse.Namespace) -> int:
    from engine.commands.export import export_trades

    settings = _settings(args)
    return export_trades(settings.state_dir(args.state_dir), args.file)


COMMANDS: dict[str | None, Callable[[argparse.Namespace], int]] = {
    None: cmd_console,
    "run": cmd_run,
    "check-config": cmd_check_config,
    "sim-server": cmd_sim_server,
    "bench": cmd_bench,
    "soak": cmd_soak,
    "export-trades": cmd_export_trades,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opconsole`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BadInput as exc:
        return fail(exc.where, exc.what)
    except EngineFailure as exc:
        return fail(exc.where, exc.what, EXIT_FAILURE)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
