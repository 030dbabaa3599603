//! Group commit in the filesystem store: held uploads land only at the
//! sync, all of them, in order, and nothing is half-placed on the way.

mod support;

use backup_core::StoreError;
use backup_core::store::Store;
use backup_server::{FsStore, StoreOptions};
use support::temporary_files;

fn upload(store: &mut FsStore, name: &str, data: &[u8]) -> backup_server::fs_store::FsUpload {
    let mut upload = store.begin_upload(7, name, data.len() as u32).unwrap();
    store.write_upload(&mut upload, data).unwrap();
    upload
}

#[test]
fn held_uploads_land_at_the_sync_all_of_them_and_the_last_of_a_name_wins() {
    let root = tempfile::tempdir().unwrap();
    let mut store = FsStore::open(root.path(), StoreOptions::default()).unwrap();
    // More than one group's worth, so some groups are placed before the sync.
    for i in 0..150u32 {
        let name = format!("f{}", i % 100);
        let held = upload(&mut store, &name, format!("version {i}").as_bytes());
        store.commit_upload_deferred(held).unwrap();
    }
    store.sync().unwrap();
    for i in 0..100 {
        let last = if i < 50 { i + 100 } else { i };
        let stored = std::fs::read(root.path().join(format!("7/f{i}"))).unwrap();
        assert_eq!(stored, format!("version {last}").as_bytes());
    }
    assert_eq!(temporary_files(root.path()), Vec::<String>::new());
}

#[test]
fn a_held_upload_is_not_in_place_before_the_sync() {
    let root = tempfile::tempdir().unwrap();
    let mut store = FsStore::open(root.path(), StoreOptions::default()).unwrap();
    let first = upload(&mut store, "doc", b"old");
    store.commit_upload(first).unwrap();
    let held = upload(&mut store, "doc", b"new");
    store.commit_upload_deferred(held).unwrap();
    assert_eq!(std::fs::read(root.path().join("7/doc")).unwrap(), b"old");
    store.sync().unwrap();
    assert_eq!(std::fs::read(root.path().join("7/doc")).unwrap(), b"new");
}

#[test]
fn uploads_held_when_the_connection_ends_leave_the_previous_versions_and_no_temporary_file() {
    let root = tempfile::tempdir().unwrap();
    let mut store = FsStore::open(root.path(), StoreOptions::default()).unwrap();
    let first = upload(&mut store, "doc", b"old");
    store.commit_upload(first).unwrap();
    for name in ["doc", "other"] {
        let held = upload(&mut store, name, b"never acknowledged");
        store.commit_upload_deferred(held).unwrap();
    }
    drop(store);
    assert_eq!(std::fs::read(root.path().join("7/doc")).unwrap(), b"old");
    assert!(!root.path().join("7/other").exists());
    assert_eq!(temporary_files(root.path()), Vec::<String>::new());
}

#[test]
fn a_held_upload_that_cannot_be_placed_fails_the_sync_and_the_others_still_land() {
    let root = tempfile::tempdir().unwrap();
    let mut store = FsStore::open(root.path(), StoreOptions::default()).unwrap();
    let held =
        [upload(&mut store, "a", b"1"), upload(&mut store, "blocked", b"2"), upload(&mut store, "b", b"3")];
    // Something that is not a file now sits where "blocked" would go.
    std::fs::create_dir_all(root.path().join("7/blocked")).unwrap();
    for upload in held {
        store.commit_upload_deferred(upload).unwrap();
    }
    assert_eq!(store.sync(), Err(StoreError::NotAFile));
    assert_eq!(std::fs::read(root.path().join("7/a")).unwrap(), b"1");
    assert_eq!(std::fs::read(root.path().join("7/b")).unwrap(), b"3");
    assert!(root.path().join("7/blocked").is_dir());
    assert_eq!(temporary_files(root.path()), Vec::<String>::new());
    // The failure was reported once; the next sync starts clean.
    store.sync().unwrap();
}
