//! Why a client request failed, before the shell's error types are known.

use crate::client::ClientError;
use crate::error::{ProtocolError, TransportError};
use crate::wire::NameError;

/// A client request's failure as the engine decides it. The transport's and
/// the local source's or sink's own errors stay with the shell, which kept
/// the first of each; [`Fault::into_client`] joins them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    NotFound,
    NoFiles,
    /// 1003: the reason is in the answer reader.
    Server,
    InvalidName(NameError),
    SourceEnded,
    SinkFull,
    /// The source or sink failed: the shell kept its error.
    Local,
    Protocol(ProtocolError),
    /// The peer closed where an answer was due.
    Closed,
    /// The transport failed: the shell kept its error.
    Transport,
}

impl From<ProtocolError> for Fault {
    fn from(e: ProtocolError) -> Self {
        Fault::Protocol(e)
    }
}

impl Fault {
    /// Whether the connection failed, rather than the server, the protocol
    /// or the local side saying no.
    pub(crate) fn is_transport(self) -> bool {
        matches!(self, Fault::Closed | Fault::Transport)
    }

    /// The caller's error, with the transport and local errors the shell kept.
    // Inlined, each call site keeps only the faults it can have: with
    // `outcome` and `check_echo` inlined too, the firmware's client went
    // from 4276 to 4012 bytes.
    #[inline(always)]
    pub(crate) fn into_client<T, L>(
        self,
        transport: Option<TransportError<T>>,
        local: Option<L>,
    ) -> ClientError<T, L> {
        match self {
            Fault::NotFound => ClientError::NotFound,
            Fault::NoFiles => ClientError::NoFiles,
            Fault::Server => ClientError::Server,
            Fault::InvalidName(e) => ClientError::InvalidName(e),
            Fault::SourceEnded => ClientError::SourceEnded,
            Fault::SinkFull => ClientError::SinkFull,
            Fault::Local => local.map_or(ClientError::SinkFull, ClientError::Local),
            Fault::Protocol(e) => ClientError::Protocol(e),
            Fault::Closed => ClientError::Transport(TransportError::Closed),
            Fault::Transport => ClientError::Transport(transport.unwrap_or(TransportError::Closed)),
        }
    }
}
