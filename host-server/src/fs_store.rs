//! Durable filesystem storage: `ROOT/<user id>/<name>`.
//!
//! A backup is written to a new file in the user's folder under a name that
//! starts with [`TEMP_PREFIX`] (a backslash, which no valid file name
//! contains, so it can never be listed, restored, deleted or overwritten by a
//! client), `fdatasync`ed, renamed over the old version within that folder,
//! and the folder is `fsync`ed before 212 is sent. (Temporary files in one
//! shared folder made every upload of every user wait for that folder's lock
//! and, across folders, for the filesystem's rename lock.) Pipelined backups
//! are group-committed: their data is synced by several threads at once,
//! then each is renamed in order, then each touched folder is synced once,
//! then their 212s go out.
//! Every path below the root is walked `openat`-style with `O_NOFOLLOW`, so a
//! symbolic link planted in the tree leads nowhere.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use backup_core::StoreError;
use backup_core::store::{Listing, Store};
use backup_core::wire::validate_name;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::commit_gate::CommitGate;
use crate::listing::{self, SpoolReader};
use crate::quota::QuotaBook;
use crate::root_lock::{self, RootLock};
use crate::sync_pool::{SYNC_THREADS, SyncPool};
use crate::upload_file::UploadFile;

/// How the names of uploads in progress start. A backslash is refused in
/// every file name a client sends, so these never collide with one.
pub const TEMP_PREFIX: &str = "\\upload-";

/// Owner-only permissions for folders, and for files.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// How a [`FsStore`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Bytes each user may store, if limited.
    pub quota: Option<u64>,
    /// `fsync` files and folders before acknowledging. Turning this off is
    /// unsafe: an acknowledged backup can be lost on power failure. It exists
    /// only to compare with peers that do not sync.
    pub durable: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { quota: None, durable: true }
    }
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    root_dir: OwnedFd,
    options: StoreOptions,
    /// Stored bytes per user, only when a quota is set.
    quota: Option<QuotaBook>,
    next_tmp: AtomicU64,
    /// Commits waiting for the disk, admitted fairly.
    commits: CommitGate,
    /// The threads that sync group commits' files.
    syncs: SyncPool,
    /// Uploads being written by a thread of their own.
    offloaded: Arc<AtomicUsize>,
    /// Where group commits are counted, once the server says.
    metrics: std::sync::OnceLock<crate::metrics::Metrics>,
    /// No other server uses this root while we do.
    _lock: RootLock,
}

/// Complete uploads held for one group commit, at most: each holds an open
/// file, and this many syncs at once keep the disk busy.
const MAX_PENDING: usize = 64;

/// Connections whose commits wait for the disk at once, admitted first come
/// first served: a trade of some throughput under saturation for a shorter
/// latency tail. Measured with 64 clients backing up at once (benchmark
/// workload 3), p99/p50 of all requests: unlimited 5-11, 32 slots 4.2-5.9,
/// 8 slots 3-4; and requests served by 256 clients in a minute (the long
/// load test): unlimited 438,000, 32 slots 352,000, 8 or 16 slots 275,000.
const COMMIT_SLOTS: usize = 32;

/// The filesystem storage a server shares between its connections: each
/// connection serves from an [`FsStore`] of its own, made by
/// [`session`](FsStorage::session).
#[derive(Debug, Clone)]
pub struct FsStorage {
    inner: Arc<Inner>,
}

impl FsStorage {
    /// Opens (or creates) the storage root; see [`FsStore::open`].
    pub fn open(root: &Path, options: StoreOptions) -> io::Result<FsStorage> {
        FsStore::open(root, options).map(|store| FsStorage { inner: store.inner.clone() })
    }

    /// A store for one connection: its own pending group commits over the
    /// shared root, quota book and sync threads.
    pub fn session(&self) -> FsStore {
        FsStore { inner: self.inner.clone(), pending: Vec::new(), unsynced: Vec::new(), failed: None }
    }

    /// The storage root, absolute.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Counts group commits in `metrics` (the first call wins).
    pub fn report_to(&self, metrics: crate::metrics::Metrics) {
        let _ = self.inner.metrics.set(metrics);
    }
}

/// One connection's filesystem store: the shared storage, plus the
/// group-commit state of that connection alone.
#[derive(Debug)]
pub struct FsStore {
    inner: Arc<Inner>,
    /// Complete uploads of deferred commits: data not yet synced, not yet
    /// renamed into place. Dropping them removes their temporary files.
    pending: Vec<FsUpload>,
    /// User folders holding renames not yet made durable by `sync`.
    unsynced: Vec<(u32, Arc<OwnedFd>)>,
    /// A deferred commit failed after it returned: the next sync fails.
    failed: Option<StoreError>,
}

