//! Confirmation emails over SMTP: the outbox worker hands each order's email to a mail server
//! (Postfix, in the lab) with `lettre`. The `Message-ID` names the order (`<order-42@fortress.test>`),
//! so the mail server's own mailbox says which orders got their email, and how many times.

use std::time::Duration;

use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

/// How long one SMTP conversation may take. A mail server that stops answering holds the outbox's
/// batch this long per message; the message is then retried with the outbox's backoff.
const SMTP_TIMEOUT: Duration = Duration::from_secs(2);
const SENDER: &str = "The sneaker shop <shop@fortress.test>";

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{address:?} is not an email address")]
    Address {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("could not build the email")]
    Message(#[from] lettre::error::Error),
    #[error("could not connect to the mail server")]
    Connect(#[source] std::io::Error),
    #[error("the mail server did not take the email")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("the mail server took more than {SMTP_TIMEOUT:?}")]
    Timeout,
}

/// Sends the shop's emails to one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    host: String,
    port: u16,
    sender: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &format_args!("{}:{}", self.host, self.port))
            .field("sender", &self.sender)
            .finish()
    }
}

impl Mailer {
    /// Plain SMTP to `host:port`, without TLS or login (the mail server is on the lab's own network),
    /// and a connection per email: no pool keeps a connection open across a fault on the link.
    pub fn new(host: &str, port: u16) -> Self {
        let sender = SENDER.parse().expect("the sender's address is valid");
        Self {
            host: host.to_owned(),
            port,
            sender,
        }
    }

    /// Sends the confirmation of `order_id` to `recipient`; done when the server has taken it (a
    /// 250 after the message's data), which is queued at the server, not yet delivered.
    pub async fn send_confirmation(&self, order_id: i64, recipient: &str) -> Result<(), MailError> {
        let to: Mailbox = recipient.parse().map_err(|source| MailError::Address {
            address: recipient.to_owned(),
            source,
        })?;
        let email = Message::builder()
            .from(self.sender.clone())
            .to(to)
            .subject(format!("Order {order_id} confirmed"))
            .message_id(Some(message_id(order_id)))
            .body(format!("Your order {order_id} is confirmed. Thank you!\n"))?;
        tokio::time::timeout(SMTP_TIMEOUT, self.converse(&email))
            .await
            .map_err(|_| MailError::Timeout)?
    }

    /// One SMTP conversation: greeting and EHLO, the envelope and the data, QUIT.
    ///
    /// The connection is opened here rather than by lettre's transport to switch Nagle's algorithm
    /// off: lettre writes a message and its closing `.` apart, and with Nagle the second write waits
    /// for the server to acknowledge the first, which a delayed ACK holds for 40 ms. That capped the
    /// outbox at about 20 emails a second, below a busy shop's order rate.
    async fn converse(&self, email: &Message) -> Result<(), MailError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(MailError::Connect)?;
        stream.set_nodelay(true).map_err(MailError::Connect)?;
        let hello = ClientId::Domain("shop.fortress.test".to_owned());
        let mut smtp = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await?;
        smtp.send(email.envelope(), &email.formatted()).await?;
        // The server has the message: a QUIT that fails does not unsend it.
        let _ = smtp.quit().await;
        Ok(())
    }
}

/// The `Message-ID` of an order's confirmation, which the harness looks for at the mail server.
pub fn message_id(order_id: i64) -> String {
    format!("<order-{order_id}@fortress.test>")
}
