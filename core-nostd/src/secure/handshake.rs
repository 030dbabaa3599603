//! The handshake, `Noise_NNpsk0_25519_ChaChaPoly_SHA256` with the HELLO in
//! the prologue, as two sans-IO machines: [`ClientHandshake`] (the Noise
//! initiator) and [`ServerHandshake`] (the responder). Each message travels
//! with a u16 length prefix; both messages have one fixed length, so any
//! other prefix is a fault found after two bytes.
//!
//! The machines copy what they are fed into a small inbox of their own
//! ([`MSG1_FRAMED_LEN`] bytes) and write what they send into the caller's
//! buffer; they never ask for more bytes than the message still lacks.

use rand_core::{CryptoRng, RngCore};

use clatter::traits::Handshaker;

use super::noise::{self, Noise};
use super::record::{Opener, Sealer};
use super::{
    AUTH_FAILED_LEN, AUTH_FAILED_REASON, CLIENT_FIRST_FLIGHT_LEN, HANDSHAKE_PAYLOAD_LEN, HELLO_LEN,
    HandshakeError, Hello, KEY_LEN, LENGTH_PREFIX_LEN, MSG1_FRAMED_LEN, MSG1_LEN, MSG2_FRAMED_LEN, MSG2_LEN,
    SECURE_VERSION, SERVER_REPLY_MAX_LEN, valid_max_record,
};
use crate::wire::{BufferTooSmall, RESPONSE_MIN_HEADER_LEN, Response, ResponseView};

/// The key an unknown user's handshake runs under, so that it costs what a
/// known user's does and answers alike. Its outcome is never trusted: a
/// handshake for an unknown user is refused even if message 1 decrypts.
const DUMMY_KEY: [u8; KEY_LEN] = [0u8; KEY_LEN];

/// A finished handshake: the two directions' record ciphers.
pub struct Transport {
    sealer: Sealer,
    opener: Opener,
}

impl Transport {
    /// The sending half (records to the peer) and the receiving half.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }

    /// The largest record the peer accepts.
    pub fn peer_max_record(&self) -> u16 {
        self.sealer.peer_max_record()
    }

    /// The largest record this side announced.
    pub fn max_record(&self) -> u16 {
        self.opener.max_record()
    }
}

/// A fixed-size inbox for one framed handshake message (or, on the client,
/// for a plaintext response header in its place).
struct Inbox {
    bytes: [u8; MSG1_FRAMED_LEN],
    have: usize,
}

impl Inbox {
    const fn new() -> Self {
        Inbox { bytes: [0u8; MSG1_FRAMED_LEN], have: 0 }
    }

    /// Copies from `input` until `limit` bytes are in; returns the count taken.
    fn take(&mut self, input: &[u8], limit: usize) -> usize {
        let want = limit.saturating_sub(self.have).min(input.len());
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.have..self.have + want), input.get(..want)) {
            dst.copy_from_slice(src);
            self.have += want;
            want
        } else {
            0
        }
    }

    /// The length prefix, once it is in.
    fn prefix(&self) -> Option<u16> {
        match self.bytes.first_chunk::<LENGTH_PREFIX_LEN>() {
            Some(&[lo, hi]) if self.have >= LENGTH_PREFIX_LEN => Some(u16::from_le_bytes([lo, hi])),
            _ => None,
        }
    }

    fn message(&self) -> &[u8] {
        self.bytes.get(LENGTH_PREFIX_LEN..self.have).unwrap_or_default()
    }
}

/// The prefix every handshake message of this pattern carries.
const MSG1_PREFIX: u16 = MSG1_LEN as u16;
const MSG2_PREFIX: u16 = MSG2_LEN as u16;

/// Writes the plaintext 1003 `authentication failed` a server answers a
/// message 1 that does not decrypt with: version 3, status 1003, empty name,
/// the reason as payload. Returns [`AUTH_FAILED_LEN`].
pub fn write_auth_failed(out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    Response::emit_error(SECURE_VERSION, AUTH_FAILED_REASON, out)
}

/// The client's half: sends HELLO and message 1, reads message 2.
pub struct ClientHandshake {
    noise: Noise,
    max_record: u16,
    inbox: Inbox,
    /// The server answered with something else than message 2: a plaintext
    /// response header is being read instead.
    plaintext: bool,
}

