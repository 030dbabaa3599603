//! The firmware example end to end: built for the LM3S6965, booted in QEMU
//! with its UART connected to a real backup-server, and its stored files
//! checked byte for byte against what it generated.
//!
//! The default firmware speaks protocol version 3 under the key it was
//! built with (the published test key of `test-key.line`): each test
//! registers that user with `backup-server user add --id N --key HEX` in its
//! own storage root first. The plaintext build and the async build (also
//! plaintext) are served in the clear, which the server allows to loopback
//! peers by default.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use backup_server::{FsStorage, Server, ServerConfig, StoreOptions};

#[path = "../../examples/firmware-client/src/content.rs"]
#[allow(dead_code)]
mod content;

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/firmware-client")
}

/// Which build of the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The default: protocol version 3.
    Secure,
    /// `--features plaintext`: version 2 in the clear.
    Plaintext,
    /// `--features async` (plaintext too), on embassy's executor.
    Async,
}

impl Variant {
    /// Each build has a target folder of its own, so they can build at once
    /// (the same folders as measure.sh's, so CI builds each once).
    fn target_dir(self) -> &'static str {
        match self {
            Variant::Secure => "target",
            Variant::Plaintext => "target/plaintext",
            Variant::Async => "target/async",
        }
    }

    fn features(self) -> Option<&'static str> {
        match self {
            Variant::Secure => None,
            Variant::Plaintext => Some("plaintext"),
            Variant::Async => Some("async"),
        }
    }
}

/// Builds the release firmware in its own workspace and returns the ELF.
fn build_firmware(target: &str, variant: Variant) -> PathBuf {
    let dir = firmware_dir();
    let target_dir = variant.target_dir();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--locked", "--quiet", "--target", target, "--target-dir", target_dir])
        .args(variant.features().map(|f| ["--features", f]).into_iter().flatten())
        .current_dir(&dir)
        // The outer build's settings are for the host, not the firmware.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // The test key, whatever the shell that runs the tests provisions.
        .env_remove("FIRMWARE_KEY_LINE")
        .env_remove("FIRMWARE_KEY")
        .env_remove("FIRMWARE_USER")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the firmware builds (needs: rustup target add {target})");
    dir.join(format!("{target_dir}/{target}/release/firmware-client"))
}

/// The user id and hex key of `test-key.line`, which the default build uses.
fn test_key() -> (u32, String) {
    let line = std::fs::read_to_string(firmware_dir().join("test-key.line")).unwrap();
    let mut parts = line.trim().split(':');
    assert_eq!(parts.next(), Some("backup-key"));
    let id = parts.next().unwrap().parse().unwrap();
    let key = parts.next().unwrap().to_string();
    assert_eq!(key.len(), 64);
    (id, key)
}

