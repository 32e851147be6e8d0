-- ============================================================================
-- Shared schema: shared.analytics_events partitioned by month on created_at
-- ============================================================================
-- 02-analytics.sql made a plain table. This file builds its partitioned replacement and the
-- functions that keep it: monthly partitions (UTC months) created ahead by the bots
-- (shared.analytics_maintain_partitions, run at start and daily), a default partition that takes
-- an event of any date, and the switch from the plain table:
--   * empty plain table (a new ecosystem, docker-entrypoint-initdb.d): switched here at once;
--   * populated one: this file only creates the new table and a progress row. A bot copies the
--     events in batches outside this (one-transaction, advisory-locked) migration, while every
--     bot keeps writing into the plain table, then copies the last rows and swaps the names
--     under a short lock (shared.analytics_events_swap), and drops the plain table after
--     (shared.analytics_events_drop_plain). See ecosystem_shared/partitions.py.
-- Ids are preserved (the new table draws from the same sequence). The primary key of a
-- partitioned table must contain the partition key: (id, created_at); ids stay unique because
-- only the sequence makes them. Idempotent; no extension needed.

CREATE SCHEMA IF NOT EXISTS shared;

-- Progress of the switch: one row. copied_upto: every plain-table event with id <= it is in
-- the partitioned table.
CREATE TABLE IF NOT EXISTS shared.analytics_events_migration (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    copied_upto BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    tail_rows BIGINT,
    writes_blocked_ms DOUBLE PRECISION
);

-- The partitioned table: the switched one, or its replacement being filled (NULL: neither).
CREATE OR REPLACE FUNCTION shared.analytics_events_parent() RETURNS regclass
LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'shared' AND c.relkind = 'p'
      AND c.relname IN ('analytics_events', 'analytics_events_partitioned')
$$;

-- The partition of the UTC month holding `month`; created (rows of that month moved out of the
-- default partition, which would otherwise make the new bounds fail) unless it exists.
-- Returns the name when it was created now.
CREATE OR REPLACE FUNCTION shared.analytics_create_partition(parent regclass, month DATE)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    first_day DATE := date_trunc('month', month)::date;
    part TEXT := 'analytics_events_' || to_char(month, 'YYYY_MM');
    lo TIMESTAMPTZ := first_day::timestamp AT TIME ZONE 'UTC';
    hi TIMESTAMPTZ := (first_day + 1 * interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    -- Bots run this concurrently; one at a time (released at commit).
    PERFORM pg_advisory_xact_lock(hashtext('shared.analytics_create_partition'));
    IF to_regclass(format('shared.%I', part)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE shared.%I (LIKE %s INCLUDING DEFAULTS)', part, parent);
    IF to_regclass('shared.analytics_events_default') IS NOT NULL THEN
        -- New rows of that month wait (only inserts routed to the default partition do) until
        -- the moved rows are in the new partition and it is attached.
        LOCK TABLE shared.analytics_events_default IN SHARE ROW EXCLUSIVE MODE;
        EXECUTE format(
            'WITH moved AS (DELETE FROM shared.analytics_events_default'
            ' WHERE created_at >= $1 AND created_at < $2 RETURNING *)'
            ' INSERT INTO shared.%I SELECT * FROM moved', part) USING lo, hi;
    END IF;
    -- ATTACH takes SHARE UPDATE EXCLUSIVE on the parent: writers of other months go on.
    -- The parent's indexes and foreign key are created on the partition here.
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION shared.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, part, lo, hi);
    RETURN part;
END $$;

-- Partitions from this month to `months_ahead` months ahead, and one for every month that has
-- rows in the default partition (bulk imports of history land there first). Names created.
CREATE OR REPLACE FUNCTION shared.analytics_maintain_partitions(months_ahead INT DEFAULT 3)
RETURNS SETOF TEXT LANGUAGE plpgsql AS $$
DECLARE
    parent regclass := shared.analytics_events_parent();
    month DATE;
    made TEXT;
BEGIN
    IF parent IS NULL THEN
        RETURN;
    END IF;
    -- Before reading the default partition: a reader of it waiting for the lock that the
    -- attaching process holds, which waits for the reader's lock on it, would deadlock.
    PERFORM pg_advisory_xact_lock(hashtext('shared.analytics_create_partition'));
    FOR month IN
        SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                               date_trunc('month', now() AT TIME ZONE 'UTC')
                                   + months_ahead * interval '1 month',
                               interval '1 month')::date
        UNION
        SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date
        FROM shared.analytics_events_default
        ORDER BY 1
    LOOP
        made := shared.analytics_create_partition(parent, month);
        IF made IS NOT NULL THEN
            RETURN NEXT made;
        END IF;
    END LOOP;
END $$;

