//! The user id: `--user`, else the one saved in the config folder, else a new
//! random one, saved there.

use std::io::Write;
use std::path::{Path, PathBuf};

use backup_core::wire::MIN_USER_ID;

/// The ids a user may have, for messages and `--help`: the protocol's
/// `user_id` is a u32, and 0 is not used.
pub fn id_range() -> String {
    format!("{MIN_USER_ID} to {}", u32::MAX)
}

/// Where the id is kept: `$XDG_CONFIG_HOME/backup-client/user-id`, or
/// `~/.config/backup-client/user-id`.
pub fn id_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("backup-client").join("user-id"))
}

/// The user id, and whether it was just created.
pub fn load_or_create(path: &Path) -> Result<(u32, bool), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id = text.trim().parse::<u32>().ok().filter(|&id| id >= MIN_USER_ID).ok_or_else(|| {
                format!(
                    "{} holds {:?}, not a user id ({}); fix or remove it",
                    path.display(),
                    text.trim(),
                    id_range()
                )
            })?;
            Ok((id, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = loop {
                let id: u32 = rand::random();
                if id >= MIN_USER_ID {
                    break id;
                }
            };
            save(path, id).map_err(|e| format!("cannot save the new user id to {}: {e}", path.display()))?;
            Ok((id, true))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn save(path: &Path, id: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(file, "{id}")?;
    file.as_file().sync_all()?;
    // Never replace an id another run saved meanwhile.
    file.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_id_is_non_zero_saved_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup-client/user-id");
        let (id, created) = load_or_create(&path).unwrap();
        assert!(created && id != 0);
        assert_eq!(load_or_create(&path).unwrap(), (id, false));
    }

    #[test]
    fn a_corrupt_id_file_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user-id");
        std::fs::write(&path, "zero\n").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(err.contains("user-id") && err.contains("zero"), "{err}");
    }
}
