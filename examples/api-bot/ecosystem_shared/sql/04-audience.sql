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
-- shared.bot_audience_counts keeps each bot's members and blocked users as deltas written by
-- statement triggers, so that the digest's "reachable now" does not count the whole audience.
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

-- Users who blocked a bot in a period: a range count over the blocked rows only.
CREATE INDEX IF NOT EXISTS bot_audience_blocked_idx ON shared.bot_audience (bot_name, blocked_at)
    WHERE blocked_at IS NOT NULL;

COMMENT ON TABLE shared.bot_audience IS 'Audience of each bot: one row per bot and user';
COMMENT ON COLUMN shared.bot_audience.bot_name IS 'Bot name as in shared.analytics_events.bot_name';
COMMENT ON COLUMN shared.bot_audience.first_seen IS 'First event of the user in this bot';
COMMENT ON COLUMN shared.bot_audience.last_seen IS 'Latest event of the user in this bot';
COMMENT ON COLUMN shared.bot_audience.language_code IS 'Latest language Telegram reported';
COMMENT ON COLUMN shared.bot_audience.blocked_at IS
    'When the user blocked the bot (or the account was deleted); NULL while reachable';

-- Members and blocked users per bot, kept as deltas by statement triggers (one row per
-- statement that changed them, whoever wrote: the analytics writer, a broadcast, a script), so
-- that "reachable now" is a sum over a few rows instead of a count over the whole audience.
-- Insert-only: concurrent writers never wait for each other here. The rows of a bot are summed
-- into one by shared.bot_audience_compact_counts() (the bots' daily maintenance).
CREATE TABLE IF NOT EXISTS shared.bot_audience_counts (
    bot_name TEXT NOT NULL,
    members BIGINT NOT NULL,
    blocked BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS bot_audience_counts_bot_idx ON shared.bot_audience_counts (bot_name);
COMMENT ON TABLE shared.bot_audience_counts IS
    'Deltas of shared.bot_audience rows (members) and blocked rows per bot; sum them';

CREATE OR REPLACE FUNCTION shared.bot_audience_count_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO shared.bot_audience_counts (bot_name, members, blocked)
    SELECT bot_name, count(*), count(blocked_at) FROM new_rows GROUP BY bot_name;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION shared.bot_audience_count_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO shared.bot_audience_counts (bot_name, members, blocked)
    SELECT bot_name, sum(members), sum(blocked)
    FROM (
        SELECT bot_name, count(*) AS members, count(blocked_at) AS blocked
        FROM new_rows GROUP BY bot_name
        UNION ALL
        SELECT bot_name, -count(*), -count(blocked_at) FROM old_rows GROUP BY bot_name
    ) changes
    GROUP BY bot_name
    HAVING sum(members) <> 0 OR sum(blocked) <> 0;  -- sights of known users change nothing
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION shared.bot_audience_count_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO shared.bot_audience_counts (bot_name, members, blocked)
    SELECT bot_name, -count(*), -count(blocked_at) FROM old_rows GROUP BY bot_name;
    RETURN NULL;
END $$;

-- The counts of rows stored before the triggers existed (none in a new ecosystem).
INSERT INTO shared.bot_audience_counts (bot_name, members, blocked)
SELECT bot_name, count(*), count(blocked_at) FROM shared.bot_audience
WHERE NOT EXISTS (SELECT 1 FROM shared.bot_audience_counts)
GROUP BY bot_name;

-- Replaced when this file runs again (an init script after a restore, say): one of each.
DROP TRIGGER IF EXISTS bot_audience_counted_insert ON shared.bot_audience;
CREATE TRIGGER bot_audience_counted_insert AFTER INSERT ON shared.bot_audience
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.bot_audience_count_inserted();
DROP TRIGGER IF EXISTS bot_audience_counted_update ON shared.bot_audience;
CREATE TRIGGER bot_audience_counted_update AFTER UPDATE ON shared.bot_audience
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.bot_audience_count_updated();
DROP TRIGGER IF EXISTS bot_audience_counted_delete ON shared.bot_audience;
CREATE TRIGGER bot_audience_counted_delete AFTER DELETE ON shared.bot_audience
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION shared.bot_audience_count_deleted();

-- One row per bot (the sum of its deltas); rows added meanwhile by other transactions stay
-- (they are not in this statement's snapshot), so the sums never change. Rows left now.
CREATE OR REPLACE FUNCTION shared.bot_audience_compact_counts() RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    left_now BIGINT;
BEGIN
    WITH gone AS (DELETE FROM shared.bot_audience_counts RETURNING *)
    INSERT INTO shared.bot_audience_counts (bot_name, members, blocked)
    SELECT bot_name, sum(members), sum(blocked) FROM gone GROUP BY bot_name;
    GET DIAGNOSTICS left_now = ROW_COUNT;
    RETURN left_now;
END $$;

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
