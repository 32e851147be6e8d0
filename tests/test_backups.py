"""Backups on a real PostgreSQL: the shipped scripts dump, drop, restore and rotate, run under
BusyBox (as in their postgres:16-alpine container) and under dash with GNU tools."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from devkit.testkit import postgres
from tests.deployment import SHARED_SQL
from tests.helpers import REPO_ROOT, assert_ok, run

BACKUP = pytest.mark.xdist_group("backup")


def required_tool(name: str, why: str) -> str:
    """The path of ``name`` on PATH; the test fails saying how to get it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: {why}", pytrace=False)
    return found


def pg_tools() -> Path:
    """Directory of psql/pg_dump/pg_restore: next to the server the test kit finds, else PATH."""
    found = postgres().find_pg_bin()
    if found is not None and (found / "pg_dump").exists():
        return Path(found)
    why = "apt-get install postgresql-client (pg_dump, pg_restore and psql)"
    return Path(required_tool("pg_dump", why)).parent


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """TEST_DATABASE_URL (or DATABASE_URL), else a throwaway server (the bots' test kit)."""
    with postgres().running_server() as url:
        yield str(url)


@pytest.fixture(scope="module")
def busybox_applets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH directory where find, date, sleep ... are BusyBox, as in the postgres:16-alpine
    image the scripts run in (its /bin/sh is BusyBox ash too)."""
    busybox = required_tool(
        "busybox",
        "apt-get install busybox (the backup scripts run on BusyBox in their container"
        " and are tested with it)",
    )
    applets = tmp_path_factory.mktemp("busybox-bin")
    listed = run([busybox, "--list"], applets, timeout=30).stdout.split()
    for name in listed:
        (applets / name).symlink_to(busybox)
    return applets


# The scripts run under the ecosystem's BusyBox userland and under Debian's dash + GNU tools.
SHELLS = ["busybox", "dash"]


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@dataclass
class Cluster:
    """libpq environment for the scripts, plus helpers to inspect the server."""

    env: dict[str, str]
    db: str
    shell: list[str]

    def psql(self, sql: str, db: str | None = None) -> str:
        cmd = ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", db or self.db]
        result = subprocess.run(
            cmd, input=sql, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def databases(self) -> set[str]:
        out = self.psql(
            f"SELECT datname FROM pg_database WHERE datname LIKE '{self.db}%'", "postgres"
        )
        return set(out.split())

    def script(self, name: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        path = REPO_ROOT / "ecosystem" / "scripts" / name
        return run(
            [*self.shell, str(path), *args], REPO_ROOT, timeout=120, env={**self.env, **extra}
        )


@pytest.fixture
def cluster(
    server_url: str, tmp_path: Path, shell: str, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    parts = urlsplit(server_url)
    db = f"deploy_{uuid.uuid4().hex[:12]}"
    path = [str(pg_tools()), os.environ["PATH"]]
    if shell == "busybox":
        path.insert(1, str(request.getfixturevalue("busybox_applets")))
        command = ["busybox", "sh"]
    else:
        command = [shutil.which("dash") or "sh"]
    env = {
        "PATH": os.pathsep.join(path),
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or "postgres"),
        "PGDATABASE": db,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "LANG": "C.UTF-8",
    }
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    (tmp_path / "backups").mkdir()
    cluster = Cluster(env, db, command)
    cluster.psql(f'CREATE DATABASE "{db}"', "postgres")
    try:
        yield cluster
    finally:
        for name in cluster.databases():
            cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")


SNAPSHOT_TABLES = ("shared.users", "shared.analytics_events", "shared.digest_runs", "bot.notes")


def load_data(cluster: Cluster) -> None:
    """The shared schema exactly as the ecosystem's init scripts create it, plus bot data."""
    for sql in sorted(SHARED_SQL.glob("*.sql")):
        cluster.psql(sql.read_text(encoding="utf-8"))
    cluster.psql(
        """
        INSERT INTO shared.users (telegram_id, username, first_name, language_code)
        VALUES (1, 'anna', 'Анна', 'ru'), (2, NULL, 'Bob ''the'' Builder', 'en'),
               (9007199254740993, 'big', 'Big', NULL);
        INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data)
        SELECT 1 + g % 2, 'Picture Bot', 'photos_sent',
               jsonb_build_object('count', g, 'tags', jsonb_build_array('a', 'ü'))
          FROM generate_series(1, 250) AS g;
        INSERT INTO shared.digest_runs (job, run_date, bot_name, sent_at)
        VALUES ('daily_digest', DATE '2024-05-01', 'Picture Bot', NOW());
        CREATE SCHEMA bot;
        CREATE TABLE bot.notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL);
        INSERT INTO bot.notes (body) VALUES ('first'), (E'multi\\nline'), ('');
        """
    )


