//! The connector: embassy-net's `TcpSocket` itself is the client's
//! connection, unchanged. Its buffers are `'static` (taken once from
//! static cells), so the socket is `TcpSocket<'static>` and can be handed
//! to the client as an owned value. A socket cannot give its buffers back,
//! so when the client is done with a connection it hands the socket back
//! (`AsyncConnect::release`), and the next connect reuses that same socket:
//! one socket, one pair of buffers, any number of reconnections.

use backup_core::async_client::AsyncConnect;
use embassy_net::tcp::{Error, TcpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{Duration, with_timeout};

/// How long a connect, an unacknowledged send or a reset on its way out
/// may take before the socket gives up on it.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to one server, through one socket.
pub struct Server {
    stack: Stack<'static>,
    remote: IpEndpoint,
    /// The socket's buffers until the first connect builds the socket.
    buffers: Option<(&'static mut [u8], &'static mut [u8])>,
    /// The socket between connections.
    idle: Option<TcpSocket<'static>>,
}

impl Server {
    pub fn new(
        stack: Stack<'static>,
        remote: IpEndpoint,
        rx: &'static mut [u8],
        tx: &'static mut [u8],
    ) -> Server {
        Server { stack, remote, buffers: Some((rx, tx)), idle: None }
    }
}

impl AsyncConnect for Server {
    type Conn = TcpSocket<'static>;

    async fn connect(&mut self) -> Result<TcpSocket<'static>, Error> {
        let mut socket = match (self.idle.take(), self.buffers.take()) {
            (Some(socket), _) => socket,
            (None, Some((rx, tx))) => TcpSocket::new(self.stack, rx, tx),
            // The client still holds the socket: it releases every
            // connection before asking for the next, so this does not happen.
            (None, None) => return Err(Error::ConnectionReset),
        };
        // A released socket was aborted: let its reset reach the server
        // before the socket is reused, unless the link is down (a new
        // socket has nothing to flush). Either way it can connect again.
        let _ = with_timeout(TIMEOUT, socket.flush()).await;
        socket.set_timeout(Some(TIMEOUT));
        // The protocol's small headers and answers go out at once (the
        // QEMU firmware's `nodelay=on`).
        socket.set_nagle_enabled(false);
        match socket.connect(self.remote).await {
            Ok(()) => Ok(socket),
            Err(e) => {
                defmt::warn!("connect to {} failed: {}", self.remote, e);
                socket.abort();
                self.idle = Some(socket);
                Err(Error::ConnectionReset)
            }
        }
    }

    /// Keeps the socket for the next connect. Aborting resets the
    /// connection now; dropping the socket instead would lose its
    /// buffers and leave the server to time the connection out.
    fn release(&mut self, mut socket: TcpSocket<'static>) {
        socket.abort();
        self.idle = Some(socket);
    }
}
