-- ============================================================================
-- Shared schema: hourly event counts per bot and type (/stats' last 24 hours)
-- ============================================================================
-- /stats counts the events of the last 24 hours by bot and type: a raw scan of every event of
-- the day (117 ms p95 at 100 M events, benchmarks/README.md). Hourly counts make it ~24 rows
-- per bot and type plus the raw events of the two partial hours at the window's edges.
--   * hours are UTC hours [hour, hour + 1 h): a window in absolute time (the last 24 h, a local
--     day on a DST change, a zone at +05:30) is whole hours plus two raw edges;
--   * the analytics writer adds each batch's counts in the batch's own transaction
--     (ecosystem_shared/analytics_store.py), so rows buffered through an outage count too;
--   * shared.analytics_rollup_hour recomputes one hour from the events (the bots do the last
--     48 hours at start and daily, which also counts rows written by other means: an import, a
--     bot of an older template during an upgrade; `python -m ecosystem_shared.stats rebuild
--     --since` does its whole range);
--   * shared.analytics_hourly_coverage says from which hour on the counts are complete:
--     readers take the events before it raw. Kept forever, like the daily rollups (a year of
--     ten bots with ten event types is ~0.9 M rows).
-- Idempotent.

CREATE SCHEMA IF NOT EXISTS shared;

CREATE TABLE IF NOT EXISTS shared.analytics_hourly_events (
    hour TIMESTAMPTZ NOT NULL,
    bot_name TEXT NOT NULL,
    event_type TEXT NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (hour, bot_name, event_type)
);

-- One row once the first recompute finished; no row: nothing is covered, read the events.
CREATE TABLE IF NOT EXISTS shared.analytics_hourly_coverage (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    covered_from TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE shared.analytics_hourly_events IS 'Events per UTC hour, bot and type';
COMMENT ON TABLE shared.analytics_hourly_coverage IS
    'shared.analytics_hourly_events is complete from this hour on';

-- (Re)count the UTC hour that contains `at`, in the caller's transaction, which should end
-- right after it (the lock is held until then). SHARE ROW EXCLUSIVE waits for the writers whose
-- uncommitted batch has already added counts, keeps the others from adding until the commit
-- (their events are not in the count below; their additions land on it afterwards), and keeps
-- a second recompute out: no batch is counted twice or lost. Each statement of this volatile
-- function sees what was committed when it started, so the count sees those writers' events.
CREATE OR REPLACE FUNCTION shared.analytics_rollup_hour(at TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    h TIMESTAMPTZ := date_trunc('hour', at, 'UTC');
BEGIN
    LOCK TABLE shared.analytics_hourly_events IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM shared.analytics_hourly_events WHERE hour = h;
    INSERT INTO shared.analytics_hourly_events (hour, bot_name, event_type, events)
    SELECT h, e.bot_name, e.event_type, count(*)
    FROM shared.analytics_events e
    WHERE e.created_at >= h AND e.created_at < h + interval '1 hour'
    GROUP BY e.bot_name, e.event_type;
END $$;

-- Every hour from `since` on has been recomputed (or kept by the writers since): covered.
CREATE OR REPLACE FUNCTION shared.analytics_hourly_cover(since TIMESTAMPTZ)
RETURNS VOID LANGUAGE sql AS $$
    INSERT INTO shared.analytics_hourly_coverage AS c (covered_from)
    VALUES (date_trunc('hour', since, 'UTC'))
    ON CONFLICT (singleton) DO UPDATE SET covered_from = least(c.covered_from, EXCLUDED.covered_from)
$$;
