//! What the host crates share, so that each exists once: whether a socket
//! has input waiting (behind both sides' `embedded_io::ReadReady`), and the
//! threads that `fdatasync` files in parallel (the server's group commits,
//! the client's restored files). Host-only; the protocol lives in
//! `backup-core`.

pub mod ready;
pub mod sync_pool;
