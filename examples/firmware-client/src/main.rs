//! Firmware for an LM3S6965 (Cortex-M3) that backs files up to a
//! `backup-server` through its UART, which stands for a network module in
//! transparent TCP mode. It runs the core's client unchanged, with no
//! allocator: back up a 64 KiB log generated on the fly and a config blob,
//! list them, restore each and check it as it streams in, delete one, check
//! that it is gone; all on one connection. The exit status goes to the host
//! through semihosting.
//!
//! The default build speaks protocol version 3: the connection opens with a
//! Noise handshake under the user's key, given at build time (build.rs), and
//! everything after it travels in encrypted records. The `plaintext` build is
//! today's version 2 in the clear, for links that are already secured.

#![no_std]
#![no_main]
// The baseline build leaves the client steps unused.
#![cfg_attr(feature = "baseline", allow(dead_code))]

#[cfg(feature = "async")]
mod async_content;
#[cfg(feature = "async")]
mod async_uart;
// The version-3 build takes its user id from the build, not content.rs.
#[cfg_attr(secure, allow(dead_code))]
mod content;
#[cfg(secure)]
mod cycles;
#[cfg(secure)]
mod entropy;
mod report;
#[cfg(secure)]
mod secure_link;
mod uart;

/// The user id and key this firmware was built with (see build.rs).
#[cfg(secure)]
mod key {
    include!(concat!(env!("OUT_DIR"), "/key.rs"));
}

use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
#[cfg(feature = "defmt")]
use defmt_semihosting as _;

use content::Generated;

/// The transfer buffer: payloads stream through it in chunks this size.
const TRANSFER_BUF_LEN: usize = 1024;
/// The largest record the firmware accepts from the server (version 3).
#[cfg(secure)]
const MAX_RECORD: u16 = 1024;
/// The record buffers (version 3): one record received, opened in place;
/// one record sealed, as large as a transfer-buffer chunk. measure.sh reads
/// these two lines.
#[cfg(secure)]
const RECORD_RX_LEN: usize = 1026;
#[cfg(secure)]
const RECORD_TX_LEN: usize = 1042;
#[cfg(secure)]
const _: () = assert!(
    RECORD_RX_LEN == backup_core::secure::rx_buffer_len(MAX_RECORD)
        && RECORD_TX_LEN == backup_core::secure::tx_buffer_len(TRANSFER_BUF_LEN)
);

/// Logs with defmt when the feature is on; compiles to nothing otherwise,
/// so the default build carries no formatting machinery.
#[cfg(feature = "defmt")]
macro_rules! log {
    ($($arg:tt)*) => {
        defmt::info!($($arg)*)
    };
}

#[cfg(not(feature = "defmt"))]
macro_rules! log {
    ($($arg:tt)*) => {
        ()
    };
}

/// The step that failed, reported as the failure's number.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Step {
    Setup = 1,
    BackupLog,
    BackupConfig,
    List,
    RestoreLog,
    RestoreConfig,
    Delete,
    RestoreDeleted,
    Connection,
    /// No entropy for the handshake's keys.
    #[cfg(secure)]
    Entropy,
    /// The version-3 handshake failed (wrong key, unknown user, old server).
    #[cfg(secure)]
    Handshake,
}

#[entry]
fn main() -> ! {
    let link = uart::Uart::init();
    let Some(buf) = cortex_m::singleton!(: [u8; TRANSFER_BUF_LEN] = [0; TRANSFER_BUF_LEN]) else {
        finish(Err(Step::Setup))
    };
    run(link, buf)
}

#[cfg(not(feature = "async"))]
fn run(link: uart::Uart, buf: &'static mut [u8]) -> ! {
    finish(session(link, buf))
}

/// The async build: the same steps as one task on embassy's thread-mode
/// executor, through the async client.
#[cfg(feature = "async")]
fn run(_link: uart::Uart, buf: &'static mut [u8]) -> ! {
    let Some(executor) =
        cortex_m::singleton!(: embassy_executor::Executor = embassy_executor::Executor::new())
    else {
        finish(Err(Step::Setup))
    };
    executor.run(|spawner| {
        if spawner.spawn(async_task(buf)).is_err() {
            finish(Err(Step::Setup));
        }
    })
}

#[cfg(feature = "async")]
#[embassy_executor::task]
async fn async_task(buf: &'static mut [u8]) {
    finish(async_session(buf).await)
}

