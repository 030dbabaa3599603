//! `backup-server user ...`: the registry from the command line.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn server(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_backup-server")).arg("--root").arg(root).args(args).output().unwrap()
}

fn key_line_parts(stdout: &[u8]) -> (u32, String) {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    assert_eq!(text.lines().count(), 1, "exactly one line: {text:?}");
    let rest = text.trim_end().strip_prefix("backup-key:").expect("the key line prefix");
    let (id, key) = rest.split_once(':').unwrap();
    assert!(
        key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{key}"
    );
    (id.parse().unwrap(), key.to_string())
}

#[test]
fn user_add_prints_exactly_one_key_line_and_keeps_the_registry_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let out = server(root.path(), &["user", "add"]);
    assert!(out.status.success());
    let (id, _) = key_line_parts(&out.stdout);
    assert!(id >= 1);
    let mode = std::fs::metadata(root.path().join(".backup-users")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0);
    let listed = server(root.path(), &["user", "list"]);
    assert_eq!(String::from_utf8(listed.stdout).unwrap(), format!("{id}\n"));
}

#[test]
fn a_factory_key_is_taken_as_given_and_rotate_replaces_it() {
    let root = tempfile::tempdir().unwrap();
    let given = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
    let out = server(root.path(), &["user", "add", "--id", "1234", "--key", given]);
    assert_eq!(key_line_parts(&out.stdout), (1234, given.to_lowercase()));
    let rotated = server(root.path(), &["user", "rotate", "1234"]);
    let (id, key) = key_line_parts(&rotated.stdout);
    assert_eq!(id, 1234);
    assert_ne!(key, given.to_lowercase());
    assert!(server(root.path(), &["user", "remove", "1234"]).status.success());
    let again = server(root.path(), &["user", "remove", "1234"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("user 1234 has no key"));
    let listed = server(root.path(), &["user", "list"]);
    assert_eq!(String::from_utf8(listed.stdout).unwrap(), "1234 removed\n", "kept, served to nobody");
}

#[test]
fn a_bad_key_is_a_usage_error_that_does_not_echo_it() {
    let root = tempfile::tempdir().unwrap();
    let out = server(root.path(), &["user", "add", "--key", "secretsecret"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("64 hex digits") && !err.contains("secret"), "{err}");
}
