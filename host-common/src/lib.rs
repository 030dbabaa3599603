//! What the host crates share, so that each exists once: the key line of
//! protocol version 3, whether a socket
//! has input waiting (behind both sides' `embedded_io::ReadReady`), and the
//! threads that `fdatasync` files in parallel (the server's group commits,
//! the client's restored files). Host-only; the protocol lives in
//! `backup-core`.

pub mod key_line;
pub mod ready;
pub mod sync_pool;
