//! The generated files and the checker as `embedded-io-async` source and
//! sink, for the async build: they never wait, so they answer at once.

use core::convert::Infallible;

use crate::content::{Checker, Generated};

impl embedded_io_async::Read for Generated {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        embedded_io::Read::read(self, buf)
    }
}

impl embedded_io_async::Write for Checker {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        embedded_io::Write::write(self, buf)
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
