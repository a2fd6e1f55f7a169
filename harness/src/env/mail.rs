//! The lab's mail server as the harness sees it from outside: whether it greets on its port published
//! on 127.0.0.1, and what it has delivered, read from its own mailbox (the Maildir `/var/mail/sink/`,
//! one file a message) and queue, never from the service's tables.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::poll::{Look, poll_until};
use super::{EnvError, Lab};
use crate::vocabulary::Role;

/// Reads the queue (`postqueue -j`: one line a queued message), the deliveries cut off (files left in
/// the Maildir's `tmp/`) and each message's own `Message-ID` in the mailbox
/// (`<order-42@fortress.test>`, which the service gives each confirmation): the first one in each
/// file, since a bounce carries the headers of the message it is about further down. Only `new/` and
/// `cur/` hold messages: `tmp/` is where a delivery writes before it is done, and where a stop that
/// kills the delivery agent mid-write leaves its file (Postfix delivers the message again when it is
/// back); a Maildir reader never looks there.
const READ_MAILBOX: &str = "echo queued $(postqueue -j | wc -l); \
     echo cut off $(find /var/mail/sink/tmp -type f 2>/dev/null | wc -l); \
     grep -rhis -m1 '^message-id:' /var/mail/sink/new /var/mail/sink/cur || true";
/// Deletes every delivered message and every queued one.
const EMPTY_MAILBOX: &str = "find /var/mail/sink -type f -delete; postsuper -d ALL >/dev/null 2>&1; true";
/// Counts the mailbox's messages: one file each, in `new/` until read (nobody reads them).
const COUNT_MAILBOX: &str = "find /var/mail/sink/new /var/mail/sink/cur -type f | wc -l";

/// What the mail server holds at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// Confirmation emails delivered, per order id: 2 is an email sent twice.
    pub per_order: BTreeMap<i64, u32>,
    /// Messages taken but not yet delivered (a 250 to the sender means queued, not delivered).
    pub queued: u32,
    /// Deliveries a stop cut off, their files left behind in `tmp/`: not messages.
    pub cut_off: u32,
}

impl Mailbox {
    pub fn delivered(&self) -> u32 {
        self.per_order.values().sum()
    }
}

/// Parses what `READ_MAILBOX` printed. Lines it does not know are skipped.
pub fn parse_mailbox(out: &str) -> Mailbox {
    let mut mailbox = Mailbox::default();
    for line in out.lines() {
        if let Some(queued) = line.strip_prefix("queued ") {
            mailbox.queued = queued.trim().parse().unwrap_or(0);
            continue;
        }
        if let Some(cut_off) = line.strip_prefix("cut off ") {
            mailbox.cut_off = cut_off.trim().parse().unwrap_or(0);
            continue;
        }
        let id = line
            .split_once('<')
            .and_then(|(_, rest)| rest.strip_prefix("order-"))
            .and_then(|rest| rest.split_once('@'))
            .and_then(|(id, _)| id.parse::<i64>().ok());
        if let Some(id) = id {
            *mailbox.per_order.entry(id).or_default() += 1;
        }
    }
    mailbox
}

impl Lab {
    /// Polls the mail server's SMTP port on 127.0.0.1 until it greets (`220 ...`), or `deadline`.
    /// A server that never does is named with its state, port and last log lines: a run stopped by a
    /// mail server that did not come back (once in about thirty email-outage runs, 2026-12-07) had
    /// nothing else to tell why.
    pub async fn wait_mail_server(&self, deadline: Duration) -> Result<(), EnvError> {
        let node = self.node(Role::Mail)?;
        let port = node.host_port().await?;
        let waited = poll_until(Role::Mail, deadline, Duration::from_millis(200), || async {
            let greeting = greeting(port).await;
            Ok(match greeting.starts_with("220 ") {
                true => Look::Done(()),
                false => Look::NotYet(greeting),
            })
        })
        .await;
        match waited {
            Err(EnvError::NotReady { role, deadline, last }) => {
                let said = super::logs::last_words_of(node, 20).await;
                let now = node
                    .host_port()
                    .await
                    .map_or_else(|e| e.to_string(), |p| p.to_string());
                let last = format!(
                    "{last} (at 127.0.0.1:{port}, published now at {now}); it is {}; its last log lines:\n{}",
                    said.state,
                    said.lines.join("\n")
                );
                Err(EnvError::NotReady { role, deadline, last })
            }
            other => other,
        }
    }

    /// What the mail server has delivered and still has queued, from inside its container.
    pub async fn mailbox(&self) -> Result<Mailbox, EnvError> {
        Ok(parse_mailbox(&self.exec_mail(READ_MAILBOX).await?))
    }

    /// Empties the mailbox and deletes whatever is still queued: between explore's trials, so each
    /// trial's mailbox holds only its own confirmations.
    pub async fn empty_mailbox(&self) -> Result<(), EnvError> {
        self.exec_mail(EMPTY_MAILBOX).await.map(|_| ())
    }

    /// What a shell `script` run in the mail server's container printed.
    async fn exec_mail(&self, script: &str) -> Result<String, EnvError> {
        self.exec_in(Role::Mail, script).await
    }

    /// How many messages the mailbox holds, counted cheaply (once a second while a run is watched):
    /// its files, not their contents.
    pub async fn mailbox_size(&self) -> Result<u32, EnvError> {
        let out = self.exec_mail(COUNT_MAILBOX).await?;
        out.trim().parse().map_err(|_| EnvError::Exec {
            role: Role::Mail,
            source: testcontainers::TestcontainersError::other(format!(
                "counting the mailbox printed {out:?}"
            )),
        })
    }

    /// The mailbox once the server's queue is empty, or as it is at `deadline`.
    pub async fn settled_mailbox(&self, deadline: Duration) -> Result<Mailbox, EnvError> {
        let started = Instant::now();
        loop {
            let mailbox = self.mailbox().await?;
            if mailbox.queued == 0 || started.elapsed() >= deadline {
                return Ok(mailbox);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The first line the SMTP server says on a new connection, or why there was none.
async fn greeting(port: u16) -> String {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let mut buffer = [0u8; 256];
        let n = stream.read(&mut buffer).await?;
        Ok::<_, std::io::Error>(
            String::from_utf8_lossy(&buffer[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        )
    };
    match tokio::time::timeout(Duration::from_secs(2), exchange).await {
        Ok(Ok(line)) => line,
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no greeting within 2 s".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mailbox_counts_each_orders_emails_and_the_queue() {
        let out = "queued 2\n\
                   cut off 1\n\
                   Message-ID: <order-7@fortress.test>\n\
                   Message-Id: <order-8@fortress.test>\n\
                   Message-ID: <order-7@fortress.test>\n\
                   Message-ID: <setup-check@fortress.test>\n";
        let mailbox = parse_mailbox(out);
        assert_eq!((mailbox.queued, mailbox.cut_off), (2, 1));
        assert_eq!(mailbox.per_order, BTreeMap::from([(7, 2), (8, 1)]));
        assert_eq!(mailbox.delivered(), 3);
        assert_eq!(parse_mailbox(""), Mailbox::default());
    }
}
