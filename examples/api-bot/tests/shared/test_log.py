import logging

from ecosystem_shared.log import REDACTED, RedactingFormatter, redact, secrets_of

TOKEN = "987654321:AAH-very-secret-token-value-1234567890"


def test_secrets_of_takes_token_and_db_password() -> None:
    assert secrets_of(TOKEN, "postgresql://user:pa55word@db/x") == [TOKEN, "pa55word"]
    assert secrets_of(None, "postgresql://db/x") == []


def test_redact_known_and_token_shaped_strings() -> None:
    text = f"url https://api.telegram.org/bot{TOKEN}/getMe and postgresql://u:hunter2@h/db"
    out = redact(text, [TOKEN])
    assert TOKEN not in out
    assert "hunter2" not in out
    assert "postgresql://u:***@h/db" in out
    # A token we were not told about is still hidden.
    assert "55555:" not in redact("55555:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", [])


def test_formatter_redacts_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s", ["s3cret-value"])
    try:
        raise RuntimeError("failed with s3cret-value inside")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
        import sys

        record.exc_info = sys.exc_info()
    out = formatter.format(record)
    assert "s3cret-value" not in out
    assert REDACTED in out
    assert "RuntimeError" in out