/// An upload in progress: a temporary file that is removed unless committed.
#[derive(Debug)]
pub struct FsUpload {
    /// Big uploads start their writeback as they arrive, so the sync before
    /// the 212 has little left to write, and the biggest are written by a
    /// thread of their own.
    file: UploadFile,
    /// The user's folder, which holds the temporary file.
    dir: Arc<OwnedFd>,
    tmp_name: String,
    user: u32,
    name: String,
    size: u32,
    done: bool,
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = rustix::fs::unlinkat(&*self.dir, self.tmp_name.as_str(), AtFlags::empty()) {
                log::warn!("could not remove temporary file {}: {e}", self.tmp_name);
            }
        }
    }
}

/// A stored file open for reading.
#[derive(Debug)]
pub struct FsReader {
    /// The open file, which [`Store::zero_copy`] lends the transport to send
    /// with `sendfile`.
    file: File,
}

/// A sorted snapshot of one user's names, streamed from a spool file (see
/// [`crate::listing`]): it holds a file descriptor and a few KiB,
/// however many names there are and however slowly they are read.
#[derive(Debug, Default)]
pub struct FsListing {
    /// `None` for a user without a folder.
    names: Option<SpoolReader>,
}

impl Listing for FsListing {
    fn payload_len(&self) -> u64 {
        self.names.as_ref().map_or(0, SpoolReader::payload_len)
    }

    fn next_name(&mut self) -> Option<&str> {
        // A spool that cannot be read back ends the names early; the
        // dispatcher then sees fewer bytes than announced and drops the
        // connection, as it must when a reply cannot be framed.
        self.names.as_mut()?.next_name().unwrap_or_else(|e| {
            log::warn!("storage: cannot read back a listing: {e}");
            None
        })
    }
}

impl FsStore {
    /// Syncs the data of the held uploads, several at once, then renames
    /// each into place in order. Returns how the last one (the upload being
    /// committed) fared; an earlier one's failure is kept for `sync`.
    fn place_pending(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        let synced = self.sync_data_all(&pending);
        let mut last = Ok(());
        let count = pending.len();
        if let (Some(metrics), true) = (self.inner.metrics.get(), count > 0) {
            metrics.group_commit(count);
        }
        for (i, (upload, synced)) in pending.into_iter().zip(synced).enumerate() {
            // An upload whose data did not sync is dropped: its temporary
            // file is removed and the previous version stays.
            let result = synced.and_then(|()| self.place(upload));
            match result {
                Err(e) if i + 1 < count => {
                    self.failed.get_or_insert(e);
                }
                _ => last = result,
            }
        }
        last
    }

    /// `fdatasync` of each upload, on the shared sync threads when there
    /// are several: one result per upload, in order.
    fn sync_data_all(&self, uploads: &[FsUpload]) -> Vec<Result<(), StoreError>> {
        let sync = |upload: &FsUpload, result: io::Result<()>| {
            result.map_err(|e| store_error(e, "sync", &upload.name))
        };
        if uploads.len() <= 1 {
            return uploads.iter().map(|u| sync(u, u.file.get_ref().and_then(File::sync_data))).collect();
        }
        // The pool's threads sync duplicates of the files' descriptors: the
        // same files, without lending the uploads to threads that outlive us.
        let files: io::Result<Vec<File>> =
            uploads.iter().map(|u| u.file.get_ref().and_then(File::try_clone)).collect();
        match files {
            Ok(files) => {
                uploads.iter().zip(self.inner.syncs.sync_data_all(files)).map(|(u, r)| sync(u, r)).collect()
            }
            // Out of descriptors: sync them here, one by one.
            Err(_) => uploads.iter().map(|u| sync(u, u.file.get_ref().and_then(File::sync_data))).collect(),
        }
    }

