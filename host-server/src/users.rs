//! The user registry: which user ids have a key, and the keys, in one
//! owner-only file of the storage root, `ROOT/.backup-users`, one key line
//! (`backup-key:<id>:<hex>`) per user, and one `backup-removed:<id>` line
//! per user whose key was removed: such a user is served to nobody, not
//! even in plaintext, so removing a key never opens its files to anyone
//! who can reach the server.
//!
//! The file's name is not a number, so it is never a user folder, and it is
//! in no user folder, so no protocol name reaches it. `backup-server user`
//! edits it while servers run: under an exclusive `flock` on a lock file of
//! its own (the server's root lock is held for as long as a server runs), by
//! writing a temporary file, syncing it, renaming it over the old one and
//! syncing the folder, so a crash leaves either the old registry or the new
//! one. Servers look at the file's identity and time stamp before each use
//! and read it again when it changed, so additions, removals and rotations
//! take effect without a restart, on every server sharing the root.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use backup_core::access::KeyedUsers;
use backup_core::wire::MIN_USER_ID;
use host_common::key_line::{Key, KeyLine};
use rustix::fs::FlockOperation;

/// The registry's file name in the storage root.
pub const USERS_FILE: &str = ".backup-users";
/// The lock file that serializes edits of the registry.
const USERS_LOCK: &str = ".backup-users.lock";
/// Where an edit is written before it is renamed into place.
const USERS_TEMP: &str = ".backup-users.new";

/// Owner-only: the file holds every user's secret.
const FILE_MODE: u32 = 0o600;

/// What identifies one version of the file: a rename gives a new inode, an
/// edit in place a new time stamp or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
}

/// Each registered user's key; `None` for a user whose key was removed.
type Keys = BTreeMap<u32, Option<Key>>;

/// The line prefix of a removed user.
const REMOVED_PREFIX: &str = "backup-removed:";

#[derive(Debug, Default)]
struct Cache {
    stamp: Option<Stamp>,
    keys: Keys,
    /// A registry (or its absence) was read successfully. Until then the
    /// server fails closed: every user counts as keyed and no key opens a
    /// handshake, so a registry that cannot be read never hands keyed
    /// users' files to plaintext sessions.
    read_once: bool,
}

/// The registry as a running server sees it.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl Users {
    /// The registry of the storage root `root` (which need not hold one yet:
    /// then no user has a key).
    pub fn new(root: &Path) -> Users {
        Users { path: root.join(USERS_FILE), cache: Mutex::new(Cache::default()) }
    }

    /// The key of `user`, if it has one. A registry that cannot be read or
    /// parsed is logged and the last good one kept, so a half-edited file
    /// never locks everybody out or lets anybody in; before any good read,
    /// nobody has a key that works (and everybody counts as keyed).
    pub fn key(&self, user: u32) -> Option<Key> {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh(&mut cache);
        cache.keys.get(&user).cloned().flatten()
    }

    /// Reads the registry once, for a server about to start: one that
    /// exists but cannot be read or parsed is an error to fix first.
    pub fn check(&self) -> io::Result<()> {
        match read(&self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("users: {e}; fix the file (or restore it from a backup) before starting"),
            )),
        }
    }

    /// The registry as a session authenticated for `user` with `key` sees
    /// it: that key stays current while the registry holds it.
    pub fn session(&self, user: u32, key: Key) -> SessionKeys<'_> {
        SessionKeys { users: self, user, key }
    }

    /// Whether `user` has a key, or had one (and so is never served in
    /// plaintext).
    pub fn is_keyed(&self, user: u32) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refresh(&mut cache);
        !cache.read_once || cache.keys.contains_key(&user)
    }

    fn refresh(&self, cache: &mut Cache) {
        let stamp = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => Some(stamp_of(&meta)),
            // Edits rename a new file over the old one: a registry that was
            // there and is gone was deleted by hand, and its users stay
            // keyed rather than fall back to plaintext.
            Err(e) if e.kind() == io::ErrorKind::NotFound && cache.stamp.is_none() => None,
            Err(e) => {
                log::error!("users: cannot read {}: {e}; keeping the users read before", self.path.display());
                return;
            }
        };
        if stamp == cache.stamp && cache.read_once {
            return;
        }
        match stamp.map(|_| read(&self.path)).transpose() {
            Ok(keys) => {
                cache.keys = keys.map(|(keys, _)| keys).unwrap_or_default();
                cache.stamp = stamp;
                cache.read_once = true;
            }
            Err(e) => log::error!("users: {e}; keeping the users read before"),
        }
    }
}

