//! The user's key, for authenticated sessions (protocol version 3): from
//! `--key-file PATH`, else the environment variable `BACKUP_KEY`, else the
//! key saved by `backup-client login` in the config folder. Each holds one
//! key line, `backup-key:<user id>:<64 hex digits>`, as `backup-server user
//! add` prints it. Key files must be owner-only, as ssh insists for its
//! keys: a key others can read is not a secret.

use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use host_common::key_line::KeyLine;

/// The environment variable that may hold a key line.
pub const KEY_ENV: &str = "BACKUP_KEY";

/// Where `login` saves the key: `$XDG_CONFIG_HOME/backup-client/key`, or
/// `~/.config/backup-client/key`, beside the user id.
pub fn saved_key_path() -> Option<PathBuf> {
    crate::identity::id_path().map(|path| path.with_file_name("key"))
}

/// Where the key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--key-file`.
    File(PathBuf),
    /// `BACKUP_KEY`.
    Environment,
    /// Saved by `login`.
    Saved(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "--key-file {}", path.display()),
            Source::Environment => write!(f, "{KEY_ENV}"),
            Source::Saved(path) => write!(f, "the key saved by `backup-client login` ({})", path.display()),
        }
    }
}

/// The key to use, if any: `--key-file`, else `BACKUP_KEY`, else the saved
/// one. `env` is the value of `BACKUP_KEY`; `saved` where login saves.
pub fn load(
    key_file: Option<&Path>,
    env: Option<String>,
    saved: Option<&Path>,
) -> Result<Option<(KeyLine, Source)>, String> {
    if let Some(path) = key_file {
        return read_key_file(path, true).map(|line| line.map(|l| (l, Source::File(path.to_path_buf()))));
    }
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        let line = text.parse::<KeyLine>().map_err(|e| format!("{KEY_ENV}: {e}"))?;
        return Ok(Some((line, Source::Environment)));
    }
    match saved {
        Some(path) => read_key_file(path, false).map(|l| l.map(|l| (l, Source::Saved(path.to_path_buf())))),
        None => Ok(None),
    }
}

/// Reads a key file; a missing one is an error only if it was asked for.
fn read_key_file(path: &Path, required: bool) -> Result<Option<KeyLine>, String> {
    // Opened once, then checked and read through that one descriptor: a
    // path swapped between a check and a read (a symbolic link in a folder
    // others can write) cannot pass one file's check and feed another.
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(format!("cannot read the key file {}: {e}", path.display())),
    };
    let meta = file.metadata().map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if std::os::unix::fs::MetadataExt::uid(&meta) != me {
        // Whoever owns it can change it to a key of their choosing.
        return Err(format!(
            "the key file {} belongs to another user; use a key file of your own (uid {me}), chmod 600",
            path.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the key file {} can be read by other users; make it yours alone with: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text)
        .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or_else(|| format!("the key file {} holds no key line", path.display()))?;
    line.parse::<KeyLine>().map(Some).map_err(|e| format!("the key file {}: {e}", path.display()))
}

/// Reads a key line from `input` (for `login` without an argument, so the
/// key need not appear on a command line, where other users can see it).
pub fn read_line(input: &mut dyn BufRead) -> Result<KeyLine, String> {
    let mut text = String::new();
    input.read_line(&mut text).map_err(|e| format!("cannot read the key line: {e}"))?;
    text.parse::<KeyLine>().map_err(|e| e.to_string())
}

/// Saves `line` at `path`, owner-only, replacing a key saved before.
pub fn save(path: &Path, line: &KeyLine) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot save the key to {}: {e}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    // Owner-only, as the key in it: a folder others can list tells them
    // whose key is saved where, and one they can write lets them swap it.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(fail)?;
    // tempfile creates its files owner-only (0600).
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    let mut text = line.expose();
    text.push('\n');
    let written = file.write_all(text.as_bytes()).and_then(|()| file.as_file().sync_all());
    zeroize::Zeroize::zeroize(&mut text);
    written.map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(user: u32) -> KeyLine {
        format!("backup-key:{user}:{}", "0f".repeat(32)).parse().unwrap()
    }

    #[test]
    fn a_saved_key_is_owner_only_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup-client/key");
        save(&path, &line(5)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (loaded, source) = load(None, None, Some(&path)).unwrap().unwrap();
        assert_eq!((loaded, source), (line(5), Source::Saved(path)));
    }

    #[test]
    fn key_file_beats_environment_beats_saved() {
        let dir = tempfile::tempdir().unwrap();
        let (file, saved) = (dir.path().join("file"), dir.path().join("saved"));
        save(&file, &line(1)).unwrap();
        save(&saved, &line(3)).unwrap();
        let env = Some(line(2).expose());
        assert_eq!(load(Some(&file), env.clone(), Some(&saved)).unwrap().unwrap().0.user, 1);
        assert_eq!(load(None, env, Some(&saved)).unwrap().unwrap().0.user, 2);
        assert_eq!(load(None, None, Some(&saved)).unwrap().unwrap().0.user, 3);
        assert!(load(None, None, Some(&dir.path().join("none"))).unwrap().is_none());
    }

    #[test]
    fn a_key_file_another_user_owns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        save(&path, &line(1)).unwrap();
        // Only root can give a file away; elsewhere the check has nothing to see.
        if std::os::unix::fs::chown(&path, Some(54321), None).is_err() {
            return;
        }
        let err = load(Some(&path), None, None).unwrap_err();
        assert!(err.contains("belongs to another user"), "{err}");
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        save(&path, &line(1)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(Some(&path), None, None).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_missing_key_file_that_was_asked_for_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(Some(&dir.path().join("nope")), None, None).is_err());
    }

    #[test]
    fn login_reads_the_line_from_input() {
        let text = format!("{}\n", line(9).expose());
        assert_eq!(read_line(&mut text.as_bytes()).unwrap(), line(9));
        assert!(read_line(&mut "hello\n".as_bytes()).is_err());
    }
}
