//! A register-level driver for the PL011 UART0 of the LM3S6965 at
//! 0x4000_C000, as the `embedded-io` transport the core's client runs on.
//!
//! The UART stands for the link to a network coprocessor (a Wi-Fi or
//! cellular module in transparent TCP mode): every byte written goes to the
//! server, every byte read comes from it.

use core::ptr::{read_volatile, write_volatile};

#[cfg(not(secure))]
use backup_core::Connect;
use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write, WriteReady};

const UART0: usize = 0x4000_C000;
const DR: usize = UART0;
const FR: usize = UART0 + 0x018;
const LCRH: usize = UART0 + 0x02C;
const CTL: usize = UART0 + 0x030;
/// Run-mode clock gating for UART0 (bit 0) on the LM3S6965.
const SYSCTL_RCGC1: usize = 0x400F_E104;

const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
/// Receive error bits that come with each byte read from DR: overrun,
/// break, parity, framing.
const DR_ERRORS: u32 = 0xF00;
const LCRH_8BIT_FIFO: u32 = 0x60 | 0x10;
const CTL_ENABLE: u32 = (1 << 0) | (1 << 8) | (1 << 9);

fn read_reg(addr: usize) -> u32 {
    // SAFETY: `addr` is one of the UART0 or SYSCTL registers above, which
    // are always mapped on this chip and have no read side effects beyond
    // popping the receive FIFO for DR, which the driver wants.
    unsafe { read_volatile(addr as *const u32) }
}

fn write_reg(addr: usize, value: u32) {
    // SAFETY: as for `read_reg`; the values written are valid for the
    // registers per the PL011 and LM3S6965 reference manuals.
    unsafe { write_volatile(addr as *mut u32, value) }
}

/// UART0. Create it once, with [`Uart::init`].
pub struct Uart {
    _private: (),
}

/// The line reported a receive error (overrun, break, parity or framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LineError;

impl core::fmt::Display for LineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("UART receive error")
    }
}

impl core::error::Error for LineError {}

impl embedded_io::Error for LineError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidData
    }
}

impl Uart {
    /// Clocks and enables UART0: 8 data bits, FIFOs on. (Baud rate settings
    /// matter on the real chip, not in QEMU; set them for your module.)
    pub fn init() -> Uart {
        write_reg(SYSCTL_RCGC1, read_reg(SYSCTL_RCGC1) | 1);
        write_reg(CTL, 0);
        write_reg(LCRH, LCRH_8BIT_FIFO);
        write_reg(CTL, CTL_ENABLE);
        Uart { _private: () }
    }

    /// Another handle on the one UART, which `init` has set up.
    pub(crate) fn handle() -> Uart {
        Uart { _private: () }
    }

    pub(crate) fn rx_empty() -> bool {
        read_reg(FR) & FR_RXFE != 0
    }

    pub(crate) fn tx_full() -> bool {
        read_reg(FR) & FR_TXFF != 0
    }
}

impl ErrorType for Uart {
    type Error = LineError;
}

impl Read for Uart {
    /// Blocks for the first byte, then takes what the FIFO holds.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LineError> {
        if buf.is_empty() {
            return Ok(0);
        }
        while Uart::rx_empty() {}
        let mut n = 0;
        for slot in buf.iter_mut() {
            if Uart::rx_empty() {
                break;
            }
            let word = read_reg(DR);
            if word & DR_ERRORS != 0 {
                return Err(LineError);
            }
            *slot = word as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, LineError> {
        Ok(!Uart::rx_empty())
    }
}

impl Write for Uart {
    /// Blocks for room for the first byte, then fills the FIFO.
    fn write(&mut self, buf: &[u8]) -> Result<usize, LineError> {
        if buf.is_empty() {
            return Ok(0);
        }
        while Uart::tx_full() {}
        let mut n = 0;
        for &byte in buf {
            if Uart::tx_full() {
                break;
            }
            write_reg(DR, u32::from(byte));
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), LineError> {
        while read_reg(FR) & FR_BUSY != 0 {}
        Ok(())
    }
}

impl WriteReady for Uart {
    fn write_ready(&mut self) -> Result<bool, LineError> {
        Ok(!Uart::tx_full())
    }
}

/// The network link as the client's [`Connect`]: the module holds one TCP
/// connection to the server, so "connecting" hands out the UART again. (The
/// version-3 build's connector is `secure_link::SecureLink`.)
#[cfg(not(secure))]
pub struct UartLink;

#[cfg(not(secure))]
impl Connect for UartLink {
    type Conn = Uart;

    fn connect(&mut self) -> Result<Uart, LineError> {
        Ok(Uart::handle())
    }
}