/// Reports the result to the host and stops QEMU.
fn finish(result: Result<(), Step>) -> ! {
    let stack = report::stack_high_water_mark();
    match result {
        Ok(()) => {
            say(&[b"stack high-water mark: "], stack, b" bytes");
            log!("stack high-water mark: {=u32} bytes; all steps passed", stack);
            say(&[b"firmware: all steps passed"], u32::MAX, b"");
            debug::exit(EXIT_SUCCESS);
        }
        Err(step) => {
            log!("failed at {}", step);
            say(&[b"firmware: failed at step "], step as u32, b"");
            debug::exit(EXIT_FAILURE);
        }
    }
    halt()
}

/// A plain line to the host (`number` left out when `u32::MAX`). With
/// defmt on, its frames own the output, so plain lines stay out of it.
fn say(text: &[&[u8]], number: u32, tail: &[u8]) {
    if cfg!(feature = "defmt") {
        return;
    }
    let mut digits = [0u8; 10];
    let number = if number == u32::MAX { &[][..] } else { report::decimal(number, &mut digits) };
    let mut parts = [&[][..]; 4];
    for (slot, part) in parts.iter_mut().zip(text.iter().copied().chain([number, tail])) {
        *slot = part;
    }
    report::line(&parts);
}

#[cfg(all(not(secure), not(any(feature = "baseline", feature = "async"))))]
fn session(_uart: uart::Uart, buf: &'static mut [u8]) -> Result<(), Step> {
    let mut client =
        backup_core::Client::new(uart::UartLink, content::USER_ID, buf).map_err(|_| Step::Setup)?;
    steps(&mut client)
}

/// Version 3: seeds the generator, starts the clock that measures the
/// handshake, and runs the same steps through the secure connector.
#[cfg(secure)]
fn session(_uart: uart::Uart, buf: &'static mut [u8]) -> Result<(), Step> {
    use backup_core::secure::SECURE_VERSION;
    use core::sync::atomic::Ordering;

    let rng = entropy::from_host().ok_or(Step::Entropy)?;
    let (Some(rx), Some(tx)) = (
        cortex_m::singleton!(: [u8; RECORD_RX_LEN] = [0; RECORD_RX_LEN]),
        cortex_m::singleton!(: [u8; RECORD_TX_LEN] = [0; RECORD_TX_LEN]),
    ) else {
        return Err(Step::Setup);
    };
    let clock = cycles::Clock::start();
    let link = secure_link::SecureLink::new(rng, &clock, rx, tx);
    let mut client = backup_core::Client::new(link, key::USER_ID, buf)
        .map_err(|_| Step::Setup)?
        .with_version(SECURE_VERSION);
    let result = steps(&mut client);
    if secure_link::HANDSHAKE_FAILURES.load(Ordering::Relaxed) > 0 {
        return Err(Step::Handshake);
    }
    let instructions = secure_link::HANDSHAKE_INSTRUCTIONS.load(Ordering::Relaxed);
    say(&[b"handshake: "], instructions, b" instructions (exact under QEMU -icount shift=0)");
    log!("handshake: {=u32} instructions", instructions);
    result
}

/// The scenario, on whichever connector: back up, list, restore and check,
/// delete, check it is gone, all on one connection.
#[cfg(not(any(feature = "baseline", feature = "async")))]
fn steps<C: backup_core::Connect>(client: &mut backup_core::Client<'_, C>) -> Result<(), Step> {
    use backup_core::ClientError;
    use content::{CONFIG_NAME, Checker, LOG_NAME};

    client.backup(LOG_NAME, content::LOG_LEN, &mut Generated::log()).map_err(|_| Step::BackupLog)?;
    log!("backed up {=str}", LOG_NAME);
    client
        .backup(CONFIG_NAME, content::CONFIG_LEN, &mut Generated::config())
        .map_err(|_| Step::BackupConfig)?;
    log!("backed up {=str}", CONFIG_NAME);

    // Other files of this user may exist from earlier runs; ours must be there.
    let mut seen = 0u8;
    client
        .list(|name| {
            if name == LOG_NAME.as_bytes() {
                seen |= 1;
            } else if name == CONFIG_NAME.as_bytes() {
                seen |= 2;
            }
        })
        .map_err(|_| Step::List)?;
    if seen != 3 {
        return Err(Step::List);
    }

    for (name, expected, step) in [
        (LOG_NAME, Generated::log(), Step::RestoreLog),
        (CONFIG_NAME, Generated::config(), Step::RestoreConfig),
    ] {
        let mut check = Checker::new();
        let size = client.restore(name, &mut check, |_| {}).map_err(|_| step)?;
        if size != expected.len() || check.count != size || check.hash.0 != expected.checksum() {
            return Err(step);
        }
        log!("restored {=str}: {=u32} bytes, checksum ok", name, size);
    }

    client.delete(CONFIG_NAME).map_err(|_| Step::Delete)?;
    match client.restore(CONFIG_NAME, &mut Checker::new(), |_| {}) {
        Err(ClientError::NotFound) => log!("{=str} is gone, as expected", CONFIG_NAME),
        _ => return Err(Step::RestoreDeleted),
    }
    // Version 2 and 3: the server kept the one connection open throughout.
    if !client.is_connected() {
        return Err(Step::Connection);
    }
    Ok(())
}

