//! Protocol version 3: an authenticated, encrypted session, sans-IO.
//!
//! A client opens with [`HELLO_LEN`] bytes ([`hello`]), then runs the Noise
//! handshake `Noise_NNpsk0_25519_ChaChaPoly_SHA256` keyed by the user's
//! 32-byte pre-shared key ([`handshake`]); after it every byte travels in
//! records of Noise transport ciphertext ([`record`]). Inside the records
//! flow ordinary version-1-layout requests and responses with version byte
//! [`SECURE_VERSION`], under the version-2 session rules.
//!
//! The handshake and the record layer are pure state machines over buffers
//! the caller owns; [`stream`] is the thin blocking adapter that turns any
//! `embedded_io::{Read, Write}` into a secure one, so the existing
//! [`Client`](crate::Client) and [`Dispatcher`](crate::Dispatcher) run over
//! it unchanged. Randomness comes from the caller's `rand_core`
//! `RngCore + CryptoRng`: the core has no entropy of its own.
//!
//! The Noise state machine is the `clatter` crate's; this module only frames
//! its messages and keeps its types out of the public API.
//!
//! What it costs (measured on a scratch Cortex-M binary, `opt-level = "z"`,
//! LTO, no defmt, running the blocking client's backup/list/restore/delete):
//! 4.8 KiB of flash in plaintext, 34.2 KiB with `client_handshake` and a
//! `SecureStream` on thumbv6m (30.9 KiB on thumbv7em), most of it X25519,
//! SHA-256 and ChaCha20-Poly1305. The handshake machines keep 776 bytes of
//! state while they run, a [`Transport`] 136; the record buffers are the
//! caller's (`rx_buffer_len(max_record)` and any send buffer over 18 bytes).

#[cfg(feature = "async")]
pub mod async_stream;
mod channel;
mod error;
pub mod handshake;
pub mod hello;
mod noise;
pub mod record;
pub mod stream;

#[cfg(feature = "async")]
pub use async_stream::{AsyncSecureStream, client_handshake_async, server_handshake_async};
pub use error::{HandshakeError, RecordError, SecureError};
pub use handshake::{ClientHandshake, ServerHandshake, ServerOutcome, Transport};
pub use hello::{Hello, HelloError};
pub use record::{Opener, Sealer};
pub use stream::{
    SecureStream, client_handshake, client_handshake_with_reason, server_handshake,
    server_handshake_after_hello,
};

use crate::wire::RESPONSE_MIN_HEADER_LEN;

/// The protocol version of secure sessions: the HELLO's version byte and
/// the version byte of every request and response inside the records.
pub const SECURE_VERSION: u8 = 3;
/// The op of the HELLO that opens a secure session.
pub const HELLO_OP: u8 = 1;
/// Bytes of the HELLO: user id (u32), version 3, op 1.
pub const HELLO_LEN: usize = 6;

/// The Noise protocol name; its hash is the handshake's first state.
pub const NOISE_PROTOCOL_NAME: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// The fixed start of the Noise prologue; the HELLO's six bytes follow it, so
/// a man in the middle cannot swap the user id without breaking the handshake.
pub const PROLOGUE_LABEL: &[u8] = b"backup-v3";
/// Bytes of the prologue: the label, then the HELLO.
pub const PROLOGUE_LEN: usize = PROLOGUE_LABEL.len() + HELLO_LEN;

/// Bytes of a user's pre-shared key.
pub const KEY_LEN: usize = 32;
/// Bytes of an X25519 public key as it travels in a handshake message.
pub const DH_LEN: usize = 32;
/// Bytes of the ChaCha20-Poly1305 authentication tag on every ciphertext.
pub const TAG_LEN: usize = 16;

/// Bytes of the u16 length in front of every handshake message and record.
pub const LENGTH_PREFIX_LEN: usize = 2;
/// Bytes of a handshake payload: the u16 `max_record` of its sender.
pub const HANDSHAKE_PAYLOAD_LEN: usize = 2;
/// Bytes of handshake message 1 (`psk, e`): the ephemeral key and the
/// encrypted payload (psk0 makes it encrypted already).
pub const MSG1_LEN: usize = DH_LEN + HANDSHAKE_PAYLOAD_LEN + TAG_LEN;
/// Bytes of handshake message 2 (`e, ee`).
pub const MSG2_LEN: usize = DH_LEN + HANDSHAKE_PAYLOAD_LEN + TAG_LEN;
/// Bytes of message 1 on the wire, with its length prefix.
pub const MSG1_FRAMED_LEN: usize = LENGTH_PREFIX_LEN + MSG1_LEN;
/// Bytes of message 2 on the wire, with its length prefix.
pub const MSG2_FRAMED_LEN: usize = LENGTH_PREFIX_LEN + MSG2_LEN;
/// Bytes the client sends before it waits: HELLO and framed message 1.
pub const CLIENT_FIRST_FLIGHT_LEN: usize = HELLO_LEN + MSG1_FRAMED_LEN;

/// The reason of the plaintext 1003 a server answers when message 1 does
/// not decrypt (wrong key or unknown user: the two look alike on purpose).
pub const AUTH_FAILED_REASON: &str = "authentication failed";
/// Bytes of that plaintext 1003 response: header with an empty name, and
/// the reason.
pub const AUTH_FAILED_LEN: usize = RESPONSE_MIN_HEADER_LEN + AUTH_FAILED_REASON.len();
/// The most a server writes in answer to message 1: framed message 2 or the
/// plaintext 1003, whichever is longer.
pub const SERVER_REPLY_MAX_LEN: usize =
    if MSG2_FRAMED_LEN > AUTH_FAILED_LEN { MSG2_FRAMED_LEN } else { AUTH_FAILED_LEN };

/// Bytes of a record's length prefix.
pub const RECORD_HEADER_LEN: usize = LENGTH_PREFIX_LEN;
/// Bytes a record adds to its plaintext: length prefix and tag.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_LEN + TAG_LEN;
/// Shortest record ciphertext: one plaintext byte and the tag. Empty records
/// are not sent: they would carry nothing and cost a nonce.
pub const MIN_RECORD: usize = TAG_LEN + 1;
/// Longest record ciphertext the length prefix can announce.
pub const MAX_RECORD: usize = u16::MAX as usize;
/// The smallest `max_record` a side may announce in its handshake payload.
pub const MIN_MAX_RECORD: usize = 64;
/// Most plaintext one record can carry.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;

/// The receive buffer a side announcing `max_record` needs: the record's
/// length prefix and its ciphertext, opened in place.
pub const fn rx_buffer_len(max_record: u16) -> usize {
    RECORD_HEADER_LEN + max_record as usize
}

/// The send buffer that seals records of up to `plaintext` bytes in place.
pub const fn tx_buffer_len(plaintext: usize) -> usize {
    RECORD_OVERHEAD + plaintext
}

/// Whether `max_record` may be announced in a handshake payload.
pub const fn valid_max_record(max_record: u16) -> bool {
    max_record as usize >= MIN_MAX_RECORD
}

#[cfg(test)]
mod tests;
