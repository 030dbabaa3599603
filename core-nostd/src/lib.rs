//! The protocol core of the backup system: wire format, streaming codec,
//! blocking client and request dispatcher.
//!
//! `no_std`, no allocator, no `unsafe`. Everything runs over
//! [`embedded_io`] traits and buffers the caller owns; the `const` limits in
//! [`wire`] let callers size those buffers at compile time. The core never
//! touches sockets, files or clocks: hosts add those.
//!
//! Data flows one way: wire bytes → [`codec`] → [`session`] (the client's
//! decisions as pure state machines) → [`client`], the async client (feature
//! `async`) or [`dispatch`] → a [`store::Store`] or the caller's files.
//!
//! Version 3 sessions ([`secure`]) wrap any transport in the Noise handshake
//! and encrypted records first; the client and dispatcher then run over the
//! [`secure::SecureStream`] unchanged.
//!
//! The protocol itself is specified in `PROTOCOL.md`, included below.
//!
#![doc = include_str!("../PROTOCOL.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

#[cfg(test)]
extern crate std;

pub mod access;
#[cfg(feature = "async")]
pub mod async_client;
pub mod block;
pub mod client;
pub mod codec;
pub mod dispatch;
pub mod error;
pub mod io;
pub mod ram_store;
pub mod secure;
pub mod session;
pub mod store;
pub mod wire;

pub use client::{Batch, BatchError, Client, ClientError, Connect, RestoreBatch};
pub use codec::{Decoded, RequestDecoder, RequestEnd, ResponseDecoder, ResponseEnd};
pub use dispatch::{Config, Dispatcher, Observer, Outcome, SendFile, SessionEnd};
pub use error::{ProtocolError, StoreError, TransportError};
pub use ram_store::RamStore;
pub use store::{Listing, Store};
pub use wire::{MAX_NAME_LEN, Op, Request, Response, Status};