/// The blocking session's steps through the async client: the same calls,
/// awaited.
#[cfg(feature = "async")]
async fn async_session(buf: &'static mut [u8]) -> Result<(), Step> {
    use backup_core::ClientError;
    use backup_core::async_client::AsyncClient;
    use content::{CONFIG_NAME, Checker, LOG_NAME, USER_ID};

    let mut client = AsyncClient::new(uart::UartLink, USER_ID, buf).map_err(|_| Step::Setup)?;
    client.backup(LOG_NAME, content::LOG_LEN, &mut Generated::log()).await.map_err(|_| Step::BackupLog)?;
    client
        .backup(CONFIG_NAME, content::CONFIG_LEN, &mut Generated::config())
        .await
        .map_err(|_| Step::BackupConfig)?;
    let mut seen = 0u8;
    client
        .list(|name| {
            if name == LOG_NAME.as_bytes() {
                seen |= 1;
            } else if name == CONFIG_NAME.as_bytes() {
                seen |= 2;
            }
        })
        .await
        .map_err(|_| Step::List)?;
    if seen != 3 {
        return Err(Step::List);
    }
    for (name, expected, step) in [
        (LOG_NAME, Generated::log(), Step::RestoreLog),
        (CONFIG_NAME, Generated::config(), Step::RestoreConfig),
    ] {
        let mut check = Checker::new();
        let size = client.restore(name, &mut check, |_| {}).await.map_err(|_| step)?;
        if size != expected.len() || check.count != size || check.hash.0 != expected.checksum() {
            return Err(step);
        }
        log!("restored {=str}: {=u32} bytes, checksum ok (async)", name, size);
    }
    client.delete(CONFIG_NAME).await.map_err(|_| Step::Delete)?;
    match client.restore(CONFIG_NAME, &mut Checker::new(), |_| {}).await {
        Err(ClientError::NotFound) => {}
        _ => return Err(Step::RestoreDeleted),
    }
    if !client.is_connected() {
        return Err(Step::Connection);
    }
    Ok(())
}

/// Without the client: the same data straight to the UART, so that the
/// difference in flash between the two builds is what the client costs.
/// Like any firmware that moves buffers, the baseline links the compiler's
/// memory routines (memcpy, memset, memcmp); measure.sh reports their size
/// separately, so the client's share is what it adds beyond them.
#[cfg(all(feature = "baseline", not(feature = "async")))]
fn session(mut uart: uart::Uart, buf: &'static mut [u8]) -> Result<(), Step> {
    use core::hint::black_box;
    use embedded_io::{Read, Write};
    let mut staging = [0u8; 64];
    for mut file in [Generated::log(), Generated::config()] {
        let mut check = content::Checker::new();
        let expected = file.checksum();
        loop {
            let n = file.read(buf).map_err(|_| Step::Setup)?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or(&[]);
            let k = black_box(n.min(staging.len()));
            staging.get_mut(..k).unwrap_or(&mut []).copy_from_slice(chunk.get(..k).unwrap_or(&[]));
            black_box(&mut staging).fill(black_box(0));
            uart.write(chunk).map_err(|_| Step::Setup)?;
            check.write(chunk).map_err(|_| Step::Setup)?;
        }
        if black_box(&staging[..]) == black_box(&buf[..64]) || check.hash.0 != expected {
            return Err(Step::Setup);
        }
    }
    Ok(())
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    log!("panic");
    debug::exit(EXIT_FAILURE);
    halt()
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    debug::exit(EXIT_FAILURE);
    halt()
}

/// Where execution ends if the host does not stop it (no debugger attached).
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
