//! Who may be served in a session: the rule of protocol version 3, written
//! once. A user who has a key is served only in a session authenticated
//! with that key, never in plaintext; inside an authenticated session every
//! request must carry the user id the session was authenticated for (the
//! handshake binds it; a request naming another id would otherwise reach
//! that user's files with this user's key), and the key the session
//! authenticated with must still be that user's key: removing or rotating
//! a key ends what sessions opened with it may do, at their next request.
//!
//! It is a [`Store`] decorator, so the dispatcher serves a guarded store
//! like any other and a refusal is an ordinary 1003 with the reason of
//! [`StoreError::AuthenticationRequired`], [`StoreError::OtherUser`] or
//! [`StoreError::KeyRevoked`].

use crate::error::StoreError;
use crate::store::Store;

/// The reason of the 1003 a server sends to a plaintext (version 1 or 2)
/// request from a peer it serves only in version 3.
pub const REASON_PLAINTEXT_REFUSED: &str =
    "plaintext sessions are not served to your address; use an authenticated session (protocol version 3)";

/// The reason of the 1003 a server sends instead of a handshake to an
/// address that failed too many handshakes lately.
pub const REASON_TOO_MANY_FAILURES: &str =
    "too many failed handshakes from your address; try again in a minute";

/// The reason of the 1003 a server sends instead of a handshake to an
/// address with too many handshakes under way at once.
pub const REASON_TOO_MANY_HANDSHAKES: &str =
    "too many handshakes at once from your address; try again in a moment";

/// Which users have a key; the server's user registry answers.
pub trait KeyedUsers {
    /// Whether `user` has a key, and so must authenticate.
    fn is_keyed(&self, user: u32) -> bool;

    /// Whether the key an authenticated session of `user` was opened with
    /// is still `user`'s key. A registry whose keys can be removed or
    /// replaced while sessions run answers for the session's key (the
    /// server hands each session a view that knows it); the default suits
    /// registries whose keys never change.
    fn session_key_is_current(&self, user: u32) -> bool {
        self.is_keyed(user)
    }
}

impl<K: KeyedUsers + ?Sized> KeyedUsers for &K {
    fn is_keyed(&self, user: u32) -> bool {
        (**self).is_keyed(user)
    }
    fn session_key_is_current(&self, user: u32) -> bool {
        (**self).session_key_is_current(user)
    }
}

/// How the session being served was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SessionAccess {
    /// Versions 1 and 2: only users without a key are served.
    Plaintext,
    /// Version 3, authenticated for this user id: only it is served.
    Authenticated(u32),
}

/// A store that serves only the users a session may reach.
#[derive(Debug)]
pub struct Guarded<S, K> {
    store: S,
    keyed: K,
    access: SessionAccess,
}

impl<S: Store, K: KeyedUsers> Guarded<S, K> {
    /// Guards `store` for a session opened as `access`.
    pub fn new(store: S, keyed: K, access: SessionAccess) -> Self {
        Guarded { store, keyed, access }
    }

    /// The store.
    pub fn into_inner(self) -> S {
        self.store
    }

    fn admit(&self, user: u32) -> Result<(), StoreError> {
        match self.access {
            SessionAccess::Authenticated(own) if own == user => {
                match self.keyed.session_key_is_current(own) {
                    true => Ok(()),
                    false => Err(StoreError::KeyRevoked),
                }
            }
            SessionAccess::Authenticated(_) => Err(StoreError::OtherUser),
            SessionAccess::Plaintext if self.keyed.is_keyed(user) => Err(StoreError::AuthenticationRequired),
            SessionAccess::Plaintext => Ok(()),
        }
    }
}

impl<S: Store, K: KeyedUsers> Store for Guarded<S, K> {
    type Upload = S::Upload;
    type Reader = S::Reader;
    type Listing<'a>
        = S::Listing<'a>
    where
        Self: 'a;