-- One batch of the copy: plain-table events with copied_upto < id <= least(copied_upto +
-- batch, upto), in one transaction with the progress row (a crash neither loses nor repeats a
-- batch). NULL created_at (the plain column allowed it) becomes the copy's time. New progress.
CREATE OR REPLACE FUNCTION shared.analytics_events_copy_batch(upto BIGINT, batch BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    done BIGINT;
    target BIGINT;
BEGIN
    SELECT copied_upto INTO done FROM shared.analytics_events_migration FOR UPDATE;
    target := least(done + batch, upto);
    IF target <= done OR shared.analytics_events_parent() <> 'shared.analytics_events_partitioned'::regclass THEN
        RETURN done;
    END IF;
    INSERT INTO shared.analytics_events_partitioned
        (id, telegram_id, bot_name, event_type, event_data, created_at)
    SELECT id, telegram_id, bot_name, event_type, event_data, coalesce(created_at, now())
    FROM ONLY shared.analytics_events WHERE id > done AND id <= target;
    UPDATE shared.analytics_events_migration SET copied_upto = target;
    RETURN target;
END $$;

-- The switch: writers of the plain table wait (their COPY then finds the partitioned table by
-- name) while the rows after copied_upto are copied and the names swapped. The caller sets
-- lock_timeout and retries later when the lock is not granted. Rows copied under the lock.
CREATE OR REPLACE FUNCTION shared.analytics_events_swap() RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    done BIGINT;
    tail BIGINT;
    began TIMESTAMPTZ := clock_timestamp();
BEGIN
    IF to_regclass('shared.analytics_events_partitioned') IS NULL THEN
        RETURN NULL;  -- switched already
    END IF;
    LOCK TABLE shared.analytics_events IN ACCESS EXCLUSIVE MODE;
    began := clock_timestamp();
    SELECT copied_upto INTO done FROM shared.analytics_events_migration FOR UPDATE;
    INSERT INTO shared.analytics_events_partitioned
        (id, telegram_id, bot_name, event_type, event_data, created_at)
    SELECT id, telegram_id, bot_name, event_type, event_data, coalesce(created_at, now())
    FROM ONLY shared.analytics_events WHERE id > done;
    GET DIAGNOSTICS tail = ROW_COUNT;
    -- The sequence belongs to the plain table's id: keep it when the table goes.
    ALTER SEQUENCE shared.analytics_events_id_seq OWNED BY NONE;
    -- Renamed, dropped in a later transaction (shared.analytics_events_drop_plain): dropping it
    -- here would lock shared.users (its foreign key's triggers) while writers that upserted
    -- users wait for this table's lock, a deadlock.
    ALTER TABLE shared.analytics_events RENAME TO analytics_events_plain;
    ALTER INDEX shared.analytics_events_pkey RENAME TO analytics_events_plain_pkey;
    ALTER TABLE shared.analytics_events_partitioned RENAME TO analytics_events;
    ALTER INDEX shared.analytics_events_partitioned_pkey RENAME TO analytics_events_pkey;
    ALTER TABLE shared.analytics_events RENAME CONSTRAINT
        analytics_events_partitioned_telegram_id_fkey TO analytics_events_telegram_id_fkey;
    ALTER SEQUENCE shared.analytics_events_id_seq OWNED BY shared.analytics_events.id;
    COMMENT ON TABLE shared.analytics_events IS
        'События из всех ботов экосистемы (partitioned by month of created_at, UTC)';
    UPDATE shared.analytics_events_migration
    SET finished_at = now(), tail_rows = tail,
        writes_blocked_ms = 1000 * extract(epoch FROM clock_timestamp() - began);
    RETURN tail;
END $$;

-- The plain table after the switch: every row of it is in the partitioned one. The caller sets
-- lock_timeout (dropping it locks shared.users for a moment). True when dropped now.
CREATE OR REPLACE FUNCTION shared.analytics_events_drop_plain() RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('shared.analytics_events_plain') IS NULL THEN
        RETURN false;
    END IF;
    DROP TABLE shared.analytics_events_plain;
    RETURN true;
END $$;

DO $$
DECLARE
    bounds RECORD;
    month DATE;
BEGIN
    IF shared.analytics_events_parent() IS NOT NULL THEN
        RETURN;  -- partitioned already (or being filled)
    END IF;
    CREATE TABLE shared.analytics_events_partitioned (
        id BIGINT NOT NULL DEFAULT nextval('shared.analytics_events_id_seq'),
        telegram_id BIGINT REFERENCES shared.users(telegram_id) ON DELETE SET NULL,
        bot_name TEXT NOT NULL,
        event_type TEXT NOT NULL,
        event_data JSONB,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (id, created_at)
    ) PARTITION BY RANGE (created_at);
    -- Created on every partition, present and future.
    CREATE INDEX analytics_events_telegram_id_idx
        ON shared.analytics_events_partitioned (telegram_id);
    CREATE INDEX analytics_events_bot_event_idx
        ON shared.analytics_events_partitioned (bot_name, event_type);
    CREATE INDEX analytics_events_created_at_idx
        ON shared.analytics_events_partitioned (created_at DESC);
    CREATE INDEX analytics_events_event_data_idx
        ON shared.analytics_events_partitioned USING GIN (event_data);
    CREATE TABLE shared.analytics_events_default
        PARTITION OF shared.analytics_events_partitioned DEFAULT;
    -- A partition for every month the plain table has (its created_at index answers at once).
    SELECT min(created_at) AS lo, max(created_at) AS hi INTO bounds FROM shared.analytics_events;
    IF bounds.lo IS NOT NULL THEN
        FOR month IN SELECT generate_series(date_trunc('month', bounds.lo AT TIME ZONE 'UTC'),
                                            bounds.hi AT TIME ZONE 'UTC', interval '1 month')::date
        LOOP
            PERFORM shared.analytics_create_partition(
                'shared.analytics_events_partitioned', month);
        END LOOP;
    END IF;
    PERFORM shared.analytics_maintain_partitions();
    INSERT INTO shared.analytics_events_migration (copied_upto)
    SELECT coalesce(min(id), 1) - 1 FROM shared.analytics_events
    ON CONFLICT (singleton) DO NOTHING;
    IF NOT EXISTS (SELECT 1 FROM ONLY shared.analytics_events) THEN
        PERFORM shared.analytics_events_swap();  -- nothing to copy: switch now
        PERFORM shared.analytics_events_drop_plain();
    END IF;
END $$;
