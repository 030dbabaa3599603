//! The UART as an `embedded-io-async` stream, for the async build: where
//! the blocking driver spins on the FIFO flags, this one yields to the
//! executor, so other tasks run while the line is idle. (A board with UART
//! interrupts would wake the task from its handler instead; QEMU's
//! polling is enough to prove the async client.)

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use backup_core::async_client::AsyncConnect;

use crate::uart::{LineError, Uart, UartLink};

/// Lets the executor run other tasks once, then resumes.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl embedded_io_async::Read for Uart {
    /// Waits (yielding) for the first byte, then takes what the FIFO holds.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, LineError> {
        while !buf.is_empty() && Uart::rx_empty() {
            YieldNow(false).await;
        }
        embedded_io::Read::read(self, buf)
    }
}

impl embedded_io_async::Write for Uart {
    /// Waits (yielding) for room for the first byte, then fills the FIFO.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, LineError> {
        while !buf.is_empty() && Uart::tx_full() {
            YieldNow(false).await;
        }
        embedded_io::Write::write(self, buf)
    }

    async fn flush(&mut self) -> Result<(), LineError> {
        embedded_io::Write::flush(self)
    }
}

impl AsyncConnect for UartLink {
    type Conn = Uart;

    async fn connect(&mut self) -> Result<Uart, LineError> {
        Ok(Uart::handle())
    }
}
