-- ============================================================================
-- Shared schema: daily analytics rollups and each bot's first sight of a user
-- ============================================================================
-- Per local day of a time zone (the digest's, DIGEST_TIMEZONE) and bot: events by type, active
-- users, users new to the bot, users new to the ecosystem. Written by shared.analytics_rollup_day
-- for finished days (bots do it at start and daily, see ecosystem_shared/rollups.py;
-- `python -m ecosystem_shared.stats rebuild --since YYYY-MM-DD` recomputes). Rollups are kept
-- forever, also after retention dropped the events they were made from. Idempotent.

CREATE SCHEMA IF NOT EXISTS shared;

-- When each bot first saw each user (their first event of any type in that bot), so that "new
-- to this bot" needs no anti-join over every event. Filled from the events of each day as it is
-- rolled up (first_seen only moves back). It can merge with the audience table's first_seen
-- (04-audience.sql of the broadcasts work) once both exist.
CREATE TABLE IF NOT EXISTS shared.analytics_bot_users (
    telegram_id BIGINT NOT NULL,
    bot_name TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (telegram_id, bot_name)
);
CREATE INDEX IF NOT EXISTS analytics_bot_users_first_seen_idx
    ON shared.analytics_bot_users (first_seen, bot_name);

-- Days rolled up, also those without any event (nothing to recompute).
CREATE TABLE IF NOT EXISTS shared.analytics_rollup_days (
    zone TEXT NOT NULL,
    day DATE NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (zone, day)
);

-- quantity: what the chart's "main events" add up (shared.event_quantity).
CREATE TABLE IF NOT EXISTS shared.analytics_daily_events (
    zone TEXT NOT NULL,
    day DATE NOT NULL,
    bot_name TEXT NOT NULL,
    event_type TEXT NOT NULL,
    events BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (zone, day, bot_name, event_type)
);

-- new_to_ecosystem: users whose shared.users.first_seen falls on the day, counted for the bot
-- that saw them first.
CREATE TABLE IF NOT EXISTS shared.analytics_daily_bots (
    zone TEXT NOT NULL,
    day DATE NOT NULL,
    bot_name TEXT NOT NULL,
    active_users BIGINT NOT NULL,
    new_to_bot BIGINT NOT NULL,
    new_to_ecosystem BIGINT NOT NULL,
    PRIMARY KEY (zone, day, bot_name)
);

-- The event types each bot calls its main activity (the chart's third series), written by the
-- bot at start from its own settings: template code names no bot's features.
CREATE TABLE IF NOT EXISTS shared.analytics_bots (
    bot_name TEXT PRIMARY KEY,
    main_events TEXT[] NOT NULL DEFAULT '{}',
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE shared.analytics_daily_events IS 'Events per local day (zone), bot and type';
COMMENT ON TABLE shared.analytics_daily_bots IS 'Users per local day (zone) and bot';
COMMENT ON TABLE shared.analytics_bot_users IS 'First event of each user in each bot';

-- What one event adds to a "main events" series: its numeric event_data.count (photos in one
-- photo_sent, say; negative counts as 0), else 1.
CREATE OR REPLACE FUNCTION shared.event_quantity(event_data JSONB) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(event_data -> 'count') = 'number'
                THEN greatest((event_data ->> 'count')::numeric, 0)::bigint
                ELSE 1 END
$$;

-- Whether an event counts among a bot's main activity: one of the types the bot named, or, when
-- it named none, anything but the standard user_start and error events.
CREATE OR REPLACE FUNCTION shared.is_main_event(event_type TEXT, main_events TEXT[])
RETURNS BOOLEAN LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(main_events) > 0 THEN event_type = ANY(main_events)
                ELSE event_type NOT IN ('user_start', 'error') END
$$;

-- Half-open bounds of a local day: 23 or 25 hours long on a DST change.
CREATE OR REPLACE FUNCTION shared.local_day_bounds(zone TEXT, day DATE,
                                                   OUT lo TIMESTAMPTZ, OUT hi TIMESTAMPTZ)
LANGUAGE sql STABLE AS $$
    SELECT day::timestamp AT TIME ZONE zone, (day + 1)::timestamp AT TIME ZONE zone
$$;

-- Users whose shared.users.first_seen falls in [lo, hi), counted for the bot that saw them
-- first. An aggregate over each user's rows, not ORDER BY first_seen LIMIT 1: without statistics
-- on analytics_bot_users (the first start after the upgrade fills it from empty, day by day, and
-- autovacuum analyzes it later) the planner answered the LIMIT 1 by walking the whole first_seen
-- index for every user, minutes per day at 100 M events (benchmarks/analytics_scale.py). The
-- aggregate can only be read through the user's own rows: the primary key.
CREATE OR REPLACE FUNCTION shared.analytics_first_bots(lo TIMESTAMPTZ, hi TIMESTAMPTZ)
RETURNS TABLE (first_bot TEXT, users BIGINT) LANGUAGE sql STABLE AS $$
    SELECT first.bot_name, count(*)
    FROM shared.users u
    CROSS JOIN LATERAL (
        SELECT (array_agg(b.bot_name ORDER BY b.first_seen, b.bot_name))[1] AS bot_name
        FROM shared.analytics_bot_users b WHERE b.telegram_id = u.telegram_id
    ) first
    WHERE u.first_seen >= lo AND u.first_seen < hi AND first.bot_name IS NOT NULL
    GROUP BY first.bot_name
$$;

-- (Re)compute one day: idempotent, one transaction. Days must be rolled up in order (the
-- first-seen rows of earlier days are read); rebuilds delete the first-seen rows from their
-- first day on and roll forward (see ecosystem_shared/rollups.py).
CREATE OR REPLACE FUNCTION shared.analytics_rollup_day(zone TEXT, day DATE)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    lo TIMESTAMPTZ;
    hi TIMESTAMPTZ;
BEGIN
    SELECT b.lo, b.hi INTO lo, hi FROM shared.local_day_bounds(zone, day) b;
    INSERT INTO shared.analytics_bot_users AS b (telegram_id, bot_name, first_seen)
    SELECT e.telegram_id, e.bot_name, min(e.created_at)
    FROM shared.analytics_events e
    WHERE e.created_at >= lo AND e.created_at < hi AND e.telegram_id IS NOT NULL
    GROUP BY e.telegram_id, e.bot_name
    ORDER BY e.telegram_id, e.bot_name
    ON CONFLICT (telegram_id, bot_name) DO UPDATE SET first_seen = EXCLUDED.first_seen
        WHERE EXCLUDED.first_seen < b.first_seen;

    DELETE FROM shared.analytics_daily_events d WHERE d.zone = $1 AND d.day = $2;
    INSERT INTO shared.analytics_daily_events (zone, day, bot_name, event_type, events, quantity)
    SELECT $1, $2, e.bot_name, e.event_type, count(*), sum(shared.event_quantity(e.event_data))
    FROM shared.analytics_events e
    WHERE e.created_at >= lo AND e.created_at < hi
    GROUP BY e.bot_name, e.event_type;

    DELETE FROM shared.analytics_daily_bots d WHERE d.zone = $1 AND d.day = $2;
    INSERT INTO shared.analytics_daily_bots
        (zone, day, bot_name, active_users, new_to_bot, new_to_ecosystem)
    SELECT $1, $2, bot_name, sum(active), sum(new_to_bot), sum(new_to_ecosystem)
    FROM (
        SELECT e.bot_name, count(DISTINCT e.telegram_id) AS active, 0 AS new_to_bot,
               0 AS new_to_ecosystem
        FROM shared.analytics_events e
        WHERE e.created_at >= lo AND e.created_at < hi
        GROUP BY e.bot_name
        UNION ALL
        SELECT b.bot_name, 0, count(*), 0 FROM shared.analytics_bot_users b
        WHERE b.first_seen >= lo AND b.first_seen < hi
        GROUP BY b.bot_name
        UNION ALL
        SELECT f.first_bot, 0, 0, f.users FROM shared.analytics_first_bots(lo, hi) f
    ) parts
    GROUP BY bot_name;

    INSERT INTO shared.analytics_rollup_days (zone, day) VALUES ($1, $2)
    ON CONFLICT ON CONSTRAINT analytics_rollup_days_pkey DO UPDATE SET computed_at = now();
END $$;
