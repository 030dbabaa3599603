//! The temporary files restores write into, beside their targets:
//! `.backup-restore-<pid>-XXXXXX.tmp`. Hidden like other temporary files,
//! recognisable as ours, and naming the process that writes them, so that a
//! file left by a client killed mid-restore can be told from one a running
//! restore is still writing, and removed by the next restore into that
//! folder.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

/// What every one of our temporary names starts with.
pub const PREFIX: &str = ".backup-restore-";
/// What every one of our temporary names ends with.
pub const SUFFIX: &str = ".tmp";

/// A temporary file is stale once the process named in it is gone *and* it
/// has not been written for this long. The pid alone is not enough: a
/// client on another machine writing into a shared folder has a pid that is
/// no process here, but a live restore writes as bytes arrive, so its file
/// is never this old.
pub const STALE_AFTER: Duration = Duration::from_secs(5 * 60);

/// A new temporary file in `dir`, named as ours.
pub fn create(dir: &Path) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .suffix(SUFFIX)
        .tempfile_in(dir)
}

/// Removes the stale temporary files of ours in `dir` (see
/// [`STALE_AFTER`]) and returns their paths. Best effort: a folder or file
/// that cannot be read or removed is left as it is, since the restore itself
/// does not depend on it.
pub fn remove_stale(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else { continue };
        // symlink_metadata: a link named like ours is not ours to follow.
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if meta.is_file() && old && !is_running(pid) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Whether `name` looks like one of our temporary names: a file so named
/// is removed by a restore into its folder once it is old and the pid in
/// its name is gone, so a restore must never create one.
pub fn is_temporary_name(name: &str) -> bool {
    owner(name).is_some()
}

/// The pid in one of our temporary names, if `name` is one.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (pid, random) = rest.split_once('-')?;
    (!random.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then(|| pid.parse().ok())?
}

/// Whether a process of that pid exists here (one of another user's counts:
/// signalling it is refused, not impossible).
fn is_running(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_names_carry_our_pid_and_only_our_names_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let temp = create(dir.path()).unwrap();
        let name = temp.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(PREFIX) && name.ends_with(SUFFIX), "{name}");
        assert_eq!(owner(&name), Some(std::process::id()));
        for other in [
            ".tmpAbC123",
            ".backup-restore-.tmp",
            ".backup-restore-12.tmp",
            ".backup-restore-x-abc.tmp",
            "notes.txt",
        ] {
            assert_eq!(owner(other), None, "{other}");
        }
    }

    #[test]
    fn this_process_is_running() {
        assert!(is_running(std::process::id()));
    }
}
