#!/bin/sh
# pretix-entrypoint: `web` (gunicorn, the default), `migrate`, `setup` (the lab's organizer, event,
# item, quota and API token: fortress_setup.py), or any other command as given.
set -e
case "${1:-web}" in
web)
	[ "$#" -gt 0 ] && shift
	exec /opt/pretix/bin/gunicorn pretix.wsgi --bind 0.0.0.0:8000 --workers "${PRETIX_WORKERS:-2}" \
		--access-logfile - --log-level info "$@"
	;;
migrate) exec /opt/pretix/bin/python -m pretix migrate --noinput ;;
setup) exec /opt/pretix/bin/python /opt/fortress/fortress_setup.py ;;
*) exec "$@" ;;
esac
