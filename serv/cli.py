"""`dynalauncher` command line: `serve` runs the daemon; `submit`, `ls`, `show`, `stop` talk to one.

Results go through `emit()`, the one output function (JSON with --json, else a short text).
The daemon itself never prints: it logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from serv.api import DEFAULT_URL
from serv.config import add_flags, flags_from_args, load_config
from serv.errors import ConfigError, StoreUnavailable

log = logging.getLogger("dynalauncher")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynalauncher", description="CAE solver job launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon")
    add_flags(serve)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", default=DEFAULT_URL)
        p.add_argument("--token")
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    submit = client("submit", "launch a job")
    submit.add_argument("--solver", required=True)
    submit.add_argument("--ncpu", type=int, default=1)
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("input")
    client("ls", "list jobs")
    show = client("show", "show one job")
    show.add_argument("id", type=int)
    stop = client("stop", "stop a job")
    stop.add_argument("id", type=int)
    stop.add_argument("--force", action="store_true")
    legacy = sub.add_parser(
        "import-legacy",
        help="import an API-DynaLauncher DynaLauncher.db (read only) into the job database; "
        "the daemon must be stopped",
    )
    legacy.add_argument("path", type=Path, help="the legacy DynaLauncher.db")
    legacy.add_argument("--config", type=Path, metavar="PATH", help="TOML configuration file")
    legacy.add_argument("--db", type=Path, metavar="PATH", help="SQLite job database")
    return parser


def emit(value: Any, as_json: bool) -> None:
    """The CLI's one output function."""
    if as_json:
        sys.stdout.write(json.dumps(value, indent=2) + "\n")
        return
    jobs = value if isinstance(value, list) else [value]
    for job in jobs:
        sys.stdout.write(
            f"{job['id']:>6}  {job['status']:<9}  {job['solver']:<14} ncpu={job['ncpu']:<3} "
            f"pid={job['pid'] or '-':<8} {job['input']}  {job['message']}\n"
        )


async def run_client(args: argparse.Namespace) -> Any:
    from serv.client import Client

    async with Client(args.url, token=args.token) as client:
        if args.command == "submit":
            return await client.call(
                "launch", solver=args.solver, input=str(Path(args.input).resolve()),
                ncpu=args.ncpu, priority=args.priority,
            )
        if args.command == "ls":
            return await client.call("listJobs")
        if args.command == "show":
            return await client.call("getJob", id=args.id)
        return await client.call("stop", id=args.id, force=args.force)


def serve(args: argparse.Namespace) -> int:
    from serv.daemon import serve_forever
    from serv.logs import setup_logging

    setup_logging("INFO")
    flags = flags_from_args(args)
    try:
        config = load_config(args.config, flags)
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    setup_logging(config.log.level, config.log.file)
    try:
        asyncio.run(serve_forever(config, reload=lambda: load_config(args.config, flags)))
    except StoreUnavailable as exc:
        log.error("cannot use the job database: %s", exc)
        return 3
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.server.host, config.server.port, exc.strerror or exc)
        return 4
    return 0


def import_legacy(args: argparse.Namespace) -> int:
    """`import-legacy PATH`: the legacy file is opened read-only and never changed."""
    from serv.legacy.history import LegacyImportError, import_command
    from serv.logs import setup_logging

    setup_logging("INFO")
    try:
        config = load_config(args.config, flags_from_args(args))
        report = import_command(args.path, config)
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    except StoreUnavailable as exc:
        log.error("cannot import: %s (the daemon must be stopped)", exc)
        return 3
    except LegacyImportError as exc:
        log.error("cannot import: %s", exc)
        return 2
    sys.stdout.write(report.summary() + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "import-legacy":
        return import_legacy(args)
    from websockets.exceptions import WebSocketException

    from serv.client import RpcError

    if "://" not in args.url:
        args.url = f"ws://{args.url.rstrip('/')}/"
    try:
        emit(asyncio.run(run_client(args)), args.json)
    except RpcError as exc:
        sys.stderr.write(f"error {exc.code}: {exc.message}\n")
        return 1
    except (OSError, WebSocketException) as exc:
        sys.stderr.write(f"cannot reach the daemon at {args.url}: {exc}\n")
        return 1
    return 0