    fn begin_upload(&mut self, user: u32, name: &str, size: u32) -> Result<Self::Upload, StoreError> {
        self.admit(user)?;
        self.store.begin_upload(user, name, size)
    }
    fn write_upload(&mut self, upload: &mut Self::Upload, chunk: &[u8]) -> Result<(), StoreError> {
        self.store.write_upload(upload, chunk)
    }
    fn commit_upload(&mut self, upload: Self::Upload) -> Result<(), StoreError> {
        self.store.commit_upload(upload)
    }
    fn commit_upload_deferred(&mut self, upload: Self::Upload) -> Result<(), StoreError> {
        self.store.commit_upload_deferred(upload)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.store.sync()
    }
    fn abort_upload(&mut self, upload: Self::Upload) {
        self.store.abort_upload(upload)
    }
    fn open(&mut self, user: u32, name: &str) -> Result<(Self::Reader, u32), StoreError> {
        self.admit(user)?;
        self.store.open(user, name)
    }
    fn read(&mut self, reader: &mut Self::Reader, buf: &mut [u8]) -> Result<usize, StoreError> {
        self.store.read(reader, buf)
    }
    // Forwarded, or a guarded plaintext restore would lose `sendfile`.
    fn zero_copy<'r>(&self, reader: &'r mut Self::Reader) -> Option<&'r mut dyn core::any::Any> {
        self.store.zero_copy(reader)
    }
    fn delete(&mut self, user: u32, name: &str) -> Result<(), StoreError> {
        self.admit(user)?;
        self.store.delete(user, name)
    }
    fn list(&mut self, user: u32) -> Result<Self::Listing<'_>, StoreError> {
        self.admit(user)?;
        self.store.list(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ram_store::RamStore;

    struct Only(u32);
    impl KeyedUsers for Only {
        fn is_keyed(&self, user: u32) -> bool {
            user == self.0
        }
    }

    #[test]
    fn a_keyed_user_is_refused_in_plaintext_and_others_are_served() {
        let mut store = Guarded::new(RamStore::<4, 64>::new(), Only(7), SessionAccess::Plaintext);
        assert_eq!(store.list(7).err(), Some(StoreError::AuthenticationRequired));
        assert_eq!(store.delete(7, "a").err(), Some(StoreError::AuthenticationRequired));
        assert_eq!(store.delete(8, "a").err(), Some(StoreError::NotFound));
        assert_eq!(
            StoreError::AuthenticationRequired.reason(),
            "this user requires an authenticated session (protocol version 3)"
        );
    }

    #[test]
    fn an_authenticated_session_serves_only_its_own_user() {
        let mut store = Guarded::new(RamStore::<4, 64>::new(), Only(7), SessionAccess::Authenticated(7));
        assert!(store.begin_upload(7, "a", 0).is_ok());
        assert_eq!(store.begin_upload(8, "a", 0).err(), Some(StoreError::OtherUser));
        assert_eq!(store.open(8, "a").err(), Some(StoreError::OtherUser));
    }

    #[test]
    fn a_session_whose_key_was_revoked_is_refused_from_its_next_request() {
        let revoked = core::cell::Cell::new(false);
        struct Revocable<'a>(&'a core::cell::Cell<bool>);
        impl KeyedUsers for Revocable<'_> {
            fn is_keyed(&self, _: u32) -> bool {
                true
            }
            fn session_key_is_current(&self, _: u32) -> bool {
                !self.0.get()
            }
        }
        let mut store =
            Guarded::new(RamStore::<4, 64>::new(), Revocable(&revoked), SessionAccess::Authenticated(7));
        assert_eq!(store.delete(7, "a").err(), Some(StoreError::NotFound));
        revoked.set(true);
        assert_eq!(store.delete(7, "a").err(), Some(StoreError::KeyRevoked));
        assert_eq!(store.list(7).err(), Some(StoreError::KeyRevoked));
        assert_eq!(
            StoreError::KeyRevoked.reason(),
            "the key of this session was revoked; connect again with the user's current key"
        );
    }
}
