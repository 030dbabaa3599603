//! The HELLO: the six plaintext bytes that open a version-3 session. They
//! have the layout of every request's prefix (user id, version, op), so a
//! server routes on them before it knows which protocol follows.

use super::{HELLO_LEN, HELLO_OP, PROLOGUE_LABEL, PROLOGUE_LEN, SECURE_VERSION};

/// Why six bytes are not a HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HelloError {
    /// The version byte is not 3 or the op is not 1: a plaintext request,
    /// which belongs to the plaintext dispatcher.
    NotHello {
        /// The version byte found.
        version: u8,
        /// The op byte found.
        op: u8,
    },
}

impl HelloError {
    /// A short reason for logs.
    pub const fn reason(self) -> &'static str {
        match self {
            HelloError::NotHello { .. } => "not a version-3 hello",
        }
    }
}

impl core::fmt::Display for HelloError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HelloError::NotHello { version, op } => {
                write!(f, "{} (version {version}, op {op})", self.reason())
            }
        }
    }
}

impl core::error::Error for HelloError {}

/// A parsed HELLO: whose key the handshake that follows must be under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello {
    /// The user the client claims to be; the handshake proves it.
    pub user_id: u32,
}

impl Hello {
    /// Whether a connection's first bytes open a secure session. A server
    /// peeks at the first [`HELLO_LEN`] bytes and routes on this: a HELLO goes
    /// to the secure handshake, anything else to the plaintext dispatcher.
    pub fn is_hello(prefix: &[u8; HELLO_LEN]) -> bool {
        let [_, _, _, _, version, op] = *prefix;
        version == SECURE_VERSION && op == HELLO_OP
    }

    /// Parses the six bytes.
    pub fn parse(bytes: &[u8; HELLO_LEN]) -> Result<Hello, HelloError> {
        let [u0, u1, u2, u3, version, op] = *bytes;
        if !Self::is_hello(bytes) {
            return Err(HelloError::NotHello { version, op });
        }
        Ok(Hello { user_id: u32::from_le_bytes([u0, u1, u2, u3]) })
    }

    /// The six bytes on the wire.
    pub fn to_bytes(self) -> [u8; HELLO_LEN] {
        let [u0, u1, u2, u3] = self.user_id.to_le_bytes();
        [u0, u1, u2, u3, SECURE_VERSION, HELLO_OP]
    }

    /// The Noise prologue: the label, then these six bytes, so that both
    /// sides' handshake hashes commit to the user id that was sent.
    pub fn prologue(self) -> [u8; PROLOGUE_LEN] {
        let mut prologue = [0u8; PROLOGUE_LEN];
        let (label, hello) = prologue.split_at_mut(PROLOGUE_LABEL.len());
        label.copy_from_slice(PROLOGUE_LABEL);
        hello.copy_from_slice(&self.to_bytes());
        prologue
    }
}