def snapshot(cluster: Cluster) -> dict[str, list[str]]:
    return {
        table: cluster.psql(f"SELECT row_to_json(t)::text FROM {table} t ORDER BY 1").splitlines()
        for table in SNAPSHOT_TABLES
    }


def dumps(cluster: Cluster) -> list[Path]:
    return sorted(Path(cluster.env["BACKUP_DIR"]).glob(f"{cluster.db}-*.dump"))


@BACKUP
def test_backup_drop_restore_gives_the_same_rows(cluster: Cluster) -> None:
    load_data(cluster)
    before = snapshot(cluster)
    assert len(before["shared.analytics_events"]) == 250

    backup = cluster.script("backup.sh")
    assert_ok(backup, "backup.sh")
    [dump] = dumps(cluster)
    assert re.fullmatch(rf"{cluster.db}-\d{{8}}T\d{{6}}Z\.dump", dump.name)
    assert not list(dump.parent.glob("*.partial"))

    cluster.psql(f'DROP DATABASE "{cluster.db}" WITH (FORCE)', "postgres")
    assert cluster.db not in cluster.databases()

    restore = cluster.script("restore.sh", str(dump))
    assert_ok(restore, "restore.sh")
    assert snapshot(cluster) == before
    assert cluster.databases() == {cluster.db}, "no scratch database left behind"
    # Sequences came back too: new rows do not collide with restored ones.
    new_id = cluster.psql(
        "INSERT INTO shared.analytics_events (bot_name, event_type) VALUES ('x', 'y') RETURNING id"
    )
    assert int(new_id) == 251


@BACKUP
def test_each_dump_is_recorded_for_analytics_retention(cluster: Cluster) -> None:
    before = cluster.psql("SELECT now()").strip()
    backup = cluster.script("backup.sh")
    assert_ok(backup, "backup.sh")
    assert "not recorded" in backup.stdout  # no shared schema yet: the dump still counts
    load_data(cluster)
    odd_dir = Path(cluster.env["BACKUP_DIR"]) / 'it\'s a "dir"'
    odd_dir.mkdir()
    backup = cluster.script("backup.sh", BACKUP_DIR=str(odd_dir))
    assert_ok(backup, "backup.sh")
    assert "recorded in shared.backups" in backup.stdout
    [dump] = sorted(odd_dir.glob(f"{cluster.db}-*.dump"))
    row = cluster.psql(
        f"SELECT file, bytes, started_at >= date_trunc('second', $${before}$$::timestamptz),"
        " started_at <= finished_at FROM shared.backups"
    ).strip()
    assert row == f"{dump}|{dump.stat().st_size}|t|t"


@BACKUP
def test_restore_over_a_live_database_keeps_the_old_one_aside(cluster: Cluster) -> None:
    load_data(cluster)
    before = snapshot(cluster)
    assert_ok(cluster.script("backup.sh"), "backup.sh")
    [dump] = dumps(cluster)
    cluster.psql("DELETE FROM shared.analytics_events WHERE id > 10; DELETE FROM bot.notes")

    # A bot still connected: the restore must cut it off rather than wait or fail.
    holder = subprocess.Popen(
        ["psql", "-X", "-c", "SELECT pg_sleep(120)"],
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while "1" not in cluster.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{cluster.db}'"
            " AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
            "postgres",
        ):
            assert time.monotonic() < deadline, "the holding connection never appeared"
            time.sleep(0.1)
        restore = cluster.script("restore.sh", str(dump))
        assert_ok(restore, "restore.sh")
        assert holder.wait(timeout=30) != 0, "the old connection was not terminated"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    assert snapshot(cluster) == before
    [aside] = cluster.databases() - {cluster.db}
    assert aside.startswith(f"{cluster.db}_before_restore_")
    assert cluster.psql("SELECT count(*) FROM bot.notes", aside).strip() == "0"
    assert aside in restore.stdout, "the script says where the previous database went"


