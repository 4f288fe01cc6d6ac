"""A consistent copy of the live database, taken while `serve` runs.

`backup_database(site, target)` copies `data/listserv.db` with SQLite's
online backup API from a connection of its own: the copy is one consistent
moment of the database (WAL included), and the running server keeps writing
meanwhile (the copy goes in steps, so the writer is never held up for long).
The copy is written beside the target under a temporary name, checked
(`PRAGMA quick_check`), made mode 0600 and only then renamed into place, so
a failed or interrupted backup never leaves a half file under the target's
name. Reads the database; writes only the target. Will not overwrite an
existing file unless asked, and does not copy the rest of the site folder
(listserv.toml, templates/, charter/, data/secret, relay keys): the README
says what else to keep.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from listserv.errors import ListservError

PAGES_PER_STEP = 1024  # ~4 MB a step: the writer waits at most one step


def backup_database(site, target: Path, *, overwrite: bool = False) -> dict:
    """Copy the site's database to `target`; returns what was copied."""
    source_path = site.db_path
    if not source_path.is_file():
        raise ListservError(f"{source_path}: no database yet; nothing to back up")
    target = Path(target)
    if target.exists() and not overwrite:
        raise ListservError(f"{target} exists already; choose another name or pass --force")
    if target.resolve() == source_path.resolve():
        raise ListservError(f"{target} is the live database itself; choose another file")
    if not target.parent.is_dir():
        raise ListservError(f"{target.parent} is not a folder; create it first")
    temporary = target.with_name(f".{target.name}.partial")
    temporary.unlink(missing_ok=True)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    source = sqlite3.connect(str(source_path), timeout=30)  # reads only
    try:
        copy = sqlite3.connect(str(temporary))
        try:
            source.backup(copy, pages=PAGES_PER_STEP)
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise ListservError(f"the copy of {source_path} does not check out: {verdict}")
            counts = {table: copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                      for table in ("forums", "members", "messages", "deliveries")}
            version = copy.execute("SELECT value FROM meta WHERE key = 'schema_version'")\
                .fetchone()
        finally:
            copy.close()
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except sqlite3.Error as error:
        raise ListservError(f"backing up {source_path} failed: {error}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return {"file": str(target), "bytes": target.stat().st_size,
            "schema": int(version[0]) if version else None, **counts}
