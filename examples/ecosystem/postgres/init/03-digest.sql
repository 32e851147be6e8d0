-- ============================================================================
-- Shared schema: daily digest runs (exactly one digest per job and day)
-- ============================================================================
-- Every bot schedules the digest; the first one to insert the (job, run_date) row sends it,
-- the others see the row and skip. Idempotent: applied by every bot at start and usable as a
-- docker-entrypoint-initdb.d script after 02-analytics.sql.

CREATE SCHEMA IF NOT EXISTS shared;

CREATE TABLE IF NOT EXISTS shared.digest_runs (
    job TEXT NOT NULL,
    run_date DATE NOT NULL,
    bot_name TEXT,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    sent_at TIMESTAMPTZ,
    PRIMARY KEY (job, run_date)
);

COMMENT ON TABLE shared.digest_runs IS 'Claims of scheduled jobs (daily digest): one row per job and day';
COMMENT ON COLUMN shared.digest_runs.bot_name IS 'Bot whose process claimed the run';
COMMENT ON COLUMN shared.digest_runs.sent_at IS 'NULL while the claimant is still sending';
