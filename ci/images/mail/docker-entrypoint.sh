#!/bin/sh
# A container killed or stopped and started again keeps what its last run left on disk.
set -eu
# The previous master's pid file: Postfix would refuse to start beside what it takes for a running
# master.
rm -f /var/spool/postfix/pid/master.pid
# A message cut off while cleanup was still writing it: its queue file keeps cleanup's temporary name
# (`<pid>.<count>`, a dot in it; a finished one is renamed to its queue id before the client hears
# 250, so none of these was ever accepted). At start Postfix's integrity check finds it ("bogus file
# name"), and postsuper, which cannot open /dev/stdout as its log once it has dropped root, fails
# the whole start: "fatal: Postfix integrity check failed!" (seen 2026-12-07, a stop in the middle
# of the outbox's deliveries; the lab then had no mail server). Removed here, and said so.
for dir in incoming active deferred hold maildrop; do
    find "/var/spool/postfix/$dir" -type f -name '*.*' 2>/dev/null | while read -r file; do
        rm -f "$file" && echo "entrypoint: removed $file, a message cut off before it was accepted"
    done
done
exec "$@"
