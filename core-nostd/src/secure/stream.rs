//! The blocking adapter: any `embedded_io::{Read, Write}` transport made
//! secure, so that the existing [`Client`](crate::Client) and
//! [`Dispatcher`](crate::Dispatcher) run over it unchanged; and blocking
//! helpers that run the handshake on such a transport.

use core::ops::Range;

use embedded_io::{ErrorType, Read, ReadReady, Write};
use rand_core::{CryptoRng, RngCore};

use super::handshake::{ClientHandshake, ServerHandshake, ServerOutcome, Transport};
use super::record::{Opener, Sealer};
use super::{
    CLIENT_FIRST_FLIGHT_LEN, HELLO_LEN, HandshakeError, Hello, KEY_LEN, MAX_RECORD, MIN_MAX_RECORD,
    RECORD_HEADER_LEN, RECORD_OVERHEAD, RecordError, SERVER_REPLY_MAX_LEN, SecureError,
};
use crate::dispatch::SendFile;
use crate::io::write_all;

/// A secure session over transport `T`, with receive and send buffers `B`
/// the caller owns (`&mut [u8]` on a microcontroller, a boxed slice on a
/// host, whose connector must own what each connection holds).
///
/// Each [`write`](Write::write) seals as much of its input as one record
/// carries (the peer's `max_record` less the tag, and what the send buffer
/// holds) and writes that record whole before it returns. The client and the
/// dispatcher write whole headers and chunks, so records come out as large as
/// their writes; and since nothing waits for a flush, a peer that pipelines
/// or holds answers for group commit never waits on bytes stuck in a buffer
/// here. [`flush`](Write::flush) only flushes the transport.
///
/// Reads take a record's length prefix, then exactly the rest of that
/// record, open it in place in the receive buffer and serve its plaintext
/// from there. After any fault (a record out of range or forged, the peer
/// closing inside a record, a transport error) the stream refuses every
/// further read and write: nothing more reaches the peer.
pub struct SecureStream<T, B> {
    io: T,
    sealer: Sealer,
    opener: Opener,
    rx: B,
    tx: B,
    /// The opened plaintext in `rx` not yet read.
    plain: Range<usize>,
    failed: bool,
}

impl<T: Read + Write, B: AsMut<[u8]>> SecureStream<T, B> {
    /// Wraps `io` after a finished handshake. `rx` must hold
    /// [`rx_buffer_len`](super::rx_buffer_len)`(transport.max_record())`;
    /// `tx` at least [`RECORD_OVERHEAD`] + 1 bytes (more means larger records,
    /// up to the peer's `max_record`).
    pub fn new(io: T, transport: Transport, mut rx: B, mut tx: B) -> Result<Self, HandshakeError> {
        if rx.as_mut().len() < super::rx_buffer_len(transport.max_record())
            || tx.as_mut().len() <= RECORD_OVERHEAD
        {
            return Err(HandshakeError::BufferTooSmall);
        }
        let (sealer, opener) = transport.split();
        Ok(SecureStream { io, sealer, opener, rx, tx, plain: 0..0, failed: false })
    }

    /// The transport, for shells that set timeouts or read its address.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The transport, mutably. Bytes read or written on it directly are not
    /// part of the secure session.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Whether a fault ended the session (then the shell closes the connection).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The largest record the peer accepts.
    pub fn peer_max_record(&self) -> u16 {
        self.sealer.peer_max_record()
    }

    /// The most plaintext one `write` sends.
    pub fn max_write(&mut self) -> usize {
        self.sealer.max_plaintext().min(self.tx.as_mut().len().saturating_sub(RECORD_OVERHEAD))
    }

    fn fail<X>(&mut self, e: SecureError<T::Error>) -> Result<X, SecureError<T::Error>> {
        self.failed = true;
        Err(e)
    }

    /// Reads and opens the next record; `Ok(false)` if the peer closed
    /// cleanly between records.
    fn fill(&mut self) -> Result<bool, SecureError<T::Error>> {
        loop {
            let space = self.opener.space(self.rx.as_mut());
            if space.is_empty() {
                return self.fail(SecureError::Record(RecordError::BufferTooSmall));
            }
            let n = match self.io.read(space) {
                Ok(0) if self.opener.at_boundary() => return Ok(false),
                Ok(0) => return self.fail(SecureError::Closed),
                Ok(n) => n,
                Err(e) => return self.fail(SecureError::Io(e)),
            };
            match self.opener.advance(self.rx.as_mut(), n) {
                Ok(Some(plain)) => {
                    self.plain = plain;
                    return Ok(true);
                }
                Ok(None) => {}
                Err(e) => return self.fail(SecureError::Record(e)),
            }
        }
    }
}

