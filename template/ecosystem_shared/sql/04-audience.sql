-- ============================================================================
-- Shared schema: each bot's audience (one row per bot and user)
-- ============================================================================
-- Who each bot can reach: first and last sight (analytics events of that bot), the user's
-- language, and blocked_at, set when the user blocked the bot (my_chat_member "kicked") or a
-- send answered 403 "bot was blocked by the user" / "user is deactivated"; NULL while
-- reachable (set back to NULL by my_chat_member "member"). Written by the analytics writer with
-- each batch (ecosystem_shared/analytics_store.py), read by the digest, /stats and broadcasts
-- (ecosystem_shared/audience.py).
--
-- For bots already deployed the table is filled here from shared.analytics_events (plain or
-- partitioned: the name holds every event in both cases) and, for users whose events retention
-- dropped, from shared.analytics_bot_users (07-analytics-rollups.sql) when it exists.
-- Idempotent: a second run only moves first_seen back and last_seen forward.

CREATE SCHEMA IF NOT EXISTS shared;

CREATE TABLE IF NOT EXISTS shared.bot_audience (
    bot_name TEXT NOT NULL,          -- same value analytics uses as bot_name
    telegram_id BIGINT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    language_code TEXT,
    blocked_at TIMESTAMPTZ,          -- NULL while reachable
    PRIMARY KEY (bot_name, telegram_id)
);

-- Reachable users of a bot (blocked_at IS NULL: NULLs sort last, one range) and users who
-- blocked it in a period are both index-only range counts.
CREATE INDEX IF NOT EXISTS bot_audience_blocked_idx ON shared.bot_audience (bot_name, blocked_at);

COMMENT ON TABLE shared.bot_audience IS 'Audience of each bot: one row per bot and user';
COMMENT ON COLUMN shared.bot_audience.bot_name IS 'Bot name as in shared.analytics_events.bot_name';
COMMENT ON COLUMN shared.bot_audience.first_seen IS 'First event of the user in this bot';
COMMENT ON COLUMN shared.bot_audience.last_seen IS 'Latest event of the user in this bot';
COMMENT ON COLUMN shared.bot_audience.language_code IS 'Latest language Telegram reported';
COMMENT ON COLUMN shared.bot_audience.blocked_at IS
    'When the user blocked the bot (or the account was deleted); NULL while reachable';

-- Backfill. Sorted by the key: bots starting at once lock rows in one order.
INSERT INTO shared.bot_audience AS a (bot_name, telegram_id, first_seen, last_seen, language_code)
SELECT seen.bot_name, seen.telegram_id, seen.first_seen, seen.last_seen, u.language_code
FROM (
    SELECT bot_name, telegram_id, min(created_at) AS first_seen, max(created_at) AS last_seen
    FROM shared.analytics_events
    WHERE telegram_id IS NOT NULL AND created_at IS NOT NULL
    GROUP BY bot_name, telegram_id
) seen
LEFT JOIN shared.users u ON u.telegram_id = seen.telegram_id
ORDER BY seen.bot_name, seen.telegram_id
ON CONFLICT (bot_name, telegram_id) DO UPDATE SET
    first_seen = LEAST(a.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(a.last_seen, EXCLUDED.last_seen),
    language_code = COALESCE(a.language_code, EXCLUDED.language_code);

DO $$
BEGIN
    IF to_regclass('shared.analytics_bot_users') IS NULL THEN
        RETURN;  -- a new ecosystem: 07-analytics-rollups.sql comes later, with no rows
    END IF;
    -- First sights whose events retention dropped: seen then, not since.
    INSERT INTO shared.bot_audience AS a
        (bot_name, telegram_id, first_seen, last_seen, language_code)
    SELECT b.bot_name, b.telegram_id, b.first_seen, b.first_seen, u.language_code
    FROM shared.analytics_bot_users b
    LEFT JOIN shared.users u ON u.telegram_id = b.telegram_id
    ORDER BY b.bot_name, b.telegram_id
    ON CONFLICT (bot_name, telegram_id) DO UPDATE SET
        first_seen = LEAST(a.first_seen, EXCLUDED.first_seen),
        last_seen = GREATEST(a.last_seen, EXCLUDED.last_seen),
        language_code = COALESCE(a.language_code, EXCLUDED.language_code);
END $$;
