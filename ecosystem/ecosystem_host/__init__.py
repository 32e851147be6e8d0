"""Run several generated bots in one preloaded host process, one forked child per bot.

``python -m ecosystem_host BOT_DIR [BOT_DIR ...]`` from the ecosystem directory: the parent
imports the libraries the bots use (never a bot's own ``ecosystem_shared``), warms them up,
makes its objects immortal (CPython 3.12/3.13), freezes the heap (``gc.freeze()``) and forks one
child per bot, which then starts the bot exactly
as ``python -m <package_name>`` would from inside the bot directory. Children share the
parent's memory copy-on-write. ``python -m ecosystem_host --check`` is the health check.
See the ecosystem README ("Deployment: separate services or one host process").
"""
