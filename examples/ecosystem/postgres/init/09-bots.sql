-- ============================================================================
-- Shared schema: the bots of the ecosystem, by slug
-- ============================================================================
-- Every bot upserts its row (slug -> BOT_NAME) after each connection to the database
-- (ecosystem_shared/bot_registry.py), so a renamed BOT_NAME updates its slug's row. Other
-- tables are keyed by BOT_NAME (shared.bot_audience, shared.analytics_events): this one lets
-- `python -m ecosystem_shared.broadcast create --also-uses SLUG` name another bot by its
-- bot_slug. A bot not started since this file was added has no row yet. Idempotent.

CREATE SCHEMA IF NOT EXISTS shared;

CREATE TABLE IF NOT EXISTS shared.bots (
    slug TEXT PRIMARY KEY,
    bot_name TEXT NOT NULL,
    first_started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bots_bot_name_idx ON shared.bots (lower(bot_name));
