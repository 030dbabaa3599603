//! What went wrong, as a message that says what to try, and an exit code.

use std::fmt::Display;
use std::io;

use backup_core::error::TransportError;
use backup_core::{ClientError, ProtocolError};

use crate::secure_conn::HandshakeFailure;

/// Exit codes, one per kind of failure, so scripts can tell them apart.
pub mod code {
    /// A local problem: a missing file, a file in the way, bad configuration.
    pub const LOCAL: u8 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// The server has no file of that name.
    pub const NOT_FOUND: u8 = 3;
    /// The user has no files on the server.
    pub const NO_FILES: u8 = 4;
    /// The server refused, with a reason.
    pub const SERVER: u8 = 5;
    /// The connection failed, or the server broke the protocol.
    pub const CONNECTION: u8 = 6;
}

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn local(message: impl Into<String>) -> Failure {
        Failure { code: code::LOCAL, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: code::USAGE, message: message.into() }
    }
}

/// The handshake failure an I/O error carries, if it does.
fn handshake_failure(e: &io::Error) -> Option<&HandshakeFailure> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<HandshakeFailure>())
}

/// A key is set up and the server does not speak version 3.
fn old_server(doing: &str, server: &str) -> String {
    format!(
        "{doing}: {server} does not speak protocol version 3 (authenticated, encrypted sessions), and a \
         key is set up, so this client will not fall back to plaintext by itself; upgrade the server, or \
         pass --plaintext to talk to it without authentication (anyone on the network can then read and \
         change what is sent)"
    )
}

/// What a client call was doing, for messages.
pub struct Context<'a> {
    /// "backing up notes.txt", say.
    pub doing: String,
    pub server: &'a str,
    pub user: u32,
    pub timeout_secs: u64,
}

impl Context<'_> {
    /// Explains a failed client call.
    pub fn explain<L: Display + std::fmt::Debug>(
        &self,
        e: ClientError<io::Error, L>,
        server_reason: &str,
    ) -> Failure {
        let doing = &self.doing;
        let server = self.server;
        let (code, message) = match e {
            ClientError::NotFound => (
                code::NOT_FOUND,
                format!(
                    "{doing}: no such file on {server} for user {}; `backup-client list` shows what is there",
                    self.user
                ),
            ),
            ClientError::NoFiles => (
                code::NO_FILES,
                format!(
                    "no files stored on {server} for user {}; back one up with `backup-client backup FILE`",
                    self.user
                ),
            ),
            ClientError::Server => {
                // The reason is the server's text: escaped, it cannot drive the terminal.
                let reason = if server_reason.is_empty() {
                    "no reason given".to_string()
                } else {
                    crate::text::printable(server_reason)
                };
                (code::SERVER, format!("{doing}: the server refused: {reason}"))
            }
            ClientError::InvalidName(e) => (
                code::LOCAL,
                format!("{doing}: {e}; names are 1 to 255 bytes with no '/', '\\' or control characters"),
            ),
            ClientError::SourceEnded => (
                code::LOCAL,
                format!(
                    "{doing}: the file got shorter while it was read, so it was not stored and the server \
                     keeps any earlier version; try again once nothing is writing to it"
                ),
            ),
            ClientError::SinkFull => (code::LOCAL, format!("{doing}: could not write the restored file")),
            ClientError::Local(e) => (code::LOCAL, format!("{doing}: {e}")),
            ClientError::Protocol(e) => (code::CONNECTION, self.protocol(e)),
            ClientError::Transport(e) => (code::CONNECTION, self.transport(e)),
            other => (code::CONNECTION, format!("{doing}: {other}")),
        };
        Failure { code, message }
    }

    fn protocol(&self, e: ProtocolError) -> String {
        format!(
            "{}: {} answered with something this client cannot read ({e}); is it a backup server?",
            self.doing, self.server
        )
    }

    fn transport(&self, e: TransportError<io::Error>) -> String {
        let (doing, server) = (&self.doing, self.server);
        match e {
            TransportError::Io(e) if handshake_failure(&e).is_some() => {
                let user = self.user;
                match handshake_failure(&e) {
                    Some(HandshakeFailure::KeyRefused) => format!(
                        "{doing}: {server} does not accept your key for user {user} (authentication \
                         failed); check that the key line you logged in with is this server's, from \
                         `backup-server user add` or `user rotate`, then run `backup-client login` again"
                    ),
                    Some(HandshakeFailure::Refused(reason)) if reason.contains("unknown op") => {
                        old_server(doing, server)
                    }
                    Some(HandshakeFailure::Refused(reason)) => {
                        format!("{doing}: {server} refused the authenticated session: {reason}")
                    }
                    _ => old_server(doing, server),
                }
            }
            TransportError::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => format!(
                    "{doing}: cannot connect to {server}: connection refused; is backup-server running there? \
                     Check --server or server.info"
                ),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
                    "{doing}: no answer from {server} within the {secs} s of --timeout (the server must \
                     answer, and move at least {kib} KiB, within each {secs} s it keeps the client waiting); \
                     check the address and the server, or allow longer with --timeout",
                    secs = self.timeout_secs,
                    kib = crate::transport::PROGRESS_CHUNK / 1024,
                ),
                // The block framing's translator refusing the server's bytes.
                io::ErrorKind::InvalidData => format!(
                    "{doing}: {server} answered with something this client cannot read ({e}); is it a \
                     backup server?"
                ),
                _ => format!(
                    "{doing}: connection to {server} failed: {e}; check that backup-server is running there"
                ),
            },
            TransportError::Closed => {
                format!(
                    "{doing}: {server} closed the connection unexpectedly; see the server's log, then try again"
                )
            }
            other => format!("{doing}: connection to {server} failed: {other}"),
        }
    }
}
