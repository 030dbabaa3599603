//! One server per storage root.
//!
//! Two servers on one root would each remove the other's uploads in flight
//! as leftovers at start-up, and their quota counts would disagree. The
//! first takes an exclusive `flock` on a lock file in the root and writes
//! its process id there; a second is refused, naming that process. The
//! kernel drops the lock when the process ends however it ends, so a killed
//! server never leaves a stale lock behind.

use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// The lock file's name in the root. Not a number, so never a user folder,
/// and below no user folder, so no protocol name reaches it.
pub const LOCK_FILE: &str = ".backup-server.lock";

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct RootLock {
    _file: std::fs::File,
}

/// Takes the root's lock, or says who holds it.
pub fn lock(root_dir: &OwnedFd, root: &Path) -> io::Result<RootLock> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(root_dir, LOCK_FILE, flags, Mode::from_raw_mode(0o600)).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot open the lock file {}: {e}", root.join(LOCK_FILE).display()),
        )
    })?;
    let mut file = std::fs::File::from(fd);
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another backup-server".to_string()
            } else {
                format!("another backup-server (pid {holder})")
            };
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "storage folder {} is in use by {who}; stop it, or give this one another --root",
                    root.display()
                ),
            ));
        }
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot lock {}: {e}", root.join(LOCK_FILE).display()),
            ));
        }
    }
    // Who holds it, for the message a second server prints. Advice only.
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(RootLock { _file: file })
}
