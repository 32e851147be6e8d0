"""`python -m picture_bot` starts the bot."""

from ecosystem_shared.runtime import run_bot

from picture_bot.handlers import COMMANDS, build_router
from picture_bot.services import bot_services
from picture_bot.settings import MIGRATIONS, Settings

if __name__ == "__main__":
    raise SystemExit(
        run_bot(
            Settings,
            build_router,
            migrations=MIGRATIONS,
            commands=COMMANDS,
            services=bot_services,
        )
    )
