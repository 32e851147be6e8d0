"""CRM data access (crm.user_profiles, crm.orders). Users referenced must exist in shared.users."""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from aiogram.types import User

from ecosystem_shared.analytics_store import UserRow, upsert_users
from ecosystem_shared.db import Database

TIMEOUT = 10.0  # seconds per statement

_SUBSCRIBE = """
INSERT INTO crm.user_profiles (telegram_id, subscription_status, subscription_expires_at)
VALUES ($1, 'premium', NOW() + make_interval(days => $2))
ON CONFLICT (telegram_id) DO UPDATE
SET subscription_status = 'premium',
    subscription_expires_at = GREATEST(
        crm.user_profiles.subscription_expires_at, NOW()
    ) + make_interval(days => $2)
RETURNING subscription_expires_at
"""

_ORDER = """
INSERT INTO crm.orders (telegram_id, product_name, amount, status)
VALUES ($1, $2, $3, $4)
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    product_name: str
    amount: Decimal
    status: str
    created_at: datetime


class CrmRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def subscribe(self, user: User, days: int, price: Decimal) -> tuple[datetime, int]:
        """Premium for ``days`` more days and a paid order; returns (expires_at, order id).

        The user is stored in shared.users the way analytics stores users (sanitised, newer facts
        win); a ``user.id`` no BIGINT holds raises ValueError before the database is asked."""
        row = UserRow(
            user.id,
            user.username,
            user.first_name,
            user.last_name,
            user.language_code,
            datetime.now(UTC),
        )
        async with self.db.acquire() as conn, conn.transaction():
            await upsert_users(conn, [row], TIMEOUT)
            expires_at: datetime = await conn.fetchval(_SUBSCRIBE, user.id, days)
            order_id: int = await conn.fetchval(_ORDER, user.id, f"premium-{days}d", price, "paid")
            await conn.execute(
                "UPDATE crm.user_profiles SET total_purchases = total_purchases + $2"
                " WHERE telegram_id = $1",
                user.id,
                price,
            )
        return expires_at, order_id

    async def grant(self, telegram_id: int, days: int) -> datetime:
        """Admin grant: the user must already be known to the ecosystem."""
        async with self.db.acquire() as conn:
            expires_at: datetime = await conn.fetchval(_SUBSCRIBE, telegram_id, days)
        return expires_at

    async def orders(self, telegram_id: int, limit: int = 10) -> list[Order]:
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, product_name, amount, status, created_at FROM crm.orders"
                " WHERE telegram_id = $1 ORDER BY id DESC LIMIT $2",
                telegram_id,
                limit,
            )
        return [Order(**dict(row)) for row in rows]
