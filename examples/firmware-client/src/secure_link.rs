//! The version-3 connector: on connect, runs the Noise handshake over the
//! UART (`backup_core::secure::client_handshake`) and hands the client the
//! resulting secure stream, which seals every write into a record and opens
//! every record read. The client above it is the same as in the plaintext
//! build.

use core::sync::atomic::{AtomicU32, Ordering};

use backup_core::Connect;
use backup_core::secure::{HandshakeError, SecureError, SecureStream, client_handshake};
use embedded_io::{ErrorType, Read, ReadReady, Write};
use rand_chacha::ChaCha20Rng;

use crate::cycles::Clock;
use crate::key;
use crate::uart::{LineError, Uart};

/// Instructions the last handshake spent computing (its time less what it
/// spent in UART calls), or 0 if none finished.
pub static HANDSHAKE_INSTRUCTIONS: AtomicU32 = AtomicU32::new(0);
/// Handshakes tried and failed: the failure is then reported as such.
pub static HANDSHAKE_FAILURES: AtomicU32 = AtomicU32::new(0);

/// The UART, counting the SysTick ticks spent inside its calls, so that the
/// handshake's own cost can be told from waiting for the server.
pub struct Metered<'c> {
    uart: Uart,
    clock: &'c Clock,
    io_ticks: u32,
}

impl<'c> Metered<'c> {
    fn timed<R>(&mut self, f: impl FnOnce(&mut Uart) -> R) -> R {
        let start = self.clock.now();
        let result = f(&mut self.uart);
        self.io_ticks = self.io_ticks.wrapping_add(self.clock.now().wrapping_sub(start));
        result
    }
}

impl ErrorType for Metered<'_> {
    type Error = LineError;
}

impl Read for Metered<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LineError> {
        self.timed(|uart| uart.read(buf))
    }
}

impl Write for Metered<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LineError> {
        self.timed(|uart| uart.write(buf))
    }

    fn flush(&mut self) -> Result<(), LineError> {
        self.timed(|uart| uart.flush())
    }
}

impl ReadReady for Metered<'_> {
    fn read_ready(&mut self) -> Result<bool, LineError> {
        self.uart.read_ready()
    }
}

/// The network link, made secure. The module carries one TCP connection,
/// so there is one handshake per boot: the record buffers go to the stream
/// it opens, and a second connect fails. (A board whose module reconnects
/// would take the buffers back from the closed stream.)
pub struct SecureLink<'c, R> {
    rng: R,
    clock: &'c Clock,
    buffers: Option<(&'static mut [u8], &'static mut [u8])>,
}

impl<'c, R> SecureLink<'c, R> {
    pub fn new(rng: R, clock: &'c Clock, rx: &'static mut [u8], tx: &'static mut [u8]) -> Self {
        SecureLink { rng, clock, buffers: Some((rx, tx)) }
    }
}

impl<'c> Connect for SecureLink<'c, ChaCha20Rng> {
    type Conn = SecureStream<Metered<'c>, &'static mut [u8]>;

    fn connect(&mut self) -> Result<Self::Conn, SecureError<LineError>> {
        let Some((rx, tx)) = self.buffers.take() else {
            return Err(SecureError::Handshake(HandshakeError::BufferTooSmall));
        };
        let clock = self.clock;
        let io = Metered { uart: Uart::handle(), clock, io_ticks: 0 };
        let start = clock.now();
        match client_handshake(io, key::USER_ID, &key::KEY, &mut self.rng, rx, tx) {
            Ok(stream) => {
                let total = clock.now().wrapping_sub(start);
                let compute = total.saturating_sub(stream.get_ref().io_ticks);
                let instructions = clock.instructions(compute);
                HANDSHAKE_INSTRUCTIONS.store(instructions, Ordering::Relaxed);
                Ok(stream)
            }
            Err(e) => {
                HANDSHAKE_FAILURES.store(HANDSHAKE_FAILURES.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}
