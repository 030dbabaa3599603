//! The backup server: the core's dispatcher, plus threads, sockets and a
//! durable filesystem [`Store`](backup_core::Store).
//!
//! The binary (`backup-server`) parses the command line and runs a
//! [`Server`]; tests and benchmarks run one in-process.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

pub mod auth_limit;
pub mod backend;
pub mod commit_gate;
pub mod config_file;
pub mod conn;
pub mod fs_store;
pub mod ip_key;
pub mod linger;
pub mod listing;
pub mod log_format;
pub mod metrics;
pub mod plaintext;
pub mod proxy_header;
pub mod quota;
pub mod rate;
pub mod root_lock;
pub mod server;
pub mod upload_file;
pub mod users;
/// The threads that sync group commits' files; shared with the client.
pub use host_common::sync_pool;

pub use fs_store::{FsStorage, FsStore, StoreOptions};
pub use server::{DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_MIN_RATE, Server, ServerConfig, ShutdownHandle};

/// Where the server listens when not told otherwise: this machine only, on
/// the protocol's default port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, backup_core::wire::DEFAULT_PORT));
/// Where the server stores files when not told otherwise.
pub const DEFAULT_ROOT: &str = "./backupsvr";