impl KeyedUsers for Users {
    fn is_keyed(&self, user: u32) -> bool {
        Users::is_keyed(self, user)
    }
}

/// The registry as one authenticated session sees it (see
/// [`Users::session`]).
#[derive(Debug)]
pub struct SessionKeys<'a> {
    users: &'a Users,
    user: u32,
    key: Key,
}

impl KeyedUsers for SessionKeys<'_> {
    fn is_keyed(&self, user: u32) -> bool {
        self.users.is_keyed(user)
    }
    /// Looked up before every request, so `user remove` and `user rotate`
    /// end what sessions opened with the old key may do.
    fn session_key_is_current(&self, user: u32) -> bool {
        user == self.user && self.users.key(user).as_ref() == Some(&self.key)
    }
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        size: meta.size(),
    }
}

/// Reads a registry file: the keys, and the file's stamp.
fn read(path: &Path) -> io::Result<(Keys, Stamp)> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
    let meta = file.metadata()?;
    if meta.mode() & 0o077 != 0 {
        // Someone else could read every key: say so, but keep serving.
        log::warn!("users: {} is readable by others; run chmod 600 on it", path.display());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))?;
    let mut keys = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |e: &dyn std::fmt::Display| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} line {}: {e}", path.display(), index + 1))
        };
        if let Some(id) = line.strip_prefix(REMOVED_PREFIX) {
            let id = id.parse::<u32>().map_err(|e| bad(&e))?;
            keys.insert(id, None);
            continue;
        }
        let entry: KeyLine = line.parse().map_err(|e| bad(&e))?;
        keys.insert(entry.user, Some(entry.key));
    }
    Ok((keys, stamp_of(&meta)))
}

/// Why an edit of the registry failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UsersError {
    /// The user already has a key.
    Exists(u32),
    /// The user has no key.
    Unknown(u32),
    /// The user's key was removed.
    Removed(u32),
    /// The system's random generator failed.
    Random(String),
    /// Reading or writing the registry failed.
    Io(io::Error),
}

impl std::fmt::Display for UsersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsersError::Exists(id) => {
                write!(f, "user {id} already has a key; use `user rotate {id}` for a new one")
            }
            UsersError::Unknown(id) => write!(f, "user {id} has no key; `user list` shows who has"),
            UsersError::Removed(id) => write!(
                f,
                "user {id} has no key: it was removed, and its files are served to nobody; `user add --id {id}` gives it a new key"
            ),
            UsersError::Random(e) => write!(f, "cannot get random bytes from the system: {e}"),
            UsersError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UsersError {}

impl From<io::Error> for UsersError {
    fn from(e: io::Error) -> Self {
        UsersError::Io(e)
    }
}

/// `sudo backup-server user add` on a root that the service's own user owns
/// (a systemd DynamicUser's state folder, say) must leave a registry, and a
/// lock file, that user can read and take: run as root, files the edit
/// creates take the root folder's owner.
fn give_to_root_owner(root: &Path, file: &File, path: &Path) -> io::Result<()> {
    let owner = std::fs::metadata(root)?;
    if rustix::process::geteuid().is_root() && owner.uid() != 0 {
        let (uid, gid) = (owner.uid(), owner.gid());
        let ids = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
        rustix::fs::fchown(file, Some(ids.0), Some(ids.1)).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("cannot give {} to uid {uid}", path.display()))
        })?;
    }
    Ok(())
}

/// Edits of the registry, for `backup-server user`.
pub struct Registry {
    root: PathBuf,
    _lock: File,
    keys: Keys,
}

