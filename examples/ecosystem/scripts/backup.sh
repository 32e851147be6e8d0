#!/bin/sh
# Dump the ecosystem database (pg_dump custom format) and delete dumps older than the retention.
#
#   backup.sh           one dump now, then prune (e.g. `docker compose exec backup sh /scripts/backup.sh`)
#   backup.sh --loop    forever: dump, prune, sleep BACKUP_INTERVAL_SECONDS (the `backup` service)
#   backup.sh --check   exit 0 if the newest dump is recent enough (the service's health check)
#
# Connection: the standard libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD
# (or PGPASSWORD_FILE), PGDATABASE.
# BACKUP_DIR (default /backups), BACKUP_RETENTION_DAYS (default 14),
# BACKUP_INTERVAL_SECONDS (default 86400), BACKUP_RETRY_SECONDS (default 300).
# Files: $BACKUP_DIR/<database>-<UTC time>.dump, restored by restore.sh. POSIX sh (busybox too).
# Each dump is recorded in the database's shared.backups (when that table exists): analytics
# retention (ANALYTICS_RETENTION_MONTHS) drops old events only once a dump taken after them is.
set -eu

# PGPASSWORD_FILE (a Docker secret in the Swarm stack): PGPASSWORD from that file.
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    [ -r "$PGPASSWORD_FILE" ] || { echo "PGPASSWORD_FILE: cannot read $PGPASSWORD_FILE" >&2; exit 2; }
    PGPASSWORD=$(cat "$PGPASSWORD_FILE")
    export PGPASSWORD
fi

BACKUP_DIR=${BACKUP_DIR:-/backups}
RETENTION_DAYS=${BACKUP_RETENTION_DAYS:-14}
INTERVAL=${BACKUP_INTERVAL_SECONDS:-86400}
RETRY=${BACKUP_RETRY_SECONDS:-300}
DB=${PGDATABASE:-${PGUSER:-postgres}}

log() { printf '%s backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
fail() { log "ERROR: $*" >&2; return 1; }

is_count() {
    case $1 in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

check_settings() {
    if ! is_count "$RETENTION_DAYS" || [ "$RETENTION_DAYS" -lt 1 ]; then
        fail "BACKUP_RETENTION_DAYS must be a whole number of days >= 1 (got '$RETENTION_DAYS')"
        return 1
    fi
    if ! is_count "$INTERVAL" || [ "$INTERVAL" -lt 60 ]; then
        fail "BACKUP_INTERVAL_SECONDS must be a whole number >= 60 (got '$INTERVAL')"
        return 1
    fi
    if ! is_count "$RETRY" || [ "$RETRY" -lt 1 ]; then
        fail "BACKUP_RETRY_SECONDS must be a whole number >= 1 (got '$RETRY')"
        return 1
    fi
}

backup_once() {
    if ! [ -d "$BACKUP_DIR" ]; then
        fail "$BACKUP_DIR does not exist"
        return 1
    fi
    if ! [ -w "$BACKUP_DIR" ]; then
        fail "$BACKUP_DIR is not writable by uid $(id -u); on the host: sudo chown $(id -u):$(id -g) backups"
        return 1
    fi
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    target="$BACKUP_DIR/$DB-$stamp.dump"
    partial="$target.partial"
    # Written under another name and renamed when complete: a dump is either whole or absent.
    if ! pg_dump --format=custom --no-password --file="$partial" "$DB"; then
        rm -f "$partial"
        fail "pg_dump of $DB failed; previous dumps kept"
        return 1
    fi
    mv "$partial" "$target"
    bytes=$(wc -c <"$target" | tr -d ' ')
    log "wrote $target ($bytes bytes)"
    record "$started" "$target" "$bytes"
    prune
}

record() {
    # psql variables, not text pasted into SQL: a path may hold any character. A dump that
    # cannot be recorded stays a good dump; only retention waits for a recorded one.
    if out=$(printf '%s\n' \
        "SELECT to_regclass('shared.backups') IS NOT NULL AS ready \\gset" \
        "\\if :ready" \
        "INSERT INTO shared.backups (started_at, file, bytes) VALUES (:'started', :'file', :bytes);" \
        "\\else" \
        "\\echo no-table" \
        "\\endif" |
        psql -X -q -t -A --no-password -v ON_ERROR_STOP=1 -v started="$1" -v file="$2" \
            -v bytes="$3" -d "$DB" 2>&1); then
        case $out in
            *no-table*) log "not recorded: $DB has no shared.backups yet (a bot creates it at start)" ;;
            *) log "recorded in shared.backups" ;;
        esac
    else
        log "WARNING: not recorded in shared.backups: $out" >&2
    fi
}

prune() {
    # Only after a successful dump, so the newest one always survives. -mmin: whole minutes,
    # available in busybox find as well as GNU find.
    minutes=$((RETENTION_DAYS * 24 * 60))
    find "$BACKUP_DIR" -maxdepth 1 -type f \
        \( -name "$DB-*.dump" -o -name "$DB-*.dump.partial" \) -mmin +"$minutes" \
        -print -exec rm -f {} \; | while IFS= read -r old; do log "deleted $old (older than $RETENTION_DAYS days)"; done
}

check() {
    max_minutes=$((INTERVAL / 60 + 60))
    recent=$(find "$BACKUP_DIR" -maxdepth 1 -type f -name "$DB-*.dump" -mmin -"$max_minutes" | head -n 1)
    if [ -z "$recent" ]; then
        echo "no dump of $DB in $BACKUP_DIR from the last $max_minutes minutes"
        return 1
    fi
    echo "latest dump recent: $recent"
}

stop() {
    log "stopping"
    if [ -n "${sleeper:-}" ]; then kill "$sleeper" 2>/dev/null || true; fi
    exit 0
}

loop() {
    trap stop TERM INT
    log "every ${INTERVAL}s, keeping $RETENTION_DAYS days, into $BACKUP_DIR"
    while :; do
        if backup_once; then pause=$INTERVAL; else pause=$RETRY; fi
        # In the background so a TERM interrupts the wait at once.
        sleep "$pause" &
        sleeper=$!
        wait "$sleeper" || true
        sleeper=
    done
}

check_settings || exit 2
case ${1:-} in
    "") backup_once ;;
    --loop) loop ;;
    --check) check ;;
    *)
        echo "usage: $0 [--loop | --check]" >&2
        exit 2
        ;;
esac
