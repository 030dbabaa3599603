//! Puts memory.x where the linker finds it and passes the linker scripts
//! (link.x always, defmt.x only with the defmt feature); turns on `cfg(secure)`
//! for the version-3 build; and writes the user id and key the version-3
//! firmware is built with into `$OUT_DIR/key.rs`.
//!
//! The key comes, in this order, from the environment variable
//! `FIRMWARE_KEY_LINE` (the line `backup-server user add` prints,
//! `backup-key:<id>:<64 hex digits>`), from `FIRMWARE_USER` (decimal) with
//! `FIRMWARE_KEY` (64 hex digits), or else from `test-key.line`: a published
//! test key, so that a plain `cargo build` works, and never for a real
//! device. Nothing here prints the key, not even in an error.

use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::copy("memory.x", out.join("memory.x")).expect("memory.x is readable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rustc-link-arg=-Tlink.x");
    if std::env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg=-Tdefmt.x");
    }

    // The version-3 build is every build but the plaintext ones (`plaintext`,
    // and `baseline` and `async`, which enable it).
    println!("cargo::rustc-check-cfg=cfg(secure)");
    if std::env::var_os("CARGO_FEATURE_PLAINTEXT").is_none() {
        println!("cargo::rustc-cfg=secure");
    }
    write_key(&out.join("key.rs"));
}

fn write_key(path: &Path) {
    for var in ["FIRMWARE_KEY_LINE", "FIRMWARE_USER", "FIRMWARE_KEY"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=test-key.line");
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (user, key, test_key) = if let Some(line) = env("FIRMWARE_KEY_LINE") {
        let (user, key) = parse_line(&line).unwrap_or_else(|e| fail("FIRMWARE_KEY_LINE", e));
        (user, key, false)
    } else if let Some(key) = env("FIRMWARE_KEY") {
        let key = parse_key(&key).unwrap_or_else(|e| fail("FIRMWARE_KEY", e));
        let user =
            env("FIRMWARE_USER").unwrap_or_else(|| fail("FIRMWARE_USER", "must be set with FIRMWARE_KEY"));
        let user = parse_user(&user).unwrap_or_else(|e| fail("FIRMWARE_USER", e));
        (user, key, false)
    } else {
        let line = std::fs::read_to_string("test-key.line").expect("test-key.line is readable");
        let (user, key) = parse_line(&line).unwrap_or_else(|e| fail("test-key.line", e));
        (user, key, true)
    };
    if test_key && std::env::var_os("CARGO_FEATURE_PLAINTEXT").is_none() {
        println!(
            "cargo:warning=built with the published test key (test-key.line); \
             set FIRMWARE_KEY_LINE for a real device"
        );
    }
    let bytes: Vec<String> = key.iter().map(|b| format!("0x{b:02x}")).collect();
    let source = format!(
        "/// The user this firmware backs up as.\n\
         pub const USER_ID: u32 = {user};\n\
         /// The user's 32-byte key (protocol version 3's pre-shared key).\n\
         pub const KEY: [u8; 32] = [{}];\n\
         /// Whether this is the published test key of `test-key.line`.\n\
         #[allow(dead_code)]\n\
         pub const TEST_KEY: bool = {test_key};\n",
        bytes.join(", ")
    );
    std::fs::write(path, source).expect("OUT_DIR is writable");
}

/// Stops the build naming the source and the problem, never the value.
fn fail(source: &str, problem: &str) -> ! {
    panic!("{source}: {problem}")
}

/// `backup-key:<id>:<64 hex digits>`, as `backup-server user add` prints it.
fn parse_line(line: &str) -> Result<(u32, [u8; 32]), &'static str> {
    let mut parts = line.trim().splitn(3, ':');
    if parts.next() != Some("backup-key") {
        return Err("not a key line (backup-key:<user id>:<64 hex digits>)");
    }
    let user = parse_user(parts.next().unwrap_or_default())?;
    let key = parse_key(parts.next().unwrap_or_default())?;
    Ok((user, key))
}

fn parse_user(text: &str) -> Result<u32, &'static str> {
    text.trim().parse().map_err(|_| "the user id is not a decimal u32")
}

fn parse_key(text: &str) -> Result<[u8; 32], &'static str> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return Err("the key is not 64 hex digits");
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16).ok_or("the key is not 64 hex digits");
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(key)
}
