//! What a server stores into: the seam between the server (sockets,
//! threads, sessions) and storage. The server is generic over it; the
//! filesystem store ([`FsStorage`]) is the default, and an object store plugs
//! in beside it without the server knowing which one it has.

use crate::fs_store::{FsStorage, FsStore};
use crate::metrics::Metrics;
use crate::users::Users;

/// A storage backend, shared by every connection of a server.
pub trait Backend: Send + Sync + 'static {
    /// One connection's handle on the store.
    type Store: backup_core::Store + Send + 'static;

    /// The handle a new connection serves from: the one way a connection
    /// gets its store.
    fn session_store(&self) -> Self::Store;

    /// The user registry of this storage (every server sharing the
    /// storage sees the same users).
    fn registry(&self) -> Users;

    /// Where files go, for the start-up line ("/srv/backup", say).
    fn describe(&self) -> String;

    /// Counts what only the store sees (group commits) in `metrics`.
    fn report_to(&self, metrics: Metrics);
}

impl Backend for FsStorage {
    type Store = FsStore;

    fn session_store(&self) -> FsStore {
        self.session()
    }

    fn registry(&self) -> Users {
        Users::new(self.root())
    }

    fn describe(&self) -> String {
        self.root().display().to_string()
    }

    fn report_to(&self, metrics: Metrics) {
        FsStorage::report_to(self, metrics);
    }
}