/// `backup-server --root ROOT user add --id ID --key HEX`; returns its line.
fn add_user(root: &Path, id: u32, key: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_backup-server"))
        .arg("--root")
        .arg(root)
        .args(["user", "add", "--id", &id.to_string(), "--key", key])
        .output()
        .unwrap();
    assert!(output.status.success(), "user add: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn cortex_m3_firmware_speaks_version_3_through_qemu_against_the_real_server() {
    let (id, key) = test_key();
    let run = run_firmware("thumbv7m-none-eabi", None, Variant::Secure, |root| {
        assert_eq!(add_user(root, id, &key).trim(), format!("backup-key:{id}:{key}"));
    });
    run.assert_passed();
    run.assert_stored(id);
}

#[test]
fn the_version_3_firmware_built_for_cortex_m0_does_too() {
    let (id, key) = test_key();
    let run = run_firmware("thumbv6m-none-eabi", Some("cortex-m0"), Variant::Secure, |root| {
        add_user(root, id, &key);
    });
    run.assert_passed();
    run.assert_stored(id);
}

#[test]
fn the_version_3_firmware_under_another_key_is_refused_and_stores_nothing() {
    let (id, key) = test_key();
    let other: String = key.chars().rev().collect();
    let run = run_firmware("thumbv7m-none-eabi", None, Variant::Secure, |root| {
        add_user(root, id, &other);
    });
    assert!(!run.output.status.success(), "{}", run.stdout());
    // Step 11: the handshake (see `Step` in the firmware's main.rs).
    assert!(run.stdout().contains("firmware: failed at step 11"), "{}", run.stdout());
    assert!(!run.root.path().join(id.to_string()).join(content::LOG_NAME).exists());
}

#[test]
fn cortex_m3_plaintext_firmware_backs_up_lists_restores_and_deletes_through_qemu_against_the_real_server() {
    let run = run_firmware("thumbv7m-none-eabi", None, Variant::Plaintext, |_| {});
    run.assert_passed();
    run.assert_stored(content::USER_ID);
}

#[test]
fn the_plaintext_firmware_built_for_cortex_m0_does_too() {
    let run = run_firmware("thumbv6m-none-eabi", Some("cortex-m0"), Variant::Plaintext, |_| {});
    run.assert_passed();
    run.assert_stored(content::USER_ID);
}

#[test]
fn the_async_firmware_on_embassy_runs_the_same_steps_through_qemu_against_the_real_server() {
    let run = run_firmware("thumbv7m-none-eabi", None, Variant::Async, |_| {});
    run.assert_passed();
    run.assert_stored(content::USER_ID);
}

#[test]
fn the_async_firmware_built_for_cortex_m0_does_too() {
    let run = run_firmware("thumbv6m-none-eabi", Some("cortex-m0"), Variant::Async, |_| {});
    run.assert_passed();
    run.assert_stored(content::USER_ID);
}

/// A finished run: what QEMU printed, and the server's storage root.
struct Run {
    output: Output,
    root: tempfile::TempDir,
    variant: Variant,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn assert_passed(&self) {
        let stdout = self.stdout();
        assert!(
            self.output.status.success(),
            "firmware exit status {:?}\n{stdout}\n{}",
            self.output.status,
            String::from_utf8_lossy(&self.output.stderr)
        );
        assert!(stdout.contains("firmware: all steps passed"), "{stdout}");
        assert!(stdout.contains("stack high-water mark: "), "{stdout}");
        if self.variant == Variant::Secure {
            assert!(stdout.contains("handshake: ") && stdout.contains(" instructions"), "{stdout}");
        }
    }

    fn assert_stored(&self, user: u32) {
        let user_dir = self.root.path().join(user.to_string());
        let log: Vec<u8> = (0..content::LOG_LEN).map(content::log_byte).collect();
        assert!(
            std::fs::read(user_dir.join(content::LOG_NAME)).unwrap() == log,
            "log.txt stored byte for byte"
        );
        assert!(!user_dir.join(content::CONFIG_NAME).exists(), "config.bin was deleted");
    }
}

/// Flash (.vector_table + .text + .rodata) and static RAM (.data + .bss +
/// .uninit) of `elf`, as measure.sh counts them, if binutils are there.
fn sizes(elf: &Path) -> Option<(u64, u64)> {
    let output = Command::new("arm-none-eabi-size").arg("-A").arg(elf).output().ok()?;
    let (mut flash, mut ram) = (0, 0);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(size)) = (fields.next(), fields.next().and_then(|s| s.parse::<u64>().ok()))
        else {
            continue;
        };
        match name {
            ".vector_table" | ".text" | ".rodata" => flash += size,
            ".data" | ".bss" | ".uninit" => ram += size,
            _ => {}
        }
    }
    Some((flash, ram))
}

/// Builds and boots the firmware against a fresh server whose root `setup`
/// prepares first (the registry is read from the root as the server runs).
fn run_firmware(target: &str, cpu: Option<&str>, variant: Variant, setup: impl FnOnce(&Path)) -> Run {
    let elf = build_firmware(target, variant);
    let root = tempfile::tempdir().unwrap();
    setup(root.path());
    // QEMU connects before the guest starts, so the server listens first.
    let store = FsStorage::open(root.path(), StoreOptions::default()).unwrap();
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()), store).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = std::thread::spawn(move || server.run());

    let mut qemu = Command::new("qemu-system-arm");
    qemu.args(["-machine", "lm3s6965evb", "-nographic", "-monitor", "none"])
        .args(cpu.map(|cpu| ["-cpu", cpu]).into_iter().flatten())
        .args(["-semihosting-config", "enable=on,target=native"]);
    if variant == Variant::Secure {
        // One instruction, one nanosecond of virtual time: the firmware's
        // handshake figure is then an instruction count.
        qemu.args(["-icount", "shift=0"]);
    }
    let mut qemu = qemu
        .arg("-serial")
        .arg(format!("tcp:{addr},nodelay=on"))
        .arg("-kernel")
        .arg(&elf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-arm runs (install it with: bash .ci/setup)");
    // A firmware blocked on a UART read never exits: bound the wait.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if qemu.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            qemu.kill().unwrap();
            panic!("the firmware did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = qemu.wait_with_output().unwrap();
    let run = Run { output, root, variant };
    // The figures the README reports, as this run measured them.
    let (flash, ram) = sizes(&elf).unwrap_or_default();
    println!("{target} {variant:?}: flash {flash} B, static RAM {ram} B");
    println!("{}", run.stdout());

    handle.shutdown();
    serving.join().unwrap().unwrap();
    run
}

#[test]
fn the_log_generator_writes_numbered_lines() {
    let first: Vec<u8> = (0..32).map(content::log_byte).collect();
    assert_eq!(first, b"log line 000000\nlog line 000001\n");
}
