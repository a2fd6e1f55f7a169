#!/bin/sh
# A container killed and started again keeps the previous master's pid file; Postfix would refuse to
# start beside what it takes for a running master.
set -eu
rm -f /var/spool/postfix/pid/master.pid
exec "$@"
