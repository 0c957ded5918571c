"""A change another process commits reaches this process's cached reads, within the bound."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.registry import sqlite as sqlite_registry
from supervisor.registry.sqlite import BACKSTOP_SECONDS, CHANGES_SUFFIX, FRESHNESS_SECONDS, Registry

REPO = Path(__file__).resolve().parent.parent


def _in_another_process(db: Path, code: str) -> None:
    script = (
        f"from pathlib import Path\nfrom supervisor.registry.sqlite import Registry\nr = Registry(Path({str(db)!r}))\n"
    )
    subprocess.run([sys.executable, "-c", script + code], cwd=REPO, check=True, timeout=60)


def test_revocation_by_another_process_reaches_a_cached_reader_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server caches revoked token ids and tenants; the CLI writes through its own
    # process. A revoked token or a suspended tenant must not be served even once more.
    # SQLite's own check is put out of the way: only the shared counter can tell.
    monkeypatch.setattr(sqlite_registry, "BACKSTOP_SECONDS", 3600.0)
    db = tmp_path / "registry.db"
    server = Registry(db)
    _in_another_process(db, "r.create_tenant('acme')")
    assert "jti-1" not in server.revoked_token_ids()
    assert not server.get_tenant("acme").suspended
    _in_another_process(db, "r.revoke_token('jti-1')\nr.set_suspended('acme', True)")
    assert "jti-1" in server.revoked_token_ids()  # no wait: the next read sees it
    assert server.get_tenant("acme").suspended


def test_change_made_around_the_registry_is_seen_within_the_backstop(tmp_path: Path) -> None:
    # Something other than IRE (the sqlite3 shell) writes the file: no counter is bumped,
    # and SQLite's own change count is what the reader goes by.
    db = tmp_path / "registry.db"
    server = Registry(db)
    server.create_tenant("acme")
    assert "jti-2" not in server.revoked_token_ids()
    with sqlite3.connect(db) as other:
        other.execute("INSERT INTO revoked_tokens VALUES ('jti-2', '', 0)")
    time.sleep(BACKSTOP_SECONDS * 2)
    assert "jti-2" in server.revoked_token_ids()


def test_without_the_counter_sqlite_is_asked_every_millisecond(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    (tmp_path / f"registry.db{CHANGES_SUFFIX}").mkdir()  # the counter cannot be opened
    server = Registry(db)
    cli = Registry(db)
    cli.create_tenant("acme")
    assert "jti-3" not in server.revoked_token_ids()
    cli.revoke_token("jti-3")
    time.sleep(FRESHNESS_SECONDS * 5)
    assert "jti-3" in server.revoked_token_ids()


def test_concurrent_writers_never_lose_a_bump(tmp_path: Path) -> None:
    # A lost bump would leave a reader that saw the other writer's value blind to a change.
    db = tmp_path / "registry.db"
    Registry(db).close()
    start = time.time() + 2.0  # all three bump at the same time, not one after another
    bumps = f"import time\ntime.sleep(max(0.0, {start} - time.time()))\nfor _ in range(20000):\n    r._changes.bump()\n"
    script = (
        f"from pathlib import Path\nfrom supervisor.registry.sqlite import Registry\nr = Registry(Path({str(db)!r}))\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script + bumps], cwd=REPO) for _ in range(3)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    reader = Registry(db)
    assert reader._changes is not None and reader._changes.value() == 60000


def test_own_writes_are_seen_at_once(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.db")
    registry.create_tenant("acme")
    assert "jti-4" not in registry.revoked_token_ids()
    registry.revoke_token("jti-4")
    assert "jti-4" in registry.revoked_token_ids()  # no wait: this connection cleared its cache
