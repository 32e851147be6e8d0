-- ============================================================================
-- MPCabinet Ecosystem - Shared Schema for Analytics
-- ============================================================================
-- Эта миграция создаёт общую схему для всех ботов экосистемы
-- Размещается в postgres/init/02-analytics.sql для автоматического выполнения

-- Создание схемы
CREATE SCHEMA IF NOT EXISTS shared;

-- ============================================================================
-- Таблица: shared.users
-- ============================================================================
-- Глобальный реестр пользователей из всех ботов экосистемы

CREATE TABLE IF NOT EXISTS shared.users (
    telegram_id BIGINT PRIMARY KEY,
    username TEXT,
    first_name TEXT NOT NULL,
    last_name TEXT,
    language_code TEXT,
    first_seen TIMESTAMPTZ DEFAULT NOW(),
    last_seen TIMESTAMPTZ DEFAULT NOW()
);

-- Индексы
CREATE INDEX IF NOT EXISTS idx_users_username ON shared.users(username);
CREATE INDEX IF NOT EXISTS idx_users_first_seen ON shared.users(first_seen DESC);

-- Комментарии
COMMENT ON TABLE shared.users IS 'Глобальный реестр пользователей из всех ботов экосистемы';
COMMENT ON COLUMN shared.users.telegram_id IS 'Уникальный ID пользователя Telegram';
COMMENT ON COLUMN shared.users.first_seen IS 'Первое обращение к любому боту экосистемы';
COMMENT ON COLUMN shared.users.last_seen IS 'Последнее обращение к любому боту';

-- ============================================================================
-- Таблица: shared.analytics_events
-- ============================================================================
-- Все события из всех ботов экосистемы

CREATE TABLE IF NOT EXISTS shared.analytics_events (
    id BIGSERIAL PRIMARY KEY,
    telegram_id BIGINT REFERENCES shared.users(telegram_id) ON DELETE SET NULL,
    bot_name TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_data JSONB,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Индексы для производительности
CREATE INDEX IF NOT EXISTS idx_analytics_telegram_id ON shared.analytics_events(telegram_id);
CREATE INDEX IF NOT EXISTS idx_analytics_bot_event ON shared.analytics_events(bot_name, event_type);
CREATE INDEX IF NOT EXISTS idx_analytics_created_at ON shared.analytics_events(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_analytics_event_data ON shared.analytics_events USING GIN (event_data);

-- Комментарии
COMMENT ON TABLE shared.analytics_events IS 'События из всех ботов экосистемы';
COMMENT ON COLUMN shared.analytics_events.bot_name IS 'Имя бота (например: Picture Bot, CRM Bot)';
COMMENT ON COLUMN shared.analytics_events.event_type IS 'Тип события (user_start, error, бот-специфичные)';
COMMENT ON COLUMN shared.analytics_events.event_data IS 'Дополнительные данные события в формате JSONB';