    /// Renames a complete (and, when durable, synced) upload over the
    /// file's previous version; its folder's sync waits for `sync`. With a
    /// quota, the check that counts is made here, under the user's lock.
    fn place(&mut self, mut upload: FsUpload) -> Result<(), StoreError> {
        let inner = &self.inner;
        let dir = &*upload.dir;
        let rename = || {
            rustix::fs::renameat(dir, upload.tmp_name.as_str(), dir, upload.name.as_str())
                .map_err(|e| store_error(e.into(), "rename into place", &upload.name))
        };
        // Only a regular file (or nothing) is replaced: a link or folder
        // planted under that name is refused, not overwritten.
        match &inner.quota {
            None => {
                Inner::file_size(dir, &upload.name)?;
                rename()?;
            }
            Some(book) => book.with_user(
                upload.user,
                || stored_bytes(dir),
                |used| {
                    let replaced = Inner::file_size(dir, &upload.name)?.unwrap_or(0);
                    let after = book.fits(*used, replaced, u64::from(upload.size))?;
                    rename()?;
                    *used = after;
                    Ok(())
                },
            )?,
        }
        upload.done = true;
        if inner.options.durable && !self.unsynced.iter().any(|(user, _)| *user == upload.user) {
            self.unsynced.push((upload.user, upload.dir.clone()));
        }
        Ok(())
    }

    /// Opens (creating, owner-only) the storage root, and removes temporary
    /// files that a previous run left behind.
    pub fn open(root: &Path, options: StoreOptions) -> io::Result<FsStore> {
        if !root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(root)
                .map_err(|e| with_path(e, "create storage folder", root))?;
        }
        let root = root.canonicalize().map_err(|e| with_path(e, "open storage folder", root))?;
        let root_dir = rustix::fs::open(&root, dir_flags(), Mode::empty())
            .map_err(|e| with_path(e.into(), "open storage folder", &root))?;
        let lock = root_lock::lock(&root_dir, &root)?;
        let store = FsStore {
            pending: Vec::new(),
            unsynced: Vec::new(),
            failed: None,
            inner: Arc::new(Inner {
                root,
                root_dir,
                options,
                quota: options.quota.map(QuotaBook::new),
                next_tmp: AtomicU64::new(0),
                commits: CommitGate::new(COMMIT_SLOTS),
                syncs: SyncPool::start(if options.durable { SYNC_THREADS } else { 0 }),
                offloaded: Arc::new(AtomicUsize::new(0)),
                metrics: std::sync::OnceLock::new(),
                _lock: lock,
            }),
        };
        let removed = store.remove_leftovers()?;
        if removed > 0 {
            log::info!("removed {removed} temporary files left by an interrupted run");
        }
        Ok(store)
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Removes the temporary files of uploads that a previous run did not
    /// finish, from every user folder. Anything in the way (a file or link
    /// where a user folder would be, a folder named like a temporary file,
    /// a folder that cannot be read) is logged with its path and skipped:
    /// only a root that cannot be read at all stops the start.
    fn remove_leftovers(&self) -> io::Result<usize> {
        let root = &self.inner.root;
        let mut removed = 0;
        let entries = rustix::fs::Dir::read_from(&self.inner.root_dir)
            .map_err(|e| with_path(e.into(), "read storage folder", root))?;
        for entry in entries {
            let entry = entry.map_err(|e| with_path(e.into(), "read storage folder", root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(user) = name.parse::<u32>() else { continue };
            let path = root.join(&name);
            let dir = match self.inner.user_dir(user) {
                Ok(Some(dir)) => dir,
                Ok(None) => continue,
                Err(e) => {
                    log::warn!("skipping {}: not a user folder ({e})", path.display());
                    continue;
                }
            };
            let entries = match rustix::fs::Dir::read_from(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    log::warn!("skipping {}: cannot read it ({e})", path.display());
                    continue;
                }
            };
            let mut here = 0;
            for entry in entries {
                let Ok(entry) = entry else {
                    log::warn!("skipping the rest of {}: cannot read it", path.display());
                    break;
                };
                if !entry.file_name().to_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                    continue;
                }
                match rustix::fs::unlinkat(&dir, entry.file_name(), AtFlags::empty()) {
                    Ok(()) => here += 1,
                    Err(e) => log::warn!(
                        "skipping {}: cannot remove it ({e})",
                        path.join(entry.file_name().to_string_lossy().as_ref()).display()
                    ),
                }
            }
            if here > 0 {
                if let Err(e) = rustix::fs::fsync(&dir) {
                    log::warn!("cannot sync {}: {e}", path.display());
                }
            }
            removed += here;
        }
        Ok(removed)
    }
}

