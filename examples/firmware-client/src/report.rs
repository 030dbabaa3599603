//! Results to the host over semihosting, without `core::fmt`.

use cortex_m_semihosting::hio;

/// The value cortex-m-rt's `paint-stack` fills the stack with at reset.
const STACK_PAINT: u32 = 0xCCCC_CCCC;

unsafe extern "C" {
    /// Top of the stack (it grows down), from cortex-m-rt's linker script.
    static _stack_start: u32;
    /// Lowest address the stack may reach: the end of static data.
    static _stack_end: u32;
}

/// Writes `text` and a newline to the host's standard output.
pub fn line(parts: &[&[u8]]) {
    if let Ok(mut out) = hio::hstdout() {
        for part in parts {
            let _ = out.write_all(part);
        }
        let _ = out.write_all(b"\n");
    }
}

/// `n` in decimal, into `buf`; returns the digits.
pub fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    buf.get(at..).unwrap_or(&[])
}

/// Bytes of stack ever used: from the top down to the deepest word whose
/// paint was scrubbed off.
pub fn stack_high_water_mark() -> u32 {
    let top = &raw const _stack_start as usize;
    let bottom = &raw const _stack_end as usize;
    let mut addr = bottom;
    // SAFETY: every word between _stack_end and _stack_start is RAM that
    // the linker script reserved for the stack, aligned to 4 bytes.
    while addr < top && unsafe { core::ptr::read_volatile(addr as *const u32) } == STACK_PAINT {
        addr += 4;
    }
    (top - addr) as u32
}
