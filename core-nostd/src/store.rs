//! What the dispatcher needs from storage. A server implements [`Store`] over
//! its filesystem; [`RamStore`](crate::ram_store::RamStore) keeps files in a
//! fixed buffer for microcontrollers and tests.

use crate::error::StoreError;

/// Storage for users' files. Names given to a store have passed
/// [`validate_name`](crate::wire::validate_name).
///
/// A backup is `begin_upload`, `write_upload` for each chunk, then
/// `commit_upload`, which must make the new version visible atomically: until
/// it returns, `open` and `list` see the previous version, and after a failure
/// or `abort_upload` they still do.
pub trait Store {
    /// An upload in progress.
    type Upload;
    /// A file open for reading. The dispatcher reads it through
    /// [`Store::read`], or, where [`Store::zero_copy`] lends it, lets a
    /// transport that can send it itself do so.
    type Reader;
    /// A snapshot of one user's names.
    type Listing<'a>: Listing
    where
        Self: 'a;

    /// Starts receiving `size` bytes for `name`. Refuse here (quota, size,
    /// space) so the client hears the reason before it sends the payload.
    fn begin_upload(&mut self, user: u32, name: &str, size: u32) -> Result<Self::Upload, StoreError>;
    /// Appends the next chunk of the payload.
    fn write_upload(&mut self, upload: &mut Self::Upload, chunk: &[u8]) -> Result<(), StoreError>;
    /// Makes the complete upload the file's current version, durably.
    fn commit_upload(&mut self, upload: Self::Upload) -> Result<(), StoreError>;
    /// Like [`commit_upload`](Store::commit_upload), but may leave making
    /// the upload durable, and even current, to the next
    /// [`sync`](Store::sync), so that one sync serves many uploads (the
    /// server syncs their data in parallel and their folder once). The
    /// dispatcher acknowledges such uploads only after that sync, and syncs
    /// before any request that reads or removes files (restore, list,
    /// delete). A deferred commit that fails later fails that sync. By
    /// default this is [`commit_upload`](Store::commit_upload).
    fn commit_upload_deferred(&mut self, upload: Self::Upload) -> Result<(), StoreError> {
        self.commit_upload(upload)
    }
    /// Makes every deferred commit durable. By default there are none.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Discards the upload; the previous version stays.
    fn abort_upload(&mut self, upload: Self::Upload);

    /// Opens a file and returns it with its size. A missing file is
    /// [`StoreError::NotFound`].
    fn open(&mut self, user: u32, name: &str) -> Result<(Self::Reader, u32), StoreError>;
    /// Reads the next bytes of an open file; 0 at its end.
    fn read(&mut self, reader: &mut Self::Reader, buf: &mut [u8]) -> Result<usize, StoreError>;
    /// What the rest of `reader`'s file is, for a transport that can send
    /// it by itself ([`SendFile`](crate::dispatch::SendFile)): an OS file,
    /// say, which a socket hands to the kernel's zero-copy path. The
    /// transport downcasts it and declines what it does not know, so the
    /// two meet on a type both know (such as `std::fs::File`) and neither
    /// knows the other. By default nothing is lent and restores are copied
    /// through the dispatcher's buffer.
    fn zero_copy<'r>(&self, reader: &'r mut Self::Reader) -> Option<&'r mut dyn core::any::Any> {
        let _ = reader;
        None
    }
    /// Removes a file durably. A missing file is [`StoreError::NotFound`].
    fn delete(&mut self, user: u32, name: &str) -> Result<(), StoreError>;
    /// Lists the user's names, sorted by bytes.
    fn list(&mut self, user: u32) -> Result<Self::Listing<'_>, StoreError>;
}

/// One user's names, in ascending byte order.
pub trait Listing {
    /// Length of the list payload: each name's length plus one for its `\n`.
    fn payload_len(&self) -> u64;
    /// The next name, or `None` after the last.
    fn next_name(&mut self) -> Option<&str>;
}

/// A borrowed store is a store, so a dispatcher can serve from one that
/// outlives it.
impl<S: Store + ?Sized> Store for &mut S {
    type Upload = S::Upload;
    type Reader = S::Reader;
    type Listing<'a>
        = S::Listing<'a>
    where
        Self: 'a;

    fn begin_upload(&mut self, user: u32, name: &str, size: u32) -> Result<Self::Upload, StoreError> {
        (**self).begin_upload(user, name, size)
    }
    fn write_upload(&mut self, upload: &mut Self::Upload, chunk: &[u8]) -> Result<(), StoreError> {
        (**self).write_upload(upload, chunk)
    }
    fn commit_upload(&mut self, upload: Self::Upload) -> Result<(), StoreError> {
        (**self).commit_upload(upload)
    }
    fn commit_upload_deferred(&mut self, upload: Self::Upload) -> Result<(), StoreError> {
        (**self).commit_upload_deferred(upload)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn abort_upload(&mut self, upload: Self::Upload) {
        (**self).abort_upload(upload)
    }
    fn open(&mut self, user: u32, name: &str) -> Result<(Self::Reader, u32), StoreError> {
        (**self).open(user, name)
    }
    fn read(&mut self, reader: &mut Self::Reader, buf: &mut [u8]) -> Result<usize, StoreError> {
        (**self).read(reader, buf)
    }
    fn zero_copy<'r>(&self, reader: &'r mut Self::Reader) -> Option<&'r mut dyn core::any::Any> {
        (**self).zero_copy(reader)
    }
    fn delete(&mut self, user: u32, name: &str) -> Result<(), StoreError> {
        (**self).delete(user, name)
    }
    fn list(&mut self, user: u32) -> Result<Self::Listing<'_>, StoreError> {
        (**self).list(user)
    }
}
