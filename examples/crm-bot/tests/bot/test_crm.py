"""CRM: subscriptions and orders in the crm schema; admin commands gated by ADMIN_USER_IDS."""

from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_for_rows

ADMIN = 9001


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
