//! The session engine: every decision of a session, as pure state machines
//! with no sockets, files or clocks (the shape of quinn-proto, and of
//! embedded-tls's record reader).
//!
//! An engine says what it needs next (bytes read into a window, a buffer
//! written whole, a zero-timeout poll, a connection, a source or sink
//! call) and is told what happened. The blocking [`Client`](crate::Client),
//! the async client (feature `async`) and the [`Dispatcher`](crate::Dispatcher)
//! are thin loops that move bytes for it; the decisions (framing, name
//! checks, connection reuse, the pipelining window, early refusal, status
//! mapping, group commit, the sync-before-read rule) exist once, here.

pub(crate) mod answer;
pub(crate) mod client;
pub(crate) mod fault;
pub(crate) mod held;
pub(crate) mod server;
