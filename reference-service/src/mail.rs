//! Confirmation emails over SMTP: the outbox worker hands each order's email to a mail server
//! (Postfix, in the lab) with `lettre`. The `Message-ID` names the order (`<order-42@fortress.test>`),
//! so the mail server's own mailbox says which orders got their email, and how many times.

use std::time::Duration;

use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

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
    #[error("the mail server did not take the email")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Sends the shop's emails to one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    sender: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Plain SMTP to `host:port`, without TLS or login (the mail server is on the lab's own network),
    /// and a connection per email: no pool keeps a connection open across a fault on the link.
    pub fn new(host: &str, port: u16) -> Self {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let sender = SENDER.parse().expect("the sender's address is valid");
        Self { transport, sender }
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
        self.transport.send(email).await?;
        Ok(())
    }
}

/// The `Message-ID` of an order's confirmation, which the harness looks for at the mail server.
pub fn message_id(order_id: i64) -> String {
    format!("<order-{order_id}@fortress.test>")
}