@BACKUP
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_broken_dump_changes_nothing(cluster: Cluster, damage: str, tmp_path: Path) -> None:
    load_data(cluster)
    before = snapshot(cluster)
    assert_ok(cluster.script("backup.sh"), "backup.sh")
    [dump] = dumps(cluster)
    broken = tmp_path / "broken.dump"
    data = dump.read_bytes()
    broken.write_bytes(b"not a dump at all\n" if damage == "garbage" else data[: len(data) // 2])
    result = cluster.script("restore.sh", str(broken))
    assert result.returncode != 0
    assert "ERROR" in result.stdout
    assert snapshot(cluster) == before
    assert cluster.databases() == {cluster.db}


@BACKUP
def test_retention_deletes_only_old_dumps_of_this_database(cluster: Cluster) -> None:
    directory = Path(cluster.env["BACKUP_DIR"])
    now = time.time()
    ages = {
        f"{cluster.db}-20000101T000000Z.dump": 4,  # past the 3-day retention: deleted
        f"{cluster.db}-20000102T000000Z.dump.partial": 4,  # crashed run: deleted
        f"{cluster.db}-20000103T000000Z.dump": 2,  # within retention: kept
        "otherdb-20000101T000000Z.dump": 30,  # another database's: kept
        "notes.txt": 30,  # not a dump: kept
    }
    for name, days in ages.items():
        path = directory / name
        path.write_text("x")
        os.utime(path, (now - days * 86400, now - days * 86400))
    result = cluster.script("backup.sh", BACKUP_RETENTION_DAYS="3")
    assert_ok(result, "backup.sh")
    left = {p.name for p in directory.iterdir()}
    assert left - {p.name for p in dumps(cluster)} == {"otherdb-20000101T000000Z.dump", "notes.txt"}
    assert f"{cluster.db}-20000103T000000Z.dump" in left and len(dumps(cluster)) == 2
    assert result.stdout.count("deleted") == 2


@BACKUP
def test_health_check_follows_the_newest_dump(cluster: Cluster) -> None:
    directory = Path(cluster.env["BACKUP_DIR"])
    assert cluster.script("backup.sh", "--check").returncode == 1, "no dump yet"
    stale = directory / f"{cluster.db}-20000101T000000Z.dump"
    stale.write_text("x")
    old = time.time() - 26 * 3600  # daily interval + 1 h grace has passed
    os.utime(stale, (old, old))
    assert cluster.script("backup.sh", "--check").returncode == 1
    fresh = time.time() - 20 * 3600
    os.utime(stale, (fresh, fresh))
    assert cluster.script("backup.sh", "--check").returncode == 0


@BACKUP
def test_failed_dump_keeps_previous_dumps(cluster: Cluster) -> None:
    load_data(cluster)
    assert_ok(cluster.script("backup.sh"), "backup.sh")
    previous = dumps(cluster)
    result = cluster.script("backup.sh", PGDATABASE=f"{cluster.db}_missing")
    assert result.returncode != 0 and "pg_dump" in result.stdout
    assert dumps(cluster) == previous
    assert not list(Path(cluster.env["BACKUP_DIR"]).glob("*.partial"))


@BACKUP
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKUP_RETENTION_DAYS", "0"),
        ("BACKUP_RETENTION_DAYS", "two"),
        ("BACKUP_INTERVAL_SECONDS", "5"),
    ],
)
def test_bad_settings_are_refused(cluster: Cluster, name: str, value: str) -> None:
    result = cluster.script("backup.sh", **{name: value})
    assert result.returncode == 2 and name in result.stdout
    assert not dumps(cluster)


@BACKUP
def test_loop_dumps_at_once_and_stops_on_sigterm(cluster: Cluster) -> None:
    load_data(cluster)
    script = REPO_ROOT / "ecosystem" / "scripts" / "backup.sh"
    env = {**cluster.env, "BACKUP_INTERVAL_SECONDS": "3600"}
    proc = subprocess.Popen(
        [*cluster.shell, str(script), "--loop"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not dumps(cluster):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no dump within a minute"
            time.sleep(0.2)
        time.sleep(0.5)  # into the sleep between dumps
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "stopping" in output


def test_readme_commands_name_real_files() -> None:
    """The ecosystem README's commands refer to scripts that exist."""
    readme = (REPO_ROOT / "ecosystem" / "README.md.jinja").read_text(encoding="utf-8")
    scripts = set(re.findall(r"scripts/(\w+\.sh)", readme))
    assert {"backup.sh", "restore.sh"} <= scripts
    for script in scripts:
        assert (REPO_ROOT / "ecosystem" / "scripts" / script).is_file(), script


@BACKUP
@pytest.mark.parametrize("name", ["backup.sh", "restore.sh"])
def test_unreadable_password_file_is_refused(cluster: Cluster, tmp_path: Path, name: str) -> None:
    """PGPASSWORD_FILE (the Swarm stack's Docker secret): a missing file stops the script with
    its path named; reading a real one is proven by the stack's backup on the engine
    (tests/engine/test_stack.py, where the server asks for the password)."""
    missing = tmp_path / "absent"
    args = [str(tmp_path / "x.dump")] if name == "restore.sh" else []
    result = cluster.script(name, *args, PGPASSWORD_FILE=str(missing))
    assert result.returncode == 2, result.stdout
    assert f"PGPASSWORD_FILE: cannot read {missing}" in result.stdout
    assert not dumps(cluster)
