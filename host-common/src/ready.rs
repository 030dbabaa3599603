//! Whether a socket has input waiting, without waiting for it.

use std::io;
use std::os::fd::AsFd;

use rustix::event::{PollFd, PollFlags, Timespec};

/// Whether a read on `socket` would return at once: bytes have arrived, or
/// the peer has closed (a read then returns 0) or reset it. A poll with a
/// zero timeout: it never blocks.
///
/// The server asks it to decide whether to hold answers for a group commit
/// (only while the next request is already waiting), the client to notice
/// a server's early refusal while it is still uploading.
pub fn readable_now(socket: impl AsFd) -> io::Result<bool> {
    let mut fds = [PollFd::new(&socket, PollFlags::IN)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    Ok(rustix::event::poll(&mut fds, Some(&zero))? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn ready_once_bytes_arrive_or_the_peer_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        assert!(!readable_now(&far).unwrap(), "nothing sent yet");
        near.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !readable_now(&far).unwrap() {
            assert!(std::time::Instant::now() < deadline, "the byte never showed");
        }
        drop(near);
        let mut other = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (quiet, _) = listener.accept().unwrap();
        other.flush().unwrap();
        drop(other);
        while !readable_now(&quiet).unwrap() {
            assert!(std::time::Instant::now() < deadline, "the close never showed");
        }
    }
}
