-- ============================================================================
-- Shared schema: broadcast jobs (one message for one bot's audience)
-- ============================================================================
-- A job is created as a draft with its recipients (a snapshot of the audience filter over
-- shared.bot_audience), then set running; the running bot sends it
-- (ecosystem_shared/broadcast_sender.py). One sender per job is decided in the database: the
-- sender holds pg_try_advisory_lock(BROADCAST_LOCK_CLASS, id) on a session for the whole run.
--
-- Exactly once: a recipient becomes 'in_flight' (committed) before its message is sent, and
-- 'sent' / 'blocked' / 'failed' after the answer. A sender that takes over a job turns the
-- rows left 'in_flight' into 'unknown' (maybe delivered, never resent). Idempotent.

CREATE SCHEMA IF NOT EXISTS shared;

CREATE TABLE IF NOT EXISTS shared.broadcasts (
    id BIGSERIAL PRIMARY KEY,
    bot_name TEXT NOT NULL,               -- same value as shared.bot_audience.bot_name
    state TEXT NOT NULL DEFAULT 'draft'
        CHECK (state IN ('draft', 'running', 'paused', 'cancelled', 'done')),
    pause_reason TEXT,                    -- paused: by whom or why (token revoked, errors)
    text TEXT NOT NULL,                   -- HTML: the message, or the photo's caption
    photo BYTEA,                          -- the photo to upload once (then photo_file_id)
    photo_file_id TEXT,                   -- Telegram's file_id of the photo
    button_text TEXT,
    button_url TEXT,
    audience JSONB NOT NULL DEFAULT '{}', -- the filter: language, seen_days, also_uses
    created_by BIGINT,                    -- admin's Telegram id (NULL: the command line)
    admin_chat_id BIGINT,                 -- where the progress message lives
    progress_message_id BIGINT,
    not_before TIMESTAMPTZ,               -- 429: no send before this time
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    CHECK (button_text IS NULL OR button_url IS NOT NULL)
);

CREATE INDEX IF NOT EXISTS broadcasts_bot_state_idx ON shared.broadcasts (bot_name, state);

CREATE TABLE IF NOT EXISTS shared.broadcast_recipients (
    broadcast_id BIGINT NOT NULL REFERENCES shared.broadcasts (id) ON DELETE CASCADE,
    telegram_id BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'in_flight', 'sent', 'blocked', 'failed', 'unknown')),
    reason TEXT,                          -- failed: Telegram's description or the error
    updated_at TIMESTAMPTZ,
    PRIMARY KEY (broadcast_id, telegram_id)
);

-- The sender takes pending rows in key order and counts by state.
CREATE INDEX IF NOT EXISTS broadcast_recipients_state_idx
    ON shared.broadcast_recipients (broadcast_id, state, telegram_id);

COMMENT ON TABLE shared.broadcasts IS 'Broadcast jobs: one message for one bot''s audience';
COMMENT ON TABLE shared.broadcast_recipients IS
    'One row per broadcast and user: pending, in_flight, sent, blocked, failed, unknown';