impl Registry {
    /// Opens the registry of `root` for editing (creating the root,
    /// owner-only, if missing), waiting for any other edit to finish.
    pub fn edit(root: &Path) -> Result<Registry, UsersError> {
        if !root.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create storage folder {}: {e}", root.display()))
            })?;
        }
        let lock_path = root.join(USERS_LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", lock_path.display())))?;
        give_to_root_owner(root, &lock, &lock_path)?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("cannot lock {}", lock_path.display()))
        })?;
        let path = root.join(USERS_FILE);
        let keys = match read(&path) {
            Ok((keys, _)) => keys,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Keys::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Registry { root: root.to_path_buf(), _lock: lock, keys })
    }

    /// The registered users in order, each with whether it has a key
    /// (false: removed).
    pub fn users(&self) -> impl Iterator<Item = (u32, bool)> + '_ {
        self.keys.iter().map(|(&id, key)| (id, key.is_some()))
    }

    /// `id`'s key, or why it has none.
    fn has_key(&self, id: u32) -> Result<(), UsersError> {
        match self.keys.get(&id) {
            Some(Some(_)) => Ok(()),
            Some(None) => Err(UsersError::Removed(id)),
            None => Err(UsersError::Unknown(id)),
        }
    }

    /// Registers a user: `id`, or a new random one that no user has and no
    /// user folder of the root holds (so a new key never opens somebody's
    /// files by chance); `key`, or a new random one. A removed user may be
    /// added again: its files are then served with the new key.
    pub fn add(&mut self, id: Option<u32>, key: Option<Key>) -> Result<KeyLine, UsersError> {
        let id = match id {
            Some(id) if self.has_key(id).is_ok() => return Err(UsersError::Exists(id)),
            Some(id) => id,
            None => self.fresh_id()?,
        };
        let key = match key {
            Some(key) => key,
            None => Key::random().map_err(|e| UsersError::Random(e.to_string()))?,
        };
        self.keys.insert(id, Some(key.clone()));
        self.save()?;
        Ok(KeyLine { user: id, key })
    }

    /// Gives `id` a new random key. Sessions opened with the old key are
    /// refused from their next request; new ones need the new key.
    pub fn rotate(&mut self, id: u32) -> Result<KeyLine, UsersError> {
        self.has_key(id)?;
        let key = Key::random().map_err(|e| UsersError::Random(e.to_string()))?;
        self.keys.insert(id, Some(key.clone()));
        self.save()?;
        Ok(KeyLine { user: id, key })
    }

    /// Removes `id`'s key. Its files stay, served to nobody (not in
    /// plaintext either: that would hand them to anyone who names the id)
    /// until [`add`](Self::add) gives the user a key again; sessions opened
    /// with the removed key are refused from their next request.
    pub fn remove(&mut self, id: u32) -> Result<(), UsersError> {
        self.has_key(id)?;
        self.keys.insert(id, None);
        self.save()
    }

    fn fresh_id(&self) -> Result<u32, UsersError> {
        loop {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes).map_err(|e| UsersError::Random(e.to_string()))?;
            let id = u32::from_le_bytes(bytes);
            if id >= MIN_USER_ID
                && !self.keys.contains_key(&id)
                && std::fs::symlink_metadata(self.root.join(id.to_string())).is_err()
            {
                return Ok(id);
            }
        }
    }

    /// Temporary file, sync, rename, folder sync: the old registry or the
    /// new one, never half of one.
    fn save(&self) -> Result<(), UsersError> {
        let temp = self.root.join(USERS_TEMP);
        let _ = std::fs::remove_file(&temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", temp.display())))?;
        give_to_root_owner(&self.root, &file, &temp)?;
        let mut text =
            String::from("# backup-server users: one key line each. Edit with `backup-server user`.\n");
        for (&user, key) in &self.keys {
            match key {
                Some(key) => text.push_str(&KeyLine { user, key: key.clone() }.expose()),
                None => text.push_str(&format!("{REMOVED_PREFIX}{user}")),
            }
            text.push('\n');
        }
        let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
        zeroize::Zeroize::zeroize(&mut text);
        written.map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", temp.display())))?;
        let path = self.root.join(USERS_FILE);
        std::fs::rename(&temp, &path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot replace {}: {e}", path.display())))?;
        File::open(&self.root).and_then(|dir| dir.sync_all())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_added_user_is_seen_by_a_running_registry_without_a_restart() {
        let root = tempfile::tempdir().unwrap();
        let users = Users::new(root.path());
        assert!(!users.is_keyed(42));
        let line = Registry::edit(root.path()).unwrap().add(Some(42), None).unwrap();
        assert_eq!(users.key(42), Some(line.key.clone()));
        let rotated = Registry::edit(root.path()).unwrap().rotate(42).unwrap();
        assert_ne!(rotated.key, line.key);
        assert_eq!(users.key(42), Some(rotated.key));
        Registry::edit(root.path()).unwrap().remove(42).unwrap();
        assert_eq!(users.key(42), None);
    }

    #[test]
    fn a_removed_user_is_served_to_nobody_until_it_is_added_again() {
        let root = tempfile::tempdir().unwrap();
        let users = Users::new(root.path());
        Registry::edit(root.path()).unwrap().add(Some(42), None).unwrap();
        Registry::edit(root.path()).unwrap().remove(42).unwrap();
        assert!(users.is_keyed(42), "never plaintext again");
        assert_eq!(users.key(42), None, "no handshake succeeds");
        let mut registry = Registry::edit(root.path()).unwrap();
        assert_eq!(registry.users().collect::<Vec<_>>(), [(42, false)]);
        let err = registry.rotate(42).err().unwrap().to_string();
        assert!(err.contains("user add --id 42"), "{err}");
        let line = registry.add(Some(42), None).unwrap();
        assert_eq!(users.key(42), Some(line.key));
    }

    #[test]
    fn a_session_key_stops_being_current_when_rotated_or_removed() {
        let root = tempfile::tempdir().unwrap();
        let users = Users::new(root.path());
        let line = Registry::edit(root.path()).unwrap().add(Some(42), None).unwrap();
        let session = users.session(42, line.key.clone());
        assert!(session.session_key_is_current(42));
        assert!(!session.session_key_is_current(43));
        Registry::edit(root.path()).unwrap().rotate(42).unwrap();
        assert!(!session.session_key_is_current(42));
        let rotated = users.key(42).unwrap();
        let session = users.session(42, rotated);
        Registry::edit(root.path()).unwrap().remove(42).unwrap();
        assert!(!session.session_key_is_current(42));
    }

    #[test]
    fn root_editing_a_root_another_user_owns_leaves_the_registry_to_that_user() {
        let root = tempfile::tempdir().unwrap();
        // Only root can give a folder away; elsewhere there is nothing to see.
        if std::os::unix::fs::chown(root.path(), Some(54321), Some(54321)).is_err() {
            return;
        }
        Registry::edit(root.path()).unwrap().add(None, None).unwrap();
        for file in [USERS_FILE, USERS_LOCK] {
            let meta = std::fs::metadata(root.path().join(file)).unwrap();
            assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (54321, 54321, 0o600), "{file}");
        }
    }

    #[test]
    fn the_registry_file_is_owner_only() {
        let root = tempfile::tempdir().unwrap();
        Registry::edit(root.path()).unwrap().add(None, None).unwrap();
        let mode = std::fs::metadata(root.path().join(USERS_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_new_random_id_never_takes_an_existing_user_folder() {
        let root = tempfile::tempdir().unwrap();
        let line = Registry::edit(root.path()).unwrap().add(None, None).unwrap();
        assert!(line.user >= MIN_USER_ID);
        assert!(!root.path().join(line.user.to_string()).exists());
    }

    #[test]
    fn adding_a_user_twice_or_removing_an_unknown_one_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let mut registry = Registry::edit(root.path()).unwrap();
        registry.add(Some(7), None).unwrap();
        assert!(matches!(registry.add(Some(7), None), Err(UsersError::Exists(7))));
        assert!(matches!(registry.remove(8), Err(UsersError::Unknown(8))));
        assert!(matches!(registry.rotate(8), Err(UsersError::Unknown(8))));
    }

    #[test]
    fn a_registry_that_cannot_be_read_from_the_start_fails_closed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(USERS_FILE), "backup-key:5:nothex\n").unwrap();
        let users = Users::new(root.path());
        assert!(users.is_keyed(5) && users.is_keyed(6), "nobody is served in plaintext");
        assert_eq!(users.key(5), None, "no handshake succeeds");
        let err = users.check().unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("before starting"), "{err}");
        // Fixed, it is read at the next use.
        std::fs::remove_file(root.path().join(USERS_FILE)).unwrap();
        let line = Registry::edit(root.path()).unwrap().add(Some(5), None).unwrap();
        assert_eq!(users.key(5), Some(line.key));
        assert!(!users.is_keyed(6));
    }

    #[test]
    fn a_registry_deleted_by_hand_keeps_its_users_keyed() {
        let root = tempfile::tempdir().unwrap();
        let users = Users::new(root.path());
        Registry::edit(root.path()).unwrap().add(Some(5), None).unwrap();
        assert!(users.is_keyed(5));
        std::fs::remove_file(root.path().join(USERS_FILE)).unwrap();
        assert!(users.is_keyed(5), "not served in plaintext because a file went missing");
    }

    #[test]
    fn a_corrupt_registry_keeps_the_users_read_before() {
        let root = tempfile::tempdir().unwrap();
        let users = Users::new(root.path());
        let line = Registry::edit(root.path()).unwrap().add(Some(5), None).unwrap();
        assert!(users.is_keyed(5));
        std::fs::write(root.path().join(USERS_FILE), "backup-key:5:nothex\n").unwrap();
        assert_eq!(users.key(5), Some(line.key));
        let err = Registry::edit(root.path()).err().unwrap().to_string();
        assert!(err.contains("line 1") && err.contains(USERS_FILE), "{err}");
    }
}
