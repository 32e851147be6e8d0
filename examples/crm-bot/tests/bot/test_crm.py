"""CRM: subscriptions and orders in the crm schema; admin commands gated by ADMIN_USER_IDS."""

from datetime import datetime

import asyncpg
import pytest
import pytz

from ecosystem_shared.config import load_settings
from ecosystem_shared.stats import chart_days
from ecosystem_shared.testing.activity import insert_activity, synthetic_series
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_for_rows
from ecosystem_shared.texts import shared_texts

from crm_bot.settings import Settings

ADMIN = 9001
TOKEN = "123456:TEST-token"


def test_admin_user_ids_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("ADMIN_USER_IDS", " 1, 22,333,")
    assert load_settings(Settings, _env_file=None).ADMIN_USER_IDS == frozenset({1, 22, 333})
    monkeypatch.setenv("ADMIN_USER_IDS", "")
    assert load_settings(Settings, _env_file=None).ADMIN_USER_IDS == frozenset()


def test_bad_admin_user_ids_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("ADMIN_USER_IDS", "1,alice")
    with pytest.raises(SystemExit) as exited:
        load_settings(Settings, _env_file=None)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "Configuration error: ADMIN_USER_IDS: expected comma-separated numeric Telegram user ids"
    )


@pytest.mark.slow
async def test_subscribe_upserts_premium_and_records_order(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    await bot_process_factory(
        DATABASE_URL=database_url, RATE_LIMIT_SECONDS="0", ANALYTICS_FLUSH_SECONDS="0.1"
    )
    fake_api.push_message("/subscribe", user_id=71, first_name="Buyer")
    await fake_api.wait_for_call("sendMessage", chat_id=71)
    profile = await fetch(
        database_url,
        "SELECT subscription_status,"
        " subscription_expires_at - NOW() BETWEEN INTERVAL '29 days 23 hours'"
        " AND INTERVAL '30 days 1 hour' AS in_30_days"
        " FROM crm.user_profiles WHERE telegram_id = 71",
    )
    assert profile[0]["subscription_status"] == "premium"
    assert profile[0]["in_30_days"]
    orders = await fetch(database_url, "SELECT status FROM crm.orders WHERE telegram_id = 71")
    assert [row["status"] for row in orders] == ["paid"]
    await wait_for_rows(
        database_url,
        "SELECT 1 FROM shared.analytics_events"
        " WHERE telegram_id = 71 AND event_type = 'subscription_purchased'",
    )
    fake_api.push_message("/orders", user_id=71)
    listing = await fake_api.wait_for_calls("sendMessage", 2, chat_id=71)
    assert "premium-30d" in listing[-1].params["text"]


@pytest.mark.slow
async def test_admin_commands_refuse_non_admins(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    await bot_process_factory(
        DATABASE_URL=database_url, RATE_LIMIT_SECONDS="0", ADMIN_USER_IDS=str(ADMIN)
    )
    fake_api.push_message("/start", user_id=72, first_name="Target")
    await fake_api.wait_for_call("sendMessage", chat_id=72)
    await wait_for_rows(database_url, "SELECT 1 FROM shared.users WHERE telegram_id = 72")

    fake_api.push_message("/grant 72", user_id=73)
    refusal = await fake_api.wait_for_call("sendMessage", chat_id=73)
    assert refusal.params["text"]
    assert await fetch(database_url, "SELECT 1 FROM crm.user_profiles WHERE telegram_id = 72") == []

    fake_api.push_message("/grant 72", user_id=ADMIN)
    await fake_api.wait_for_call("sendMessage", chat_id=ADMIN)
    await wait_for_rows(
        database_url,
        "SELECT 1 FROM crm.user_profiles"
        " WHERE telegram_id = 72 AND subscription_status = 'premium'",
    )
    fake_api.push_message("/stats", user_id=73)
    await fake_api.wait_for_calls("sendMessage", 2, chat_id=73)
    refusals = [call.params["text"] for call in fake_api.calls("sendMessage", chat_id=73)]
    assert refusals[0] == refusals[1]

    # The admin's /stats: the digest of the last 24 h (HTML); odd /grant arguments: the usage.
    fake_api.clear_calls()
    fake_api.push_message("/stats", user_id=ADMIN)
    digest = await fake_api.wait_for_call("sendMessage", chat_id=ADMIN)
    assert digest.params.get("parse_mode") == "HTML" and digest.params["text"]
    for odd in ("abc", "²", "9" * 5000, str(2**63)):  # abc: the usage text for sure
        fake_api.push_message(f"/grant {odd}", user_id=ADMIN)
    usages = await fake_api.wait_for_calls("sendMessage", 5, chat_id=ADMIN)
    assert len({call.params["text"] for call in usages[1:]}) == 1


@pytest.mark.slow
async def test_admin_stats_answers_with_the_ecosystem_chart(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    zone = "Asia/Tokyo"
    await bot_process_factory(
        DATABASE_URL=database_url,
        RATE_LIMIT_SECONDS="0",
        ADMIN_USER_IDS=str(ADMIN),
        LANGUAGE="en",
        DIGEST_TIMEZONE=zone,
    )
    title = shared_texts("en").digest_title.partition("{")[0]
    # Nothing to draw yet: the numbers as text.
    fake_api.push_message("/stats", user_id=ADMIN)
    text = await fake_api.wait_for_call("sendMessage", chat_id=ADMIN)
    assert text.params["text"].startswith(title) and fake_api.calls("sendPhoto") == []

    days = chart_days(datetime.now(pytz.timezone(zone)), zone)
    conn = await asyncpg.connect(database_url)
    try:
        names = ["Picture Bot", "Бот заказов"]
        await insert_activity(conn, synthetic_series(names, days, scale=0.1), days, zone)
    finally:
        await conn.close()
    fake_api.push_message("/stats", user_id=ADMIN)
    photo = await fake_api.wait_for_call("sendPhoto", chat_id=ADMIN, timeout=90)
    assert photo.error_code is None and photo.params["caption"].startswith(title)
    assert photo.file("photo").data.startswith(b"\x89PNG")
    assert len(fake_api.calls("sendMessage", chat_id=ADMIN)) == 1  # the caption held the text
