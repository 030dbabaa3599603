//! Counts what the handshake costs the CPU.
//!
//! QEMU's LM3S6965 emulates no DWT cycle counter, runs no SysTick (QEMU 7.2
//! leaves its clock at period zero) and does not let a timer's count be read
//! (GPTMTAR reads 0). What it does emulate is the General-Purpose Timer 0's
//! timeout interrupt on the system clock: so TIMER0 runs periodically every
//! [`PERIOD`] ticks, the interrupt counts the periods, and a calibration loop
//! of known length converts periods to instructions. Under QEMU with
//! `-icount shift=0` every instruction advances the virtual clock by exactly
//! 1 ns, so the result is an instruction count (to one period's worth,
//! about 8,000); without icount the timer follows the host's clock and the
//! figure is only an estimate. On real hardware use DWT CYCCNT instead.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::exception;

const TIMER0: usize = 0x4003_0000;
const GPTMCFG: usize = TIMER0;
const GPTMTAMR: usize = TIMER0 + 0x004;
const GPTMCTL: usize = TIMER0 + 0x00C;
const GPTMIMR: usize = TIMER0 + 0x018;
const GPTMICR: usize = TIMER0 + 0x024;
const GPTMTAILR: usize = TIMER0 + 0x028;
/// Run-mode clock gating 1: TIMER0 is bit 16.
const SYSCTL_RCGC1: usize = 0x400F_E104;
/// The NVIC's interrupt set-enable register for IRQs 0-31.
const NVIC_ISER0: usize = 0xE000_E100;
/// TIMER0A's interrupt number on the LM3S6965.
const TIMER0A_IRQ: i16 = 19;
/// Timer ticks per period (8 us at the reset clock of 12.5 MHz).
const PERIOD: u32 = 100;
/// Iterations of the calibration loop, two instructions each.
const CALIBRATION_LOOPS: u32 = 1_000_000;

/// Periods so far (only the interrupt writes it: load and store are enough,
/// also on the Cortex-M0, which has no atomic read-modify-write).
static PERIODS: AtomicU32 = AtomicU32::new(0);

fn read_reg(addr: usize) -> u32 {
    // SAFETY: `addr` is a TIMER0, SYSCTL or NVIC register above, always mapped.
    unsafe { read_volatile(addr as *const u32) }
}

fn write_reg(addr: usize, value: u32) {
    // SAFETY: as for `read_reg`; values per the LM3S6965 data sheet.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// Every interrupt lands here (the firmware enables only TIMER0A's).
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == TIMER0A_IRQ {
        write_reg(GPTMICR, 1);
        PERIODS.store(PERIODS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// The running timer and its rate in instructions per period.
pub struct Clock {
    per_period: u32,
}

impl Clock {
    /// Starts TIMER0 (32-bit, periodic, interrupt on timeout) and calibrates it.
    pub fn start() -> Clock {
        write_reg(SYSCTL_RCGC1, read_reg(SYSCTL_RCGC1) | (1 << 16));
        write_reg(GPTMCTL, 0);
        write_reg(GPTMCFG, 0);
        write_reg(GPTMTAMR, 0x2);
        write_reg(GPTMTAILR, PERIOD - 1);
        write_reg(GPTMIMR, 1);
        write_reg(NVIC_ISER0, 1 << TIMER0A_IRQ);
        write_reg(GPTMCTL, 1);
        let before = now();
        spin(CALIBRATION_LOOPS);
        let elapsed = now().wrapping_sub(before).max(1);
        Clock { per_period: 2 * CALIBRATION_LOOPS / elapsed }
    }

    /// Periods since start.
    pub fn now(&self) -> u32 {
        now()
    }

    /// `periods` as instructions.
    pub fn instructions(&self, periods: u32) -> u32 {
        periods.saturating_mul(self.per_period)
    }
}

fn now() -> u32 {
    PERIODS.load(Ordering::Relaxed)
}

/// Runs `n` iterations of a two-instruction loop.
fn spin(n: u32) {
    // SAFETY: only counts r2 down to zero; touches no memory.
    unsafe {
        core::arch::asm!("2:", "subs r2, #1", "bne 2b", inout("r2") n => _, options(nomem, nostack));
    }
}
