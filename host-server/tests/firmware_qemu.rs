//! The firmware example end to end: built for the LM3S6965, booted in QEMU
//! with its UART connected to a real backup-server, and its stored files
//! checked byte for byte against what it generated.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backup_server::{Server, ServerConfig};

#[path = "../../examples/firmware-client/src/content.rs"]
#[allow(dead_code)]
mod content;

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/firmware-client")
}

/// Builds the release firmware in its own workspace and returns the ELF.
/// The async build has a target folder of its own, so the two can build at once.
fn build_firmware(target: &str, asynchronous: bool) -> PathBuf {
    let dir = firmware_dir();
    let target_dir = if asynchronous { "target/async" } else { "target" };
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--locked", "--quiet", "--target", target, "--target-dir", target_dir])
        .args(asynchronous.then_some(["--features", "async"]).into_iter().flatten())
        .current_dir(&dir)
        // The outer build's settings are for the host, not the firmware.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the firmware builds (needs: rustup target add {target})");
    dir.join(format!("{target_dir}/{target}/release/firmware-client"))
}

#[test]
fn cortex_m3_firmware_backs_up_lists_restores_and_deletes_through_qemu_against_the_real_server() {
    run_firmware("thumbv7m-none-eabi", None, false);
}

#[test]
fn the_same_firmware_built_for_cortex_m0_does_too() {
    run_firmware("thumbv6m-none-eabi", Some("cortex-m0"), false);
}

#[test]
fn the_async_firmware_on_embassy_runs_the_same_steps_through_qemu_against_the_real_server() {
    run_firmware("thumbv7m-none-eabi", None, true);
}

#[test]
fn the_async_firmware_built_for_cortex_m0_does_too() {
    run_firmware("thumbv6m-none-eabi", Some("cortex-m0"), true);
}

fn run_firmware(target: &str, cpu: Option<&str>, asynchronous: bool) {
    let elf = build_firmware(target, asynchronous);
    let root = tempfile::tempdir().unwrap();
    // QEMU connects before the guest starts, so the server listens first.
    let server =
        Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), root.path().to_path_buf())).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.shutdown_handle();
    let serving = std::thread::spawn(move || server.run());

    let mut qemu = Command::new("qemu-system-arm")
        .args(["-machine", "lm3s6965evb", "-nographic", "-monitor", "none"])
        .args(cpu.map(|cpu| ["-cpu", cpu]).into_iter().flatten())
        .args(["-semihosting-config", "enable=on,target=native"])
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
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            qemu.kill().unwrap();
            panic!("the firmware did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = qemu.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        status.success(),
        "firmware exit status {status:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("firmware: all steps passed"), "{stdout}");
    assert!(stdout.contains("stack high-water mark: "), "{stdout}");

    let user_dir = root.path().join(content::USER_ID.to_string());
    let log: Vec<u8> = (0..content::LOG_LEN).map(content::log_byte).collect();
    assert!(std::fs::read(user_dir.join(content::LOG_NAME)).unwrap() == log, "log.txt stored byte for byte");
    assert!(!user_dir.join(content::CONFIG_NAME).exists(), "config.bin was deleted");

    handle.shutdown();
    serving.join().unwrap().unwrap();
}

#[test]
fn the_log_generator_writes_numbered_lines() {
    let first: Vec<u8> = (0..32).map(content::log_byte).collect();
    assert_eq!(first, b"log line 000000\nlog line 000001\n");
}
