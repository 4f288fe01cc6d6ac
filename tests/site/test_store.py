"""The store: schema versions, migrations, and the writer's group commit."""

from __future__ import annotations

import asyncio

import pytest

from listserv.site import store


def test_an_older_database_is_migrated_in_order_when_opened(tmp_path):
    db = store.connect(tmp_path / "old.db")
    with db.atomic():  # what version 1 of listserv left on disk
        for statement in store._statements(store.MIGRATIONS[1]):
            db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    assert store.migrate(db) == 1
    assert store.schema_version(db) == store.SCHEMA_VERSION
    assert "publications" in db.table_names()
    assert store.migrate(db) == store.SCHEMA_VERSION  # a second open changes nothing


def test_a_database_from_a_newer_listserv_is_refused(tmp_path):
    db = store.connect(tmp_path / "new.db")
    store.migrate(db)
    db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    db.conn.commit()
    with pytest.raises(store.StoreError, match="newer than this listserv understands"):
        store.migrate(db)


def test_the_writer_commits_many_writes_together_and_one_failure_spoils_no_other(tmp_path):
    path = tmp_path / "w.db"
    store.migrate(store.connect(path))
    writer = store.Writer(path)

    def add(db, n):
        if n == 3:
            db.execute("INSERT INTO meta VALUES ('k3', 'x')")
            raise ValueError("this write fails after writing")
        db.execute("INSERT INTO meta VALUES (?, ?)", [f"k{n}", str(n)])
        return n

    async def main():
        return await asyncio.gather(*(writer.write(add, n) for n in range(6)),
                                    return_exceptions=True)
    try:
        results = asyncio.run(main())
    finally:
        writer.close()
    assert results[:3] == [0, 1, 2] and results[4:] == [4, 5]
    assert isinstance(results[3], ValueError)
    fresh = store.connect(path)
    keys = {row[0] for row in fresh.execute("SELECT key FROM meta WHERE key LIKE 'k%'")}
    assert keys == {"k0", "k1", "k2", "k4", "k5"}


def test_a_migration_numbered_below_the_newest_applied_one_still_runs(tmp_path):
    db = store.connect(tmp_path / "gap.db")
    store.migrate(db)
    db.execute("DELETE FROM meta WHERE key = 'migration:2'")
    db.execute("CREATE TABLE gap_probe (x)")  # nothing else changes
    db.conn.commit()
    saved = dict(store.MIGRATIONS)
    store.MIGRATIONS[2] = "CREATE TABLE gap_marker (x);"
    try:
        store.migrate(db)
    finally:
        store.MIGRATIONS.clear()
        store.MIGRATIONS.update(saved)
    assert "gap_marker" in db.table_names()