impl<T: ErrorType, B> ErrorType for SecureStream<T, B> {
    type Error = SecureError<T::Error>;
}

impl<T: Read + Write, B: AsMut<[u8]>> Read for SecureStream<T, B> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.failed {
            return Err(SecureError::Record(RecordError::Failed));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.plain.is_empty() && !self.fill()? {
            return Ok(0);
        }
        let Some(plain) = self.rx.as_mut().get(self.plain.clone()) else {
            return self.fail(SecureError::Record(RecordError::BufferTooSmall));
        };
        let n = plain.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), plain.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.plain.start += n;
        Ok(n)
    }
}

impl<T: Read + Write, B: AsMut<[u8]>> Write for SecureStream<T, B> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if self.failed {
            return Err(SecureError::Record(RecordError::Failed));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let tx = self.tx.as_mut();
        let n = buf.len().min(self.sealer.max_plaintext()).min(tx.len().saturating_sub(RECORD_OVERHEAD));
        let sealed = match (tx.get_mut(RECORD_HEADER_LEN..RECORD_HEADER_LEN + n), buf.get(..n)) {
            (Some(dst), Some(src)) => {
                dst.copy_from_slice(src);
                self.sealer.seal_in_place(tx, n)
            }
            _ => Err(RecordError::BufferTooSmall),
        };
        let len = match sealed {
            Ok(len) => len,
            Err(e) => return self.fail(SecureError::Record(e)),
        };
        let record = self.tx.as_mut().get(..len).unwrap_or_default();
        // A record half written cannot be taken back: any failure ends the session.
        if let Err(e) = write_all(&mut self.io, record) {
            return self.fail(e.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        if self.failed {
            return Err(SecureError::Record(RecordError::Failed));
        }
        match self.io.flush() {
            Ok(()) => Ok(()),
            Err(e) => self.fail(SecureError::Io(e)),
        }
    }
}

impl<T: Read + Write + ReadReady, B: AsMut<[u8]>> ReadReady for SecureStream<T, B> {
    /// True while opened plaintext waits; otherwise whatever the transport
    /// says. A record partly in may still need a moment: its sender writes
    /// records whole, so the rest is on its way.
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        if self.failed {
            return Err(SecureError::Record(RecordError::Failed));
        }
        if !self.plain.is_empty() {
            return Ok(true);
        }
        match self.io.read_ready() {
            Ok(ready) => Ok(ready),
            Err(e) => self.fail(SecureError::Io(e)),
        }
    }
}

/// Stored files cannot bypass the encryption: the dispatcher copies them
/// through its buffer and `write`.
impl<R, T: Read + Write, B: AsMut<[u8]>> SendFile<R> for SecureStream<T, B> {}

/// A handshake machine waiting for the peer's message.
trait Inbound {
    fn needed(&self) -> usize;
    fn feed(&mut self, input: &[u8]) -> usize;
}

impl Inbound for ClientHandshake {
    fn needed(&self) -> usize {
        ClientHandshake::needed(self)
    }
    fn feed(&mut self, input: &[u8]) -> usize {
        ClientHandshake::feed(self, input)
    }
}

impl Inbound for ServerHandshake {
    fn needed(&self) -> usize {
        ServerHandshake::needed(self)
    }
    fn feed(&mut self, input: &[u8]) -> usize {
        ServerHandshake::feed(self, input)
    }
}

/// Reads exactly what the machine still needs, through `scratch`, until it
/// needs nothing: reads never go past the message, so the first record stays
/// in the transport for the stream.
fn read_message<T: Read>(
    io: &mut T,
    scratch: &mut [u8],
    hs: &mut impl Inbound,
) -> Result<(), SecureError<T::Error>> {
    loop {
        let want = hs.needed();
        if want == 0 {
            return Ok(());
        }
        let Some(window) = scratch.get_mut(..want.min(scratch.len())).filter(|w| !w.is_empty()) else {
            return Err(SecureError::Handshake(HandshakeError::BufferTooSmall));
        };
        match io.read(window) {
            Ok(0) => return Err(SecureError::Closed),
            Ok(n) => {
                hs.feed(window.get(..n).unwrap_or_default());
            }
            Err(e) => return Err(SecureError::Io(e)),
        }
    }
}

/// The `max_record` a receive buffer of `len` bytes allows.
fn max_record_for(len: usize) -> Result<u16, HandshakeError> {
    let max = len.saturating_sub(RECORD_HEADER_LEN).min(MAX_RECORD);
    if max < MIN_MAX_RECORD { Err(HandshakeError::BufferTooSmall) } else { Ok(max as u16) }
}

