"""The ``pgsieve`` command line.

Platform commands live here (``server``, ``ext``); the collection commands (``ingest``, ``search``, ``eval``) are
parsed here and run by :mod:`pgsieve.commands`, which imports collections, encoders and ir-measures only when one
of them runs.  ``demo`` and ``bench`` belong to other modules and are imported only when called, so a missing or
broken optional piece never stops ``pgsieve server start`` from working; their arguments are passed through
untouched.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]

#: pass-through command -> candidate "module:function" entry points, first importable one wins
_PASSTHROUGH: dict[str, tuple[str, ...]] = {
    "demo": ("pgsieve.demo:main",),
    "migrate": ("pgsieve.catalog:main",),
}
_HELP = {
    "demo": "ingest a real corpus into the embedded server and run hybrid searches",
    "bench": "run the benchmark suites (bench/run.py)",
    "migrate": "create/upgrade/downgrade pgsieve's catalog (upgrade|downgrade|current|history [REV] [--dsn URL])",
}


def _load_entry(candidates: Sequence[str]) -> Callable[[list[str]], Any] | None:
    """The first ``module:function`` that exists; None when none of the modules is there (yet).

    Only a missing module itself counts as absent: an ImportError raised *inside* an existing module is a real
    bug and propagates.
    """
    for spec in candidates:
        module_name, func_name = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue
            raise
        func = getattr(module, func_name, None)
        if callable(func):
            return func
    return None


def _exit_code(result: Any) -> int:
    """Map a sub-command's return value to an exit status (None means success)."""
    if result is None or result is True:
        return 0
    if isinstance(result, int):
        return result
    return 1


def _run_passthrough(command: str, args: list[str]) -> int:
    if command == "bench":
        return _run_bench(args)
    entry = _load_entry(_PASSTHROUGH[command])
    if entry is None:
        print(f"pgsieve {command}: not available yet in this version of pgsieve", file=sys.stderr)
        return 2
    return _exit_code(entry(args))


def _run_bench(args: list[str]) -> int:
    """bench/ lives outside the package, next to ext/: run bench/run.py from the source tree."""
    from .extbuild import ExtBuildError, find_source_root

    try:
        root = find_source_root()
    except ExtBuildError as exc:
        print(f"pgsieve bench: {exc}", file=sys.stderr)
        return 2
    script = root / "bench" / "run.py"
    if not script.is_file():
        print(f"pgsieve bench: not available yet ({script} is missing)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(script), *args], cwd=root)


def _print_status(info: dict[str, Any]) -> None:
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {'' if value is None else value}")


def _cmd_server(ns: argparse.Namespace) -> int:
    from . import server

    if ns.action == "start":
        print(server.start(ns.data_dir))
        return 0
    if ns.action == "stop":
        was_running = server.stop(ns.data_dir)
        print("stopped" if was_running else "not running")
        return 0
    if ns.action == "url":
        try:
            print(server.url(ns.data_dir))
        except server.ServerError as exc:
            print(f"pgsieve server url: {exc}", file=sys.stderr)
            return 3
        return 0
    info = server.status(ns.data_dir)
    if ns.json:
        print(json.dumps(info, indent=2))
    else:
        _print_status(info)
    return 0 if info["running"] else 3  # like `pg_ctl status`: 3 = not running


def _cmd_ext(ns: argparse.Namespace) -> int:
    from .extbuild import install_extension

    result = install_extension(ns.pg_config, force=ns.force)
    state = "installed" if result["installed"] else "up to date"
    print(f"pgsieve extension {state} for {result['pg_version']} ({result['pg_config']})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgsieve", description="Retrieval inside PostgreSQL.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    srv = sub.add_parser("server", help="manage the embedded PostgreSQL server")
    srv.add_argument("action", choices=["start", "stop", "status", "url"])
    srv.add_argument("--data-dir", help="data directory (default: $PGSIEVE_DATA_DIR or the per-user data dir)")
    srv.add_argument("--json", action="store_true", help="status as JSON")
    srv.set_defaults(func=_cmd_server)

    ext = sub.add_parser("ext", help="build and install the PostgreSQL extension")
    ext.add_argument("action", choices=["install"])
    ext.add_argument("--pg-config", help="pg_config of the target PostgreSQL 15-18 (default: the embedded one)")
    ext.add_argument("--force", action="store_true", help="rebuild from clean and reinstall")
    ext.set_defaults(func=_cmd_ext)

    from .commands import add_parsers

    add_parsers(sub)

    for name, text in _HELP.items():
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER, help="passed through")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pgsieve`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Pass-through commands are dispatched before argparse, which would otherwise eat their leading options
    # (argparse.REMAINDER does not capture "-x" right after a sub-command).
    if args and args[0] in _HELP:
        return _run_passthrough(args[0], args[1:])
    ns = _parser().parse_args(args)
    from .commands import expected_errors
    from .extbuild import ExtBuildError
    from .server import ServerError

    expected: tuple[type[BaseException], ...] = (ServerError, ExtBuildError)
    if ns.command in ("ingest", "search", "eval"):
        expected += expected_errors()
    try:
        return int(ns.func(ns))
    except expected as exc:
        print(f"pgsieve {ns.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
