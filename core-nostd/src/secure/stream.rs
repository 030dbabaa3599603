//! The blocking adapter: any `embedded_io::{Read, Write}` transport made
//! secure, so that the existing [`Client`](crate::Client) and
//! [`Dispatcher`](crate::Dispatcher) run over it unchanged; and blocking
//! helpers that run the handshake on such a transport.

use embedded_io::{ErrorType, Read, ReadReady, Write};
use rand_core::{CryptoRng, RngCore};

use super::channel::Channel;
use super::handshake::{ClientHandshake, ServerHandshake, ServerOutcome, Transport};
use super::{
    CLIENT_FIRST_FLIGHT_LEN, HELLO_LEN, HandshakeError, Hello, KEY_LEN, MAX_RECORD, MIN_MAX_RECORD,
    RECORD_HEADER_LEN, SERVER_REPLY_MAX_LEN, SecureError,
};
use crate::dispatch::SendFile;
use crate::io::{read_full, write_all};

/// A secure session over transport `T`, with receive and send buffers `B`
/// the caller owns (`&mut [u8]` on a microcontroller; a `Vec<u8>` or boxed
/// slice on a host, where a connector must own what each connection holds).
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
/// record (never more), open it in place in the receive buffer and serve its
/// plaintext from there. After any fault (a record out of range or forged,
/// the peer closing inside a record, a transport error) the stream refuses
/// every further read and write: nothing more reaches the peer.
pub struct SecureStream<T, B> {
    io: T,
    channel: Channel<B>,
}

impl<T: Read + Write, B: AsMut<[u8]>> SecureStream<T, B> {
    /// Wraps `io` after a finished handshake. `rx` must hold
    /// [`rx_buffer_len`](super::rx_buffer_len)`(transport.max_record())`;
    /// `tx` at least [`RECORD_OVERHEAD`](super::RECORD_OVERHEAD) + 1 bytes
    /// (more means larger records, up to the peer's `max_record`).
    pub fn new(io: T, transport: Transport, rx: B, tx: B) -> Result<Self, HandshakeError> {
        Ok(SecureStream { io, channel: Channel::new(transport, rx, tx)? })
    }

    /// The most plaintext one `write` sends as one record.
    pub fn max_write(&mut self) -> usize {
        self.channel.max_write()
    }

    /// Reads and opens the next record; `Ok(false)` if the peer closed
    /// cleanly between records.
    fn fill(&mut self) -> Result<bool, SecureError<T::Error>> {
        loop {
            let space = self.channel.rx_space()?;
            let n = match self.io.read(space) {
                Ok(0) if self.channel.at_boundary() => return Ok(false),
                Ok(0) => return Err(self.failed(SecureError::Closed)),
                Ok(n) => n,
                Err(e) => return Err(self.failed(SecureError::Io(e))),
            };
            if self.channel.received(n)? {
                return Ok(true);
            }
        }
    }
}

impl<T, B> SecureStream<T, B> {
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
        self.channel.is_failed()
    }

    /// The largest record the peer accepts.
    pub fn peer_max_record(&self) -> u16 {
        self.channel.peer_max_record()
    }

    fn failed<E>(&mut self, e: SecureError<E>) -> SecureError<E> {
        self.channel.fail();
        e
    }
}

impl<T: ErrorType, B> ErrorType for SecureStream<T, B> {
    type Error = SecureError<T::Error>;
}

impl<T: Read + Write, B: AsMut<[u8]>> Read for SecureStream<T, B> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.channel.check()?;
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.channel.has_plain() && !self.fill()? {
            return Ok(0);
        }
        Ok(self.channel.take_plain(buf))
    }
}

impl<T: Read + Write, B: AsMut<[u8]>> Write for SecureStream<T, B> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.channel.check()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let (n, record) = self.channel.seal(buf)?;
        // A record half written cannot be taken back: any failure ends the session.
        if let Err(e) = write_all(&mut self.io, record) {
            return Err(self.failed(e.into()));
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.channel.check()?;
        self.io.flush().map_err(|e| self.failed(SecureError::Io(e)))
    }
}

impl<T: Read + Write + ReadReady, B: AsMut<[u8]>> ReadReady for SecureStream<T, B> {
    /// True while opened plaintext waits; otherwise whatever the transport
    /// says. A record partly in may still need a moment: its sender writes
    /// records whole, so the rest is on its way.
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        self.channel.check()?;
        if self.channel.has_plain() {
            return Ok(true);
        }
        self.io.read_ready().map_err(|e| self.failed(SecureError::Io(e)))
    }
}

