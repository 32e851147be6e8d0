#!/bin/sh
# Restore a dump written by backup.sh into the ecosystem database.
#
#   docker compose stop <bots>                                  # optional: connections are cut anyway
#   docker compose exec backup sh /scripts/restore.sh /backups/<database>-<time>.dump
#   docker compose start <bots>
#
# The dump goes into a scratch database first; only when that succeeded is the live database
# renamed aside (<database>_before_restore_<time>, dropped by hand once you are satisfied) and
# the scratch one renamed into its place. A broken or truncated dump therefore changes nothing.
# Also works when the database no longer exists. Connection: PGHOST, PGPORT, PGUSER, PGPASSWORD
# (or PGPASSWORD_FILE), PGDATABASE (the database to restore); RESTORE_MAINTENANCE_DB (default postgres) is where the
# renames run from. POSIX sh (busybox too).
set -eu

# PGPASSWORD_FILE (a Docker secret in the Swarm stack): PGPASSWORD from that file.
if [ -n "${PGPASSWORD_FILE:-}" ]; then
    [ -r "$PGPASSWORD_FILE" ] || { echo "PGPASSWORD_FILE: cannot read $PGPASSWORD_FILE" >&2; exit 2; }
    PGPASSWORD=$(cat "$PGPASSWORD_FILE")
    export PGPASSWORD
fi

log() { printf '%s restore: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
die() {
    log "ERROR: $*" >&2
    exit 1
}

[ $# -eq 1 ] || {
    echo "usage: $0 <dump file written by backup.sh>" >&2
    exit 2
}
DUMP=$1
DB=${PGDATABASE:-${PGUSER:-postgres}}
ADMIN_DB=${RESTORE_MAINTENANCE_DB:-postgres}
STAMP=$(date -u +%Y%m%d%H%M%S)
SCRATCH="${DB}_restoring"
ASIDE="${DB}_before_restore_${STAMP}"

[ -f "$DUMP" ] || die "$DUMP is not a file"
pg_restore --list "$DUMP" >/dev/null 2>&1 || die "$DUMP is not a pg_dump custom-format archive"

# psql variables (:"name" quotes an identifier, :'name' a literal) keep odd names safe.
admin() {
    psql --no-psqlrc --no-password --quiet --set ON_ERROR_STOP=1 --dbname="$ADMIN_DB" \
        --set db="$DB" --set scratch="$SCRATCH" --set aside="$ASIDE" "$@"
}

log "restoring $DUMP into scratch database $SCRATCH"
admin <<'SQL'
DROP DATABASE IF EXISTS :"scratch" WITH (FORCE);
CREATE DATABASE :"scratch";
SQL
# --no-owner/--no-acl: objects belong to the restoring user, as they did to the ecosystem's
# single database user; a dump from another server restores without its roles.
if ! pg_restore --no-password --dbname="$SCRATCH" --no-owner --no-acl --exit-on-error \
    --single-transaction "$DUMP"; then
    admin <<'SQL' || true
DROP DATABASE IF EXISTS :"scratch";
SQL
    die "pg_restore failed; $DB was not changed"
fi

exists=$(admin --tuples-only --no-align <<'SQL'
SELECT count(*) FROM pg_database WHERE datname = :'db';
SQL
)
if [ "$exists" = "1" ]; then
    log "swapping: $DB -> $ASIDE, $SCRATCH -> $DB"
    # No new connections (the bots reconnect on their own), cut the open ones, then rename.
    admin <<'SQL'
ALTER DATABASE :"db" WITH ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid, 10000)) AS disconnected
  FROM pg_stat_activity WHERE datname = :'db' AND pid <> pg_backend_pid();
ALTER DATABASE :"db" RENAME TO :"aside";
ALTER DATABASE :"aside" WITH ALLOW_CONNECTIONS true;
ALTER DATABASE :"scratch" RENAME TO :"db";
SQL
    log "done; the previous database is kept as $ASIDE. Drop it when satisfied:"
    log "  psql -d $ADMIN_DB -c 'DROP DATABASE \"$ASIDE\"'"
else
    admin <<'SQL'
ALTER DATABASE :"scratch" RENAME TO :"db";
SQL
    log "done; $DB did not exist and was created from the dump"
fi
