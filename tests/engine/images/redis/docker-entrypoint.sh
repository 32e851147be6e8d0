#!/bin/sh
# `redis-server <options>` as the official image runs it: reachable from other containers.
set -eu
if [ "${1:-}" = redis-server ]; then
    shift
    exec redis-server --protected-mode no "$@"
fi
exec "$@"
