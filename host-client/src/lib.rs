//! The backup command-line client: the core's client, plus sockets, files,
//! progress bars and the command line.

pub mod address;
pub mod backup_info;
pub mod commands;
pub mod credentials;
pub mod failure;
pub mod finisher;
pub mod framing;
pub mod identity;
pub mod progress;
pub mod restore_sink;
pub mod restore_temp;
pub mod secure_conn;
pub mod source;
pub mod text;
pub mod transport;
