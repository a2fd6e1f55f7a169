//! Integration tests of the reference service against real Postgres and Redis in containers.
//!
//! One test binary (one link) with a module per capability; each test starts its own containers.

mod bad_input;
mod cache_failure;
mod checkout;
mod lab;
mod order_history;
mod outbox;
mod race;
mod sessions;
mod shutdown;
