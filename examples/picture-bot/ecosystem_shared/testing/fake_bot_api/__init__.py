"""A fake Telegram Bot API server for process-level tests (speaks the real HTTP protocol).

The bot under test gets ``TELEGRAM_API_BASE_URL=api.base_url`` and talks to this server as it
would to api.telegram.org or a Local Bot API server: ``/bot<token>/<method>`` with multipart, form
or JSON bodies, long-polling ``getUpdates``, ``/file/bot<token>/<path>`` downloads. Tests push
updates, inspect the recorded calls and inject faults (429, 5xx, delays, an outage). Results are
real Telegram objects (aiogram parses them) and common mistakes get Telegram's own 400 errors.

Recipients (fake_recipients.py): users who blocked the bot (:meth:`FakeBotAPI.block`, also a
pushed ``my_chat_member`` "kicked") or deleted their account (:meth:`FakeBotAPI.deactivate`),
chats that do not exist (:meth:`FakeBotAPI.forget_chats`), flood control
(:meth:`FakeBotAPI.set_flood_control`), and the record of sends (:attr:`FakeBotAPI.send_log`).

The parts, one job each: ``fields`` (Telegram's field tables and error envelope), ``checks``
(HTML parse mode, captions, PNG sizes), ``updates`` (the queue and the objects tests push),
``recording`` (uploads, calls, waiting for them), ``faults``, ``recipients``, ``methods`` (the
method handlers) and ``server`` (HTTP). Import from here: the parts' layout may change.
"""

from ecosystem_shared.testing.fake_bot_api.checks import visible_text
from ecosystem_shared.testing.fake_bot_api.fields import ANONYMOUS_ADMIN_ID, DEFAULT_TOKEN, ApiError
from ecosystem_shared.testing.fake_bot_api.recording import Call, UploadedFile
from ecosystem_shared.testing.fake_bot_api.server import FakeBotAPI
from ecosystem_shared.testing.fake_recipients import FloodControl, Send, SendLog

__all__ = [
    "ANONYMOUS_ADMIN_ID",
    "DEFAULT_TOKEN",
    "ApiError",
    "Call",
    "FakeBotAPI",
    "FloodControl",
    "Send",
    "SendLog",
    "UploadedFile",
    "visible_text",
]
