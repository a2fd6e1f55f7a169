//! The reference checkout service: the last pair of sneakers, sold on Postgres with a Redis cache.
//!
//! It is the system Fortress breaks. Its defended form is production-shaped (row locks, idempotency
//! keys, an outbox, a guarded cache); `PUT /admin/modes` swaps pieces of it for the naive code people
//! really write, so an experiment can show the failure and the fix under the same load.
//!
//! The seams for tests and embedding: [`AppState::connect`] builds the state from a [`Config`],
//! [`http::router`] turns it into an axum `Router`, [`run`] serves it (with the outbox worker) until a
//! shutdown future completes, and [`outbox::OutboxWorker::relay_batch`] is one step of the worker.

pub mod app;
pub mod auth;
pub mod breaker;
pub mod cache;
pub mod catalog;
pub mod checkout;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod modes;
pub mod order_history;
pub mod outbox;
pub mod payments;
pub mod seed;
pub mod sessions;

pub use app::{AppState, StartError, run, serve};
pub use config::Config;
