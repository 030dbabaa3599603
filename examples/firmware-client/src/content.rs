//! What the firmware backs up: files generated on the fly, never held whole
//! in RAM, and a checksum to verify restores as they stream in. The host's
//! end-to-end test includes this file to know what to expect, and the
//! embassy-net board example (examples/embassy-net-client) includes it, and
//! async_content.rs, to run the same scenario.

/// The firmware's user id on the server.
pub const USER_ID: u32 = 0x00C0_FFEE;
/// A 64 KiB log of numbered 16-byte lines.
pub const LOG_NAME: &str = "log.txt";
pub const LOG_LEN: u32 = 64 * 1024;
/// A small configuration blob.
pub const CONFIG_NAME: &str = "config.bin";
pub const CONFIG_LEN: u32 = 200;

/// Byte `i` of the log: lines `log line 000042\n`.
pub fn log_byte(i: u32) -> u8 {
    const PREFIX: &[u8; 9] = b"log line ";
    let (line, col) = (i / 16, i % 16);
    match col {
        0..=8 => PREFIX.get(col as usize).copied().unwrap_or(b' '),
        9..=14 => b'0' + ((line / 10u32.pow(14 - col)) % 10) as u8,
        _ => b'\n',
    }
}

/// Byte `i` of the configuration blob.
pub fn config_byte(i: u32) -> u8 {
    (i.wrapping_mul(37) ^ 0x5a) as u8
}

/// A generated file, read in chunks.
pub struct Generated {
    byte: fn(u32) -> u8,
    pos: u32,
    len: u32,
}

impl Generated {
    pub const fn log() -> Generated {
        Generated { byte: log_byte, pos: 0, len: LOG_LEN }
    }

    pub const fn config() -> Generated {
        Generated { byte: config_byte, pos: 0, len: CONFIG_LEN }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    /// The checksum of the whole file, computed without holding it.
    pub fn checksum(&self) -> u32 {
        let mut hash = Fnv::new();
        for i in 0..self.len {
            hash.update(&[(self.byte)(i)]);
        }
        hash.0
    }
}

impl embedded_io::ErrorType for Generated {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            if self.pos == self.len {
                break;
            }
            *slot = (self.byte)(self.pos);
            self.pos += 1;
            n += 1;
        }
        Ok(n)
    }
}

/// FNV-1a, 32 bits: small and good enough to catch a wrong byte.
pub struct Fnv(pub u32);

impl Fnv {
    pub const fn new() -> Fnv {
        Fnv(0x811c_9dc5)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
}

/// A restore's destination that keeps only a checksum and a count.
pub struct Checker {
    pub hash: Fnv,
    pub count: u32,
}

impl Checker {
    pub const fn new() -> Checker {
        Checker { hash: Fnv::new(), count: 0 }
    }
}

impl embedded_io::ErrorType for Checker {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Checker {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.hash.update(buf);
        self.count = self.count.wrapping_add(buf.len() as u32);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
