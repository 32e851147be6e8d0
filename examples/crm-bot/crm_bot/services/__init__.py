"""This bot's own services. ``bot_services`` builds them once at start (``__main__`` passes it to
``run_bot``; the test kit's in-process bot calls it too); handlers ask for each by its name. Each
one's ``start()``, if any, runs before the first update and its ``close()`` at shutdown. Add a
client or repository of your own here.
"""

from typing import TYPE_CHECKING

from .crm import CrmRepository

if TYPE_CHECKING:
    from ecosystem_shared.runtime import Services

    from ..settings import Settings


def bot_services(settings: "Settings", shared: "Services") -> dict[str, object]:
    """The services by the parameter name handlers use (``db``, ``analytics``... are taken)."""
    services: dict[str, object] = {}
    services["crm"] = CrmRepository(shared.db)
    return services