impl Inner {
    /// The user's folder, opened without following links; `None` if absent.
    fn user_dir(&self, user: u32) -> Result<Option<OwnedFd>, Errno> {
        match rustix::fs::openat(&self.root_dir, user.to_string(), dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn user_dir_or_create(&self, user: u32) -> Result<OwnedFd, Errno> {
        if let Some(dir) = self.user_dir(user)? {
            return Ok(dir);
        }
        let dir = open_or_create_dir(&self.root_dir, &user.to_string())?;
        if self.options.durable {
            // The new folder's entry in the root must survive a crash too.
            rustix::fs::fsync(&self.root_dir)?;
        }
        Ok(dir)
    }

    /// Size of a regular file in `dir`, `None` if there is none of that name.
    fn file_size(dir: &OwnedFd, name: &str) -> Result<Option<u64>, StoreError> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode).is_file() => Ok(Some(stat.st_size as u64)),
            Ok(_) => Err(StoreError::NotAFile),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(store_error(e.into(), "stat", name)),
        }
    }
}

impl Store for FsStore {
    type Upload = FsUpload;
    type Reader = FsReader;
    type Listing<'a> = FsListing;

    fn begin_upload(&mut self, user: u32, name: &str, size: u32) -> Result<FsUpload, StoreError> {
        let inner = &self.inner;
        let dir = inner.user_dir(user).map_err(|e| store_error(e.into(), "open user folder", ""))?;
        if let Some(book) = &inner.quota {
            // Whether it fits now, so a payload that cannot is not sent;
            // `place` decides, when it replaces the file.
            book.with_user(
                user,
                || dir.as_ref().map_or(Ok(0), stored_bytes),
                |used| {
                    let replaced = match &dir {
                        Some(dir) => Inner::file_size(dir, name)?.unwrap_or(0),
                        None => 0,
                    };
                    book.fits(*used, replaced, u64::from(size))
                },
            )?;
        }
        let dir = match dir {
            Some(dir) => dir,
            None => {
                inner.user_dir_or_create(user).map_err(|e| store_error(e.into(), "create user folder", ""))?
            }
        };
        let tmp_name =
            format!("{TEMP_PREFIX}{}-{}", std::process::id(), inner.next_tmp.fetch_add(1, Ordering::Relaxed));
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, tmp_name.as_str(), flags, Mode::from_raw_mode(FILE_MODE))
            .map_err(|e| store_error(e.into(), "create temporary file", &tmp_name))?;
        let upload = FsUpload {
            file: UploadFile::new(File::from(fd), size, &inner.offloaded),
            dir: Arc::new(dir),
            tmp_name,
            user,
            name: name.to_owned(),
            size,
            done: false,
        };
        // Refuse before the payload when the disk cannot hold it. (Checked,
        // not reserved: reserving would let clients claim disk space with
        // headers alone.)
        if let Ok(fs) = rustix::fs::fstatvfs(&*upload.dir) {
            if u64::from(size) > fs.f_bavail.saturating_mul(fs.f_frsize) {
                log::warn!("storage: {size} bytes for {name:?} do not fit on the disk");
                return Err(StoreError::NoSpace);
            }
        }
        Ok(upload)
    }

    fn write_upload(&mut self, upload: &mut FsUpload, chunk: &[u8]) -> Result<(), StoreError> {
        if upload.file.written() + chunk.len() as u64 > u64::from(upload.size) {
            return Err(StoreError::TooLarge);
        }
        upload.file.write_all(chunk).map_err(|e| store_error(e, "write", &upload.name))?;
        Ok(())
    }

    fn commit_upload(&mut self, upload: FsUpload) -> Result<(), StoreError> {
        let committed = self.commit_upload_deferred(upload);
        let synced = self.sync();
        committed.and(synced)
    }

    /// Holds the upload for the next `sync`, which syncs the data of every
    /// held upload at once, renames them into place in order and syncs each
    /// touched folder once. Without syncing, renames it into place at once.
    fn commit_upload_deferred(&mut self, mut upload: FsUpload) -> Result<(), StoreError> {
        if upload.file.written() != u64::from(upload.size) {
            return Err(StoreError::Io);
        }
        upload.file.finish().map_err(|e| store_error(e, "write", &upload.name))?;
        if !self.inner.options.durable {
            return self.place(upload);
        }
        self.pending.push(upload);
        if self.pending.len() < MAX_PENDING {
            return Ok(());
        }
        let inner = self.inner.clone();
        let _turn = inner.commits.enter();
        self.place_pending()
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() && self.unsynced.is_empty() && self.failed.is_none() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let _turn = inner.commits.enter();
        let mut result = self.place_pending();
        if let Some(e) = self.failed.take() {
            result = Err(e);
        }
        for (user, dir) in self.unsynced.drain(..) {
            if let Err(e) = rustix::fs::fsync(&dir) {
                result = Err(store_error(e.into(), "sync folder of user", &user.to_string()));
            }
        }
        result
    }

    fn abort_upload(&mut self, upload: FsUpload) {
        drop(upload);
    }

    fn open(&mut self, user: u32, name: &str) -> Result<(FsReader, u32), StoreError> {
        let dir = self.inner.user_dir(user).map_err(|e| store_error(e.into(), "open user folder", ""))?;
        let dir = dir.ok_or(StoreError::NotFound)?;
        // Without blocking: a FIFO planted in the folder would otherwise
        // hold this thread in open() until a writer appears, and a device
        // may wait for its hardware. Only a regular file is read.
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| store_error(e.into(), "open", name))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| store_error(e.into(), "stat", name))?;
        if !FileType::from_raw_mode(stat.st_mode).is_file() {
            log::warn!("storage: {name:?} of user {user} is not a regular file; refused");
            return Err(StoreError::NotAFile);
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| store_error(e.into(), "open", name))?;
        let size = u32::try_from(stat.st_size).map_err(|_| StoreError::TooLarge)?;
        // Restores read whole files front to back: a larger readahead keeps
        // the disk busy when the file is no longer cached (uploads drop their
        // pages as they are written). Advice only; a failure changes nothing.
        let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::Sequential);
        Ok((FsReader { file: File::from(fd) }, size))
    }

    fn read(&mut self, reader: &mut FsReader, buf: &mut [u8]) -> Result<usize, StoreError> {
        reader.file.read(buf).map_err(|e| store_error(e, "read", ""))
    }

    /// The file itself: the connection sends a `File` with sendfile(2).
    fn zero_copy<'r>(&self, reader: &'r mut FsReader) -> Option<&'r mut dyn std::any::Any> {
        Some(&mut reader.file)
    }

    fn delete(&mut self, user: u32, name: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        let dir = inner.user_dir(user).map_err(|e| store_error(e.into(), "open user folder", ""))?;
        let dir = dir.ok_or(StoreError::NotFound)?;
        let remove = || {
            let size = Inner::file_size(&dir, name)?.ok_or(StoreError::NotFound)?;
            rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                .map_err(|e| store_error(e.into(), "delete", name))?;
            Ok(size)
        };
        match &inner.quota {
            None => {
                remove()?;
            }
            Some(book) => book.with_user(
                user,
                || stored_bytes(&dir),
                |used| {
                    *used = used.saturating_sub(remove()?);
                    Ok(())
                },
            )?,
        }
        if inner.options.durable {
            rustix::fs::fsync(&dir).map_err(|e| store_error(e.into(), "sync folder of", name))?;
        }
        Ok(())
    }

    fn list(&mut self, user: u32) -> Result<FsListing, StoreError> {
        let dir = self.inner.user_dir(user).map_err(|e| store_error(e.into(), "open user folder", ""))?;
        let Some(dir) = dir else { return Ok(FsListing::default()) };
        let spool = listing::snapshot(&dir).map_err(|e| store_error(e, "list", ""))?;
        Ok(FsListing { names: Some(spool.reader()) })
    }
}