impl ClientHandshake {
    /// Starts the handshake of `user_id` under `psk`, accepting records of up
    /// to `max_record` bytes (at least [`MIN_MAX_RECORD`](super::MIN_MAX_RECORD)):
    /// writes HELLO and framed message 1 ([`CLIENT_FIRST_FLIGHT_LEN`] bytes)
    /// into `out` and returns their length. The ephemeral key is drawn from `rng`.
    pub fn start<R: RngCore + CryptoRng>(
        user_id: u32,
        psk: &[u8; KEY_LEN],
        max_record: u16,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<(Self, usize), HandshakeError> {
        if !valid_max_record(max_record) {
            return Err(HandshakeError::BufferTooSmall);
        }
        let Some((hello_out, rest)) = out
            .get_mut(..CLIENT_FIRST_FLIGHT_LEN)
            .and_then(|flight| flight.split_first_chunk_mut::<HELLO_LEN>())
        else {
            return Err(HandshakeError::BufferTooSmall);
        };
        let Some((prefix, msg1)) = rest.split_first_chunk_mut::<LENGTH_PREFIX_LEN>() else {
            return Err(HandshakeError::BufferTooSmall);
        };
        let hello = Hello { user_id };
        let mut noise = noise::start(true, hello, psk, rng)?;
        *hello_out = hello.to_bytes();
        *prefix = MSG1_PREFIX.to_le_bytes();
        let n = noise.write_message(&max_record.to_le_bytes(), msg1).map_err(|_| HandshakeError::Noise)?;
        if n != MSG1_LEN {
            return Err(HandshakeError::Noise);
        }
        Ok((
            ClientHandshake { noise, max_record, inbox: Inbox::new(), plaintext: false },
            CLIENT_FIRST_FLIGHT_LEN,
        ))
    }

    fn limit(&self) -> usize {
        if self.inbox.have < LENGTH_PREFIX_LEN {
            LENGTH_PREFIX_LEN
        } else if self.plaintext {
            RESPONSE_MIN_HEADER_LEN
        } else {
            MSG2_FRAMED_LEN
        }
    }

    /// Bytes of the server's answer still needed; 0 when
    /// [`finish`](Self::finish) can tell the outcome.
    ///
    /// Until the length prefix is in, only the prefix is asked for: it says
    /// whether message 2 or a plaintext refusal follows, and a reader must
    /// never take bytes past the refusal's header (its reason follows).
    pub fn needed(&self) -> usize {
        self.limit().saturating_sub(self.inbox.have)
    }

    /// Takes what it needs of `input`; returns how many bytes it took.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut taken = 0;
        while let Some(rest) = input.get(taken..).filter(|rest| !rest.is_empty()) {
            let n = self.inbox.take(rest, self.limit());
            if n == 0 {
                break;
            }
            taken += n;
            if self.inbox.have == LENGTH_PREFIX_LEN && self.inbox.prefix() != Some(MSG2_PREFIX) {
                // Not message 2: an old server's 1003, or ours refusing the key.
                self.plaintext = true;
            }
        }
        taken
    }

    /// Reads message 2 and returns the session's record ciphers. The
    /// ciphertext must be whole ([`needed`](Self::needed) is 0).
    pub fn finish(mut self) -> Result<Transport, HandshakeError> {
        if self.needed() > 0 {
            return Err(HandshakeError::NotComplete);
        }
        if self.plaintext {
            let view =
                ResponseView::new_unchecked(self.inbox.bytes.get(..self.inbox.have).unwrap_or_default());
            return Err(HandshakeError::Refused {
                version: view.version(),
                status: u16::from(view.status()),
                reason_len: view.size(),
            });
        }
        let mut payload = [0u8; HANDSHAKE_PAYLOAD_LEN];
        self.noise
            .read_message(self.inbox.message(), &mut payload)
            .map_err(|_| HandshakeError::AuthenticationFailed)?;
        let server_max = u16::from_le_bytes(payload);
        if !valid_max_record(server_max) {
            return Err(HandshakeError::BadMaxRecord(server_max));
        }
        let (send, receive) = noise::split(self.noise)?;
        Ok(Transport { sealer: Sealer::new(send, server_max), opener: Opener::new(receive, self.max_record) })
    }
}

/// How the server's handshake ended.
pub enum ServerOutcome {
    /// Message 2 was written: the session is on.
    Accepted(Transport),
    /// The plaintext 1003 `authentication failed` was written: send it, then
    /// end the session as after any 1003.
    Refused,
}

