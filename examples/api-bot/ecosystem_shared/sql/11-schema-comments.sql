-- ============================================================================
-- Shared schema: English descriptions of the tables 02-analytics.sql made
-- ============================================================================
-- 02-analytics.sql is kept byte for byte as released: every deployed database holds its
-- SHA-256 in shared.schema_migrations, and an edited file would never run there again (the
-- bots log that it changed). Its descriptions are replaced here instead: COMMENT ON overwrites,
-- so this file is idempotent and also safe as a docker-entrypoint-initdb.d script.
-- shared.describe_analytics_events() describes whichever table holds the events: the plain one,
-- the partitioned replacement 06-analytics-partitions.sql may still be filling, and the
-- replacement again once shared.analytics_events_swap() renamed it (ecosystem_shared/
-- partitions.py calls it after the swap, whose own table comment predates this file).

CREATE SCHEMA IF NOT EXISTS shared;

COMMENT ON TABLE shared.users IS 'Every user of any bot of the ecosystem, one row per Telegram user';
COMMENT ON COLUMN shared.users.telegram_id IS 'Telegram user id';
COMMENT ON COLUMN shared.users.first_seen IS 'First update from the user to any bot of the ecosystem';
COMMENT ON COLUMN shared.users.last_seen IS 'Latest update from the user to any bot of the ecosystem';

CREATE OR REPLACE FUNCTION shared.describe_analytics_events(events REGCLASS) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    partitioned BOOLEAN;
BEGIN
    SELECT relkind = 'p' INTO partitioned FROM pg_class WHERE oid = events;
    EXECUTE format('COMMENT ON TABLE %s IS %L', events,
        'Events of every bot of the ecosystem'
        || CASE WHEN partitioned THEN ' (partitioned by month of created_at, UTC)' ELSE '' END);
    EXECUTE format('COMMENT ON COLUMN %s.bot_name IS %L', events,
        'Name of the bot that recorded the event (e.g. Picture Bot, CRM Bot)');
    EXECUTE format('COMMENT ON COLUMN %s.event_type IS %L', events,
        'Event type (user_start, error, or one of the bot''s own)');
    EXECUTE format('COMMENT ON COLUMN %s.event_data IS %L', events,
        'Further data of the event, as JSONB');
END $$;

SELECT shared.describe_analytics_events(events)
FROM unnest(ARRAY[
    to_regclass('shared.analytics_events'),
    to_regclass('shared.analytics_events_partitioned')
]) AS events
WHERE events IS NOT NULL;