/// Runs the client's handshake on `io` (pass `&mut` of a socket to keep it)
/// and returns the secure stream. The client announces the largest record
/// `rx` holds (its length less 2, at most 65535; `rx` must hold at least 66
/// bytes). `tx` also serves as scratch for the handshake, so it must hold
/// [`CLIENT_FIRST_FLIGHT_LEN`] bytes.
///
/// If the server answers in plaintext instead (an old server, or a refused
/// key), the error is [`HandshakeError::Refused`], and as much of the reason
/// as fits has been read into the start of `rx`: `reason_len` bytes, capped
/// at `rx`'s length.
pub fn client_handshake<T, R, B>(
    mut io: T,
    user_id: u32,
    psk: &[u8; KEY_LEN],
    rng: &mut R,
    mut rx: B,
    mut tx: B,
) -> Result<SecureStream<T, B>, SecureError<T::Error>>
where
    T: Read + Write,
    R: RngCore + CryptoRng,
    B: AsMut<[u8]>,
{
    let max_record = max_record_for(rx.as_mut().len())?;
    let (mut hs, n) = ClientHandshake::start(user_id, psk, max_record, rng, tx.as_mut())?;
    write_all(&mut io, tx.as_mut().get(..n).unwrap_or_default())?;
    io.flush().map_err(SecureError::Io)?;
    read_message(&mut io, tx.as_mut(), &mut hs)?;
    match hs.finish() {
        Ok(transport) => Ok(SecureStream::new(io, transport, rx, tx)?),
        Err(e @ HandshakeError::Refused { reason_len, .. }) => {
            let rx = rx.as_mut();
            let want = usize::try_from(reason_len).unwrap_or(usize::MAX).min(rx.len());
            let _ = crate::io::read_full(&mut io, rx.get_mut(..want).unwrap_or_default());
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the server's handshake on `io` after reading the HELLO from it. See
/// [`server_handshake_after_hello`].
pub fn server_handshake<T, R, B>(
    mut io: T,
    lookup: impl FnMut(u32) -> Option<[u8; KEY_LEN]>,
    rng: &mut R,
    rx: B,
    tx: B,
) -> Result<SecureStream<T, B>, SecureError<T::Error>>
where
    T: Read + Write,
    R: RngCore + CryptoRng,
    B: AsMut<[u8]>,
{
    let mut hello = [0u8; HELLO_LEN];
    match crate::io::read_full(&mut io, &mut hello) {
        Ok(HELLO_LEN) => {}
        Ok(_) => return Err(SecureError::Closed),
        Err(e) => return Err(SecureError::Io(e)),
    }
    server_handshake_after_hello(io, &hello, lookup, rng, rx, tx)
}

/// Runs the server's handshake on `io` (pass `&mut` of a socket to keep it),
/// whose HELLO the shell already read: looks up the user's key with `lookup`
/// (`None` for an unknown user: the same work is done under a dummy key),
/// reads message 1, writes message 2 and returns the secure stream. The
/// server announces the largest record `rx` holds (its length less 2, at most
/// 65535; `rx` must hold at least 66 bytes); `tx` also serves as scratch for
/// the handshake and must hold [`SERVER_REPLY_MAX_LEN`] bytes.
///
/// If message 1 does not decrypt, the plaintext 1003 `authentication failed`
/// has been written and flushed and the error is
/// [`HandshakeError::AuthenticationFailed`]: log and count it, then drain
/// and close as after any 1003.
pub fn server_handshake_after_hello<T, R, B>(
    mut io: T,
    hello: &[u8; HELLO_LEN],
    mut lookup: impl FnMut(u32) -> Option<[u8; KEY_LEN]>,
    rng: &mut R,
    mut rx: B,
    mut tx: B,
) -> Result<SecureStream<T, B>, SecureError<T::Error>>
where
    T: Read + Write,
    R: RngCore + CryptoRng,
    B: AsMut<[u8]>,
{
    let max_record = max_record_for(rx.as_mut().len())?;
    if tx.as_mut().len() < SERVER_REPLY_MAX_LEN.max(CLIENT_FIRST_FLIGHT_LEN) {
        return Err(HandshakeError::BufferTooSmall.into());
    }
    let hello = Hello::parse(hello).map_err(HandshakeError::Hello)?;
    let key = lookup(hello.user_id);
    let mut hs = ServerHandshake::new(hello, key.as_ref(), max_record, rng)?;
    read_message(&mut io, tx.as_mut(), &mut hs)?;
    let (n, outcome) = hs.respond(tx.as_mut())?;
    write_all(&mut io, tx.as_mut().get(..n).unwrap_or_default())?;
    io.flush().map_err(SecureError::Io)?;
    match outcome {
        ServerOutcome::Accepted(transport) => Ok(SecureStream::new(io, transport, rx, tx)?),
        ServerOutcome::Refused => Err(HandshakeError::AuthenticationFailed.into()),
    }
}