/// Stored files cannot bypass the encryption: the dispatcher copies them
/// through its buffer and `write`.
impl<T: Read + Write, B: AsMut<[u8]>> SendFile for SecureStream<T, B> {}

/// A handshake machine waiting for the peer's message.
pub(crate) trait Inbound {
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

/// The window of `scratch` the next handshake read goes to: exactly what
/// the machine still needs, so the first record stays in the transport.
pub(crate) fn handshake_window(scratch: &mut [u8], needed: usize) -> Result<&mut [u8], HandshakeError> {
    scratch
        .get_mut(..needed.min(scratch.len()))
        .filter(|w| !w.is_empty())
        .ok_or(HandshakeError::BufferTooSmall)
}

/// Reads until the machine needs nothing more.
fn read_message<T: Read>(
    io: &mut T,
    scratch: &mut [u8],
    hs: &mut impl Inbound,
) -> Result<(), SecureError<T::Error>> {
    while hs.needed() > 0 {
        let window = handshake_window(scratch, hs.needed())?;
        match io.read(window) {
            Ok(0) => return Err(SecureError::Closed),
            Ok(n) => {
                hs.feed(window.get(..n).unwrap_or_default());
            }
            Err(e) => return Err(SecureError::Io(e)),
        }
    }
    Ok(())
}

/// The `max_record` a receive buffer of `len` bytes allows.
pub(crate) fn max_record_for(len: usize) -> Result<u16, HandshakeError> {
    let max = len.saturating_sub(RECORD_HEADER_LEN).min(MAX_RECORD);
    if max < MIN_MAX_RECORD { Err(HandshakeError::BufferTooSmall) } else { Ok(max as u16) }
}

/// The scratch a server handshake needs in `tx`.
pub(crate) const SERVER_SCRATCH_LEN: usize = if SERVER_REPLY_MAX_LEN > CLIENT_FIRST_FLIGHT_LEN {
    SERVER_REPLY_MAX_LEN
} else {
    CLIENT_FIRST_FLIGHT_LEN
};

/// Runs the client's handshake on `io` (pass `&mut` of a socket to keep it)
/// and returns the secure stream. The client announces the largest record
/// `rx` holds (its length less 2, at most 65535; `rx` must hold at least 66
/// bytes). `tx` also serves as scratch for the handshake, so it must hold
/// [`CLIENT_FIRST_FLIGHT_LEN`] bytes.
///
/// If the server answers in plaintext instead (an old server, or a refused
/// key), the error is [`HandshakeError::Refused`]; its reason is read and
/// dropped. [`client_handshake_with_reason`] hands it to the caller.
pub fn client_handshake<T, R, B>(
    io: T,
    user_id: u32,
    psk: &[u8; KEY_LEN],
    rng: &mut R,
    rx: B,
    tx: B,
) -> Result<SecureStream<T, B>, SecureError<T::Error>>
where
    T: Read + Write,
    R: RngCore + CryptoRng,
    B: AsMut<[u8]>,
{
    client_handshake_with_reason(io, user_id, psk, rng, rx, tx, |_| {})
}

/// [`client_handshake`], which on a plaintext refusal also reads its reason
/// (as much as `rx` holds) and gives it to `refused` before returning
/// [`HandshakeError::Refused`]: a shell tells a refused key from an old
/// server by it.
pub fn client_handshake_with_reason<T, R, B>(
    mut io: T,
    user_id: u32,
    psk: &[u8; KEY_LEN],
    rng: &mut R,
    mut rx: B,
    mut tx: B,
    refused: impl FnOnce(&[u8]),
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
            let got = read_full(&mut io, rx.get_mut(..want).unwrap_or_default()).unwrap_or(0);
            refused(rx.get(..got).unwrap_or_default());
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the server's handshake on `io` after reading the HELLO from it (for
/// a shell that only peeked at it). See [`server_handshake_after_hello`].
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
    match read_full(&mut io, &mut hello) {
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
/// the handshake and must hold [`CLIENT_FIRST_FLIGHT_LEN`] bytes.
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
    if tx.as_mut().len() < SERVER_SCRATCH_LEN {
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
