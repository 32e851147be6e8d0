-- CRM schema of this bot. Idempotent: applied at every start by the bot,
-- and usable as a docker-entrypoint-initdb.d script after the shared schema.
CREATE SCHEMA IF NOT EXISTS crm;

CREATE TABLE IF NOT EXISTS crm.user_profiles (
    telegram_id BIGINT PRIMARY KEY REFERENCES shared.users(telegram_id),
    subscription_status TEXT DEFAULT 'free',
    subscription_expires_at TIMESTAMPTZ,
    total_purchases DECIMAL(10, 2) DEFAULT 0.00,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS crm.orders (
    id BIGSERIAL PRIMARY KEY,
    telegram_id BIGINT REFERENCES shared.users(telegram_id),
    product_name TEXT,
    amount DECIMAL(10, 2),
    status TEXT DEFAULT 'pending',
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_crm_orders_telegram_id ON crm.orders(telegram_id);
