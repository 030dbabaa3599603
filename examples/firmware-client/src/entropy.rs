//! The randomness of the version-3 build: the handshake draws a fresh
//! ephemeral X25519 key from it on every connect.
//!
//! A ChaCha20 generator (`rand_chacha`, `rand_core` 0.6 as the core takes)
//! seeded once at boot with 32 bytes from the board's entropy source. Under
//! QEMU that source is the host: `/dev/urandom` opened and read through
//! semihosting. A real board seeds it from its true random number generator
//! instead (see the README); the LM3S6965 itself has none. Without a seed the
//! firmware stops: there is no fixed fallback.

use cortex_m_semihosting::{nr, syscall};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The host's entropy, as a NUL-terminated name for SYS_OPEN.
const HOST_ENTROPY: &[u8] = b"/dev/urandom\0";

/// A generator seeded from the host's `/dev/urandom`, or `None` if the host
/// does not answer (no semihosting, or no such file).
pub fn from_host() -> Option<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    // SAFETY: SYS_OPEN reads `len` bytes of the name (without its NUL) and
    // the mode; both are valid for the call.
    let fd = unsafe { syscall!(OPEN, HOST_ENTROPY.as_ptr(), nr::open::R_BINARY, HOST_ENTROPY.len() - 1) };
    if fd as isize == -1 {
        return None;
    }
    let mut have = 0;
    while have < seed.len() {
        let rest = seed.get_mut(have..).unwrap_or_default();
        // SAFETY: SYS_READ writes at most `rest.len()` bytes into `rest`,
        // and returns how many of them it did not fill.
        let left = unsafe { syscall!(READ, fd, rest.as_mut_ptr(), rest.len()) };
        let got = rest.len().saturating_sub(left);
        if got == 0 {
            break;
        }
        have += got;
    }
    // SAFETY: closes the handle SYS_OPEN returned.
    unsafe { syscall!(CLOSE, fd) };
    if have < seed.len() {
        return None;
    }
    let rng = ChaCha20Rng::from_seed(seed);
    seed.fill(0);
    Some(rng)
}
