//! The server is generic over its storage `Backend`: a backend of the
//! test's own plugs in through `Server::bind`, and every connection gets
//! its store through `Backend::session_store`, once, whatever it does.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backup_server::backend::Backend;
use backup_server::metrics::Metrics;
use backup_server::users::Users;
use backup_server::{FsStorage, FsStore, Server, ServerConfig, StoreOptions};
use support::{BACKUP, LIST, PlainClient, RESTORE};

/// The filesystem store, counting the stores it hands out.
struct Counting {
    inner: FsStorage,
    sessions: Arc<AtomicUsize>,
}

impl Backend for Counting {
    type Store = FsStore;

    fn session_store(&self) -> FsStore {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        self.inner.session()
    }
    fn registry(&self) -> Users {
        Users::new(self.inner.root())
    }
    fn describe(&self) -> String {
        format!("counting {}", self.inner.root().display())
    }
    fn report_to(&self, metrics: Metrics) {
        self.inner.report_to(metrics);
    }
}

#[test]
fn another_backend_plugs_in_and_each_connection_gets_one_store() {
    let root = tempfile::tempdir().unwrap();
    let sessions = Arc::new(AtomicUsize::new(0));
    let backend = Counting {
        inner: FsStorage::open(root.path(), StoreOptions::default()).unwrap(),
        sessions: sessions.clone(),
    };
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.shutdown_grace = Duration::from_secs(1);
    let server = Server::bind(config, backend).unwrap();
    assert!(server.describe_store().starts_with("counting "));
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let running = std::thread::spawn(move || server.run());

    for (i, op) in [BACKUP, RESTORE, LIST].into_iter().enumerate() {
        let mut client = PlainClient { stream: std::net::TcpStream::connect(addr).unwrap(), user: 61 };
        let payload = (op == BACKUP).then_some(&b"seam"[..]);
        let reply = client.call(op, b"f", payload);
        assert!(matches!(reply.status, 210..=212), "op {op}: {reply:?}");
        drop(client);
        support::eventually("the connection's store was made", || sessions.load(Ordering::SeqCst) == i + 1);
    }
    handle.shutdown();
    running.join().unwrap().unwrap();
    assert_eq!(sessions.load(Ordering::SeqCst), 3, "one store per connection");
}
