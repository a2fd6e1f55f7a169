#!/bin/bash
# Entrypoint of fortress/postgres:15 (offline build on Debian bookworm's postgresql-15).
#
# Behaves like the official postgres image from the outside:
#   env   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#         POSTGRES_USER (default postgres), POSTGRES_DB (default = user),
#         POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), PGDATA
#   args  `postgres -c name=value ...` or just `-c name=value ...` (passed to the postgres binary);
#         any other command (psql, bash, ...) is run as given.
#
# Unlike the official image, the first-start initialisation does NOT start a temporary server:
# the superuser is created by `initdb --username --pwfile`, the database by `postgres --single`
# (single-user mode, no postmaster, no listening socket). So the line
#   "database system is ready to accept connections"
# appears exactly once, on stderr, and only when the real server accepts TCP connections.
# (The official image prints it twice: once for its temporary, socket-only init server.)
# /docker-entrypoint-initdb.d is not supported.
set -Eeuo pipefail

PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

# `docker run IMAGE -c foo=bar` -> `postgres -c foo=bar`
if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
	exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
	# Root part: make the directories usable by postgres (also for a mounted, empty volume),
	# then run this script again as postgres.
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 2775 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# A cluster made when the image was built (see the Dockerfile), copied for the default superuser.
TEMPLATE=/var/lib/postgresql/template

init_cluster() {
	local user=${POSTGRES_USER:-postgres}
	local db=${POSTGRES_DB:-$user}
	local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
		cat >&2 <<-'MSG'
		Error: Database is uninitialized and superuser password is not specified.
		       Set POSTGRES_PASSWORD to a non-empty value for the superuser, or
		       POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password.
		MSG
		exit 1
	fi

	local tmp
	tmp=$(mktemp -d)
	local sql=()
	if [ "$user" = postgres ] && [ -s "$TEMPLATE/PG_VERSION" ] \
		&& [[ "${POSTGRES_INITDB_ARGS:-}" =~ ^(|--no-sync)$ ]]; then
		# The cluster made when the image was built: a copy takes a tenth of a second where initdb
		# takes one or two of CPU, at every lab's start. Only its password and host auth differ.
		cp -a "$TEMPLATE/." "$PGDATA/"
		if [ "$auth" != scram-sha-256 ]; then
			sed -i "s/scram-sha-256\$/$auth/" "$PGDATA/pg_hba.conf"
		fi
		if [ -n "${POSTGRES_PASSWORD:-}" ]; then
			sql+=("ALTER ROLE postgres PASSWORD '${POSTGRES_PASSWORD//\'/\'\'}';")
		fi
	else
		local pwargs=()
		if [ -n "${POSTGRES_PASSWORD:-}" ]; then
			printf '%s\n' "$POSTGRES_PASSWORD" >"$tmp/pw"
			pwargs=(--pwfile="$tmp/pw")
		fi
		# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list, as in the official image
		initdb -D "$PGDATA" --username="$user" "${pwargs[@]}" \
			--auth-local=trust --auth-host="$auth" \
			--encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-}
		rm -f "$tmp/pw"
	fi

	# Reachable from any host (connections through a published port arrive from the bridge gateway).
	printf '\n# fortress: accept password connections from any host\nhost all all all %s\n' "$auth" \
		>>"$PGDATA/pg_hba.conf"
	printf "\n# fortress\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	if [ "$db" != postgres ]; then
		sql+=("CREATE DATABASE \"${db//\"/\"\"}\";")
	fi
	if [ "${#sql[@]}" -gt 0 ]; then
		# Single-user mode: no postmaster, nothing listens, no "ready to accept connections" line.
		# Statements end with ";" and a blank line (-j), and are never logged: one may hold the
		# password, so neither is the output shown when it fails.
		if ! printf '%s\n\n' "${sql[@]}" \
			| postgres --single -j -D "$PGDATA" -c log_min_messages=warning \
				-c log_min_error_statement=panic postgres >"$tmp/single.out" 2>&1 \
			|| grep -q 'ERROR' "$tmp/single.out"; then
			echo "Error: could not set up the superuser or create database \"$db\" in single-user mode" >&2
			exit 1
		fi
		[ "$db" = postgres ] || echo "fortress: created database \"$db\""
	fi
	rm -rf "$tmp"
	echo "fortress: initialisation complete; starting postgres"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	init_cluster
fi

exec "$@"
