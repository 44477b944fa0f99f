"""A user's Alembic project written to a temporary folder, for tests of pgsieve's Alembic integration."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import alembic
from alembic.config import Config

from pgsieve.catalog import sqlalchemy_url


def make_project(root: Path, url: str, env_py: str, files: dict[str, str]) -> Config:
    """``root/env.py``, Alembic's stock ``script.py.mako``, ``root/<name>`` for each of ``files`` (e.g. ``versions/r1.py``, ``models.py``) and an
    ``alembic.config.Config`` pointing at them and at ``url`` (psycopg 3 driver); put ``root`` on sys.path to
    let env.py import the models."""
    (root / "versions").mkdir(parents=True, exist_ok=True)
    (root / "env.py").write_text(textwrap.dedent(env_py))
    # Alembic's stock template (``alembic init``): no pgvector / pgsieve imports of its own
    shutil.copy(Path(alembic.__file__).parent / "templates" / "generic" / "script.py.mako", root)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    cfg = Config()
    cfg.set_main_option("script_location", str(root))
    # the URL carries %-escapes (socket path): configparser needs them doubled
    cfg.set_main_option("sqlalchemy.url",
                        sqlalchemy_url(url).render_as_string(hide_password=False).replace("%", "%%"))
    return cfg
