#!/bin/sh
# Postfix as the lab's mail server: accepts mail for any address at any domain on port 25 and
# delivers all of it into one Maildir, /var/mail/sink/, where the harness counts it (one file a
# message, so a message delivered twice is two files). No relaying, no TLS, no auth: it only ever
# hears from the lab's own network. Logs go to stdout (the postlog service), so `docker logs` shows
# each delivery.
set -eu
mkdir -p /var/mail/sink
chown -R mail:mail /var/mail/sink
postconf -e \
    'myhostname = mail.fortress.test' \
    'mydestination =' \
    'inet_interfaces = all' \
    'inet_protocols = ipv4' \
    'mynetworks = 127.0.0.0/8' \
    'virtual_mailbox_domains = static:all' \
    'virtual_mailbox_base = /var/mail' \
    'virtual_mailbox_maps = static:sink/' \
    "virtual_uid_maps = static:$(id -u mail)" \
    "virtual_gid_maps = static:$(id -g mail)" \
    'virtual_minimum_uid = 1' \
    'alias_maps =' \
    'alias_database =' \
    'smtpd_banner = $myhostname ESMTP fortress-mail' \
    'maillog_file = /dev/stdout' \
    'smtputf8_enable = no' \
    'compatibility_level = 3.6'
# No chroot: start-fg does not copy /etc files into the spool as Debian's init script would.
postconf -F '*/*/chroot = n'
# The postlog service, which maillog_file needs (stock in Debian's master.cf since 3.4; added if not).
postconf -M postlog/unix-dgram >/dev/null 2>&1 \
    || postconf -M 'postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd'
postfix check
postconf -n