/// Bytes in the valid-named regular files of a user folder: what counts
/// against the quota.
fn stored_bytes(dir: &OwnedFd) -> Result<u64, StoreError> {
    let entries = rustix::fs::Dir::read_from(dir).map_err(|e| store_error(e.into(), "list", ""))?;
    let mut total = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| store_error(e.into(), "list", ""))?;
        let Ok(name) = validate_name(entry.file_name().to_bytes()) else { continue };
        if let Ok(Some(size)) = Inner::file_size(dir, name) {
            total = total.saturating_add(size);
        }
    }
    Ok(total)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn open_or_create_dir(parent: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    rustix::fs::openat(parent, name, dir_flags(), Mode::empty())
}

/// Maps an I/O failure to the reason the client hears, and logs the detail
/// the client does not need.
fn store_error(e: io::Error, action: &str, name: &str) -> StoreError {
    let kind = match Errno::from_io_error(&e) {
        Some(Errno::NOENT) => return StoreError::NotFound,
        Some(Errno::NOSPC | Errno::DQUOT) => StoreError::NoSpace,
        Some(Errno::ACCESS | Errno::PERM | Errno::ROFS) => StoreError::PermissionDenied,
        Some(Errno::LOOP | Errno::ISDIR | Errno::NOTDIR) => StoreError::NotAFile,
        Some(Errno::FBIG) => StoreError::TooLarge,
        _ => StoreError::Io,
    };
    log::warn!("storage: cannot {action} {name:?}: {e}");
    kind
}

fn with_path(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {action} {}: {e}", path.display()))
}