/// The server's half: reads message 1 and answers it.
pub struct ServerHandshake {
    noise: Noise,
    /// Whether the user has a key: an unknown user's handshake runs under
    /// [`DUMMY_KEY`] and is refused whatever message 1 holds.
    known: bool,
    max_record: u16,
    inbox: Inbox,
}

impl ServerHandshake {
    /// Begins the handshake `hello` opened. `psk` is the user's key as the
    /// server's registry holds it, `None` for an unknown user (the same work
    /// is done, under a dummy key, and the same answer given). The server
    /// accepts records of up to `max_record` bytes (at least
    /// [`MIN_MAX_RECORD`](super::MIN_MAX_RECORD)). The ephemeral key is drawn
    /// from `rng` now, for known and unknown users alike.
    pub fn new<R: RngCore + CryptoRng>(
        hello: Hello,
        psk: Option<&[u8; KEY_LEN]>,
        max_record: u16,
        rng: &mut R,
    ) -> Result<Self, HandshakeError> {
        if !valid_max_record(max_record) {
            return Err(HandshakeError::BufferTooSmall);
        }
        let noise = noise::start(false, hello, psk.unwrap_or(&DUMMY_KEY), rng)?;
        Ok(ServerHandshake { noise, known: psk.is_some(), max_record, inbox: Inbox::new() })
    }

    fn bad_prefix(&self) -> bool {
        self.inbox.prefix().is_some_and(|p| p != MSG1_PREFIX)
    }

    /// Bytes of message 1 still needed; 0 when [`respond`](Self::respond) can
    /// answer (also right after a wrong length prefix).
    pub fn needed(&self) -> usize {
        if self.bad_prefix() { 0 } else { MSG1_FRAMED_LEN - self.inbox.have }
    }

    /// Takes what it needs of `input`; returns how many bytes it took.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let first = self.inbox.take(input, LENGTH_PREFIX_LEN);
        if self.bad_prefix() {
            return first;
        }
        first + self.inbox.take(input.get(first..).unwrap_or_default(), MSG1_FRAMED_LEN)
    }

    /// Answers message 1 into `out` (at least [`SERVER_REPLY_MAX_LEN`]
    /// bytes): framed message 2 if it decrypted under a known user's key,
    /// else the plaintext 1003 `authentication failed`. Returns the bytes to
    /// send and the outcome. A client that authenticated but announced a
    /// `max_record` under 64 gets nothing: [`HandshakeError::BadMaxRecord`].
    pub fn respond(mut self, out: &mut [u8]) -> Result<(usize, ServerOutcome), HandshakeError> {
        if self.needed() > 0 {
            return Err(HandshakeError::NotComplete);
        }
        let Some(out) = out.get_mut(..SERVER_REPLY_MAX_LEN) else {
            return Err(HandshakeError::BufferTooSmall);
        };
        let mut payload = [0u8; HANDSHAKE_PAYLOAD_LEN];
        // The decryption runs for unknown users too (under the dummy key):
        // one path, one cost, one answer.
        let decrypted =
            !self.bad_prefix() && self.noise.read_message(self.inbox.message(), &mut payload).is_ok();
        if !(decrypted && self.known) {
            let n = write_auth_failed(out).map_err(|_| HandshakeError::BufferTooSmall)?;
            return Ok((n, ServerOutcome::Refused));
        }
        let client_max = u16::from_le_bytes(payload);
        if !valid_max_record(client_max) {
            return Err(HandshakeError::BadMaxRecord(client_max));
        }
        let Some((prefix, msg2)) = out.split_first_chunk_mut::<LENGTH_PREFIX_LEN>() else {
            return Err(HandshakeError::BufferTooSmall);
        };
        *prefix = MSG2_PREFIX.to_le_bytes();
        let n = self
            .noise
            .write_message(&self.max_record.to_le_bytes(), msg2)
            .map_err(|_| HandshakeError::Noise)?;
        if n != MSG2_LEN {
            return Err(HandshakeError::Noise);
        }
        let (send, receive) = noise::split(self.noise)?;
        let transport = Transport {
            sealer: Sealer::new(send, client_max),
            opener: Opener::new(receive, self.max_record),
        };
        Ok((MSG2_FRAMED_LEN, ServerOutcome::Accepted(transport)))
    }
}

const _: () = assert!(MSG1_FRAMED_LEN == MSG2_FRAMED_LEN && AUTH_FAILED_LEN <= SERVER_REPLY_MAX_LEN);
