#!/bin/sh
# Entrypoint of fortress/redis:7 (offline build on Debian bookworm's redis-server 7.0).
# `docker run IMAGE --maxmemory 10mb` -> `redis-server --maxmemory 10mb`; redis-server runs as user redis.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	chown redis:redis /data 2>/dev/null || true
	exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi

exec "$@"
