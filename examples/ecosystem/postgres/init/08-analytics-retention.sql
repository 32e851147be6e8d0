-- ============================================================================
-- Shared schema: backups on record, and the analytics partitions retention dropped
-- ============================================================================
-- scripts/backup.sh records each dump it completed in shared.backups (started_at: when
-- pg_dump began, so the dump holds every row committed before). Retention
-- (ANALYTICS_RETENTION_MONTHS, see ecosystem_shared/retention.py) drops a month's partition only
-- once a dump started after that month ended, and logs each drop in
-- shared.analytics_retention_log (one row per partition: never dropped twice). Idempotent.

CREATE SCHEMA IF NOT EXISTS shared;

CREATE TABLE IF NOT EXISTS shared.backups (
    id BIGSERIAL PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    file TEXT NOT NULL,
    bytes BIGINT
);
CREATE INDEX IF NOT EXISTS backups_started_at_idx ON shared.backups (started_at DESC);

CREATE TABLE IF NOT EXISTS shared.analytics_retention_log (
    partition_name TEXT PRIMARY KEY,
    range_start TIMESTAMPTZ NOT NULL,
    range_end TIMESTAMPTZ NOT NULL,
    events BIGINT NOT NULL,
    backup_id BIGINT REFERENCES shared.backups(id) ON DELETE SET NULL,
    bot_name TEXT,
    dropped_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE shared.backups IS 'Dumps written by scripts/backup.sh';
COMMENT ON TABLE shared.analytics_retention_log IS 'Analytics partitions dropped by retention';

-- Detach and drop one monthly partition of shared.analytics_events and log it; the number of
-- events it held, NULL when there is no such partition (dropped already).
CREATE OR REPLACE FUNCTION shared.analytics_drop_partition(
    part TEXT, range_start TIMESTAMPTZ, range_end TIMESTAMPTZ, backup BIGINT, bot TEXT
) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    events BIGINT;
BEGIN
    IF part !~ '^analytics_events_[0-9]{4}_[0-9]{2}$'
       OR to_regclass(format('shared.%I', part)) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT count(*) FROM shared.%I', part) INTO events;
    EXECUTE format('ALTER TABLE shared.analytics_events DETACH PARTITION shared.%I', part);
    EXECUTE format('DROP TABLE shared.%I', part);
    INSERT INTO shared.analytics_retention_log
        (partition_name, range_start, range_end, events, backup_id, bot_name)
    VALUES (part, range_start, range_end, events, backup, bot);
    RETURN events;
END $$;
