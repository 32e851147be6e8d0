#!/bin/sh
# Writes Alertmanager's configuration from alertmanager.yml.template and the environment, then
# starts Alertmanager with it (arguments are passed on). Alertmanager reads no environment
# variables in its configuration, and the bot token must not be written into the repository.
#   ALERTS_BOT_TOKEN  token of the bot that posts alerts (an admin of the channel)
#   ALERTS_CHAT_ID    the analytics channel, e.g. -1001234567890
#   ALERTS_API_URL    Bot API server: https://api.telegram.org or a Local Bot API server
set -eu

here=$(dirname "$0")
template="${ALERTMANAGER_TEMPLATE:-$here/alertmanager.yml.template}"
config="${ALERTMANAGER_CONFIG:-/tmp/alertmanager.yml}"
binary="${ALERTMANAGER_BIN:-/bin/alertmanager}"

fail() {
    echo "alertmanager: $*" >&2
    exit 2
}

token="${ALERTS_BOT_TOKEN:-}"
chat="${ALERTS_CHAT_ID:-}"
api="${ALERTS_API_URL:-https://api.telegram.org}"
# Shapes checked here so that a bad value is named, not reported as a YAML error.
printf '%s' "$token" | grep -Eq '^[0-9]+:[A-Za-z0-9_-]+$' \
    || fail "ALERTS_BOT_TOKEN must be a bot token from @BotFather, like 123456789:AAE..."
printf '%s' "$chat" | grep -Eq '^-?[0-9]+$' \
    || fail "ALERTS_CHAT_ID must be a numeric chat id such as -1001234567890 (got '$chat')"
printf '%s' "$api" | grep -Eq '^https?://[A-Za-z0-9.:_-]+(/[A-Za-z0-9._~/-]*)?$' \
    || fail "ALERTS_API_URL must be an http(s) URL such as https://api.telegram.org (got '$api')"
api="${api%/}"

umask 077
sed -e "s|__ALERTS_API_URL__|$api|" \
    -e "s|__ALERTS_BOT_TOKEN__|\"$token\"|" \
    -e "s|__ALERTS_CHAT_ID__|$chat|" \
    "$template" > "$config"
exec "$binary" --config.file="$config" "$@"
