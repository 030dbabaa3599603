//! The async adapter (feature `async`): the same secure stream over
//! `embedded_io_async::{Read, Write}` transports such as embassy-net's
//! `TcpSocket`, so the async client runs over it unchanged. The record
//! bookkeeping is the blocking stream's; only the transport calls await.

use embedded_io::ReadReady;
use embedded_io_async::{ErrorType, Read, Write};
use rand_core::{CryptoRng, RngCore};

use super::channel::Channel;
use super::handshake::{ClientHandshake, ServerHandshake, ServerOutcome, Transport};
use super::stream::{Inbound, SERVER_SCRATCH_LEN, handshake_window, max_record_for};
use super::{HELLO_LEN, HandshakeError, Hello, KEY_LEN, SecureError};
use crate::error::TransportError;

/// [`SecureStream`](super::SecureStream) over an async transport: one
/// record per `write`, written whole; reads ask for exactly the rest of the
/// record; any fault ends the session.
pub struct AsyncSecureStream<T, B> {
    io: T,
    channel: Channel<B>,
}

async fn write_all<W: Write + ?Sized>(w: &mut W, mut buf: &[u8]) -> Result<(), TransportError<W::Error>> {
    while !buf.is_empty() {
        match w.write(buf).await? {
            0 => return Err(TransportError::WriteZero),
            n => buf = buf.get(n..).unwrap_or_default(),
        }
    }
    Ok(())
}

async fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<usize, R::Error> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match r.read(rest).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

impl<T: Read + Write, B: AsMut<[u8]>> AsyncSecureStream<T, B> {
    /// Wraps `io` after a finished handshake; buffers as for
    /// [`SecureStream::new`](super::SecureStream::new).
    pub fn new(io: T, transport: Transport, rx: B, tx: B) -> Result<Self, HandshakeError> {
        Ok(AsyncSecureStream { io, channel: Channel::new(transport, rx, tx)? })
    }

    /// The most plaintext one `write` sends as one record.
    pub fn max_write(&mut self) -> usize {
        self.channel.max_write()
    }

    async fn fill(&mut self) -> Result<bool, SecureError<T::Error>> {
        loop {
            let space = self.channel.rx_space()?;
            let n = match self.io.read(space).await {
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

impl<T, B> AsyncSecureStream<T, B> {
    /// The transport.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The transport, mutably. Bytes moved on it directly are not part of
    /// the secure session.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Whether a fault ended the session.
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

impl<T: ErrorType, B> ErrorType for AsyncSecureStream<T, B> {
    type Error = SecureError<T::Error>;
}

impl<T: Read + Write, B: AsMut<[u8]>> Read for AsyncSecureStream<T, B> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.channel.check()?;
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.channel.has_plain() && !self.fill().await? {
            return Ok(0);
        }
        Ok(self.channel.take_plain(buf))
    }
}

impl<T: Read + Write, B: AsMut<[u8]>> Write for AsyncSecureStream<T, B> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.channel.check()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let (n, record) = self.channel.seal(buf)?;
        if let Err(e) = write_all(&mut self.io, record).await {
            return Err(self.failed(e.into()));
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.channel.check()?;
        match self.io.flush().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(SecureError::Io(e))),
        }
    }
}

/// The async client asks the blocking `ReadReady`, as embassy-net's sockets
/// answer it without waiting.
impl<T: Read + Write + ReadReady, B: AsMut<[u8]>> ReadReady for AsyncSecureStream<T, B> {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        self.channel.check()?;
        if self.channel.has_plain() {
            return Ok(true);
        }
        self.io.read_ready().map_err(|e| self.failed(SecureError::Io(e)))
    }
}

async fn read_message<T: Read>(
    io: &mut T,
    scratch: &mut [u8],
    hs: &mut impl Inbound,
) -> Result<(), SecureError<T::Error>> {
    while hs.needed() > 0 {
        let window = handshake_window(scratch, hs.needed())?;
        match io.read(window).await {
            Ok(0) => return Err(SecureError::Closed),
            Ok(n) => {
                hs.feed(window.get(..n).unwrap_or_default());
            }
            Err(e) => return Err(SecureError::Io(e)),
        }
    }
    Ok(())
}

/// [`client_handshake`](super::client_handshake) over an async transport.
pub async fn client_handshake_async<T, R, B>(
    mut io: T,
    user_id: u32,
    psk: &[u8; KEY_LEN],
    rng: &mut R,
    mut rx: B,
    mut tx: B,
) -> Result<AsyncSecureStream<T, B>, SecureError<T::Error>>
where
    T: Read + Write,
    R: RngCore + CryptoRng,
    B: AsMut<[u8]>,
{
    let max_record = max_record_for(rx.as_mut().len())?;
    let (mut hs, n) = ClientHandshake::start(user_id, psk, max_record, rng, tx.as_mut())?;
    write_all(&mut io, tx.as_mut().get(..n).unwrap_or_default()).await?;
    io.flush().await.map_err(SecureError::Io)?;
    read_message(&mut io, tx.as_mut(), &mut hs).await?;
    match hs.finish() {
        Ok(transport) => Ok(AsyncSecureStream::new(io, transport, rx, tx)?),
        Err(e @ HandshakeError::Refused { reason_len, .. }) => {
            let rx = rx.as_mut();
            let want = usize::try_from(reason_len).unwrap_or(usize::MAX).min(rx.len());
            let _ = read_full(&mut io, rx.get_mut(..want).unwrap_or_default()).await;
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// [`server_handshake_after_hello`](super::server_handshake_after_hello)
/// over an async transport; `hello` is `None` if the HELLO is still to be
/// read from `io`.
pub async fn server_handshake_async<T, R, B>(
    mut io: T,
    hello: Option<&[u8; HELLO_LEN]>,
    mut lookup: impl FnMut(u32) -> Option<[u8; KEY_LEN]>,
    rng: &mut R,
    mut rx: B,
    mut tx: B,
) -> Result<AsyncSecureStream<T, B>, SecureError<T::Error>>
where
    T: Read + Write,
    R: RngCore + CryptoRng,
    B: AsMut<[u8]>,
{
    let max_record = max_record_for(rx.as_mut().len())?;
    if tx.as_mut().len() < SERVER_SCRATCH_LEN {
        return Err(HandshakeError::BufferTooSmall.into());
    }
    let hello = match hello {
        Some(hello) => *hello,
        None => {
            let mut hello = [0u8; HELLO_LEN];
            match read_full(&mut io, &mut hello).await {
                Ok(HELLO_LEN) => hello,
                Ok(_) => return Err(SecureError::Closed),
                Err(e) => return Err(SecureError::Io(e)),
            }
        }
    };
    let hello = Hello::parse(&hello).map_err(HandshakeError::Hello)?;
    let key = lookup(hello.user_id);
    let mut hs = ServerHandshake::new(hello, key.as_ref(), max_record, rng)?;
    read_message(&mut io, tx.as_mut(), &mut hs).await?;
    let (n, outcome) = hs.respond(tx.as_mut())?;
    write_all(&mut io, tx.as_mut().get(..n).unwrap_or_default()).await?;
    io.flush().await.map_err(SecureError::Io)?;
    match outcome {
        ServerOutcome::Accepted(transport) => Ok(AsyncSecureStream::new(io, transport, rx, tx)?),
        ServerOutcome::Refused => Err(HandshakeError::AuthenticationFailed.into()),
    }
}
