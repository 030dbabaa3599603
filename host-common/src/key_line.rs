//! The key line: `backup-key:<user id>:<64 lowercase hex digits>`, what
//! `backup-server user add` prints and `backup-client login` takes, and
//! the line format of the server's user registry. One parser for all three.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroize;

/// What every key line starts with.
pub const KEY_LINE_PREFIX: &str = "backup-key:";

/// Bytes of a user's key: the Noise pre-shared key of protocol version 3.
pub const KEY_LEN: usize = 32;

/// A user's secret key. Wiped from memory when dropped; its `Debug` never
/// shows it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// The key of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Key(bytes)
    }

    /// A new random key from the operating system's generator.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(Key(bytes))
    }

    /// The key's bytes, for the handshake.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, KeyLineError> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| KeyLineError::BadKey)?;
        Ok(Key(bytes))
    }

    /// The 64 lowercase hex digits, for the key line only.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

/// A user id with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// The user id.
    pub user: u32,
    /// The user's key.
    pub key: Key,
}

/// Why a key line does not parse. The messages never quote the line, since
/// it holds a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLineError {
    /// It does not start with `backup-key:`.
    Prefix,
    /// The user id is not a number from 1 to 4294967295.
    BadUser,
    /// The key is not 64 hex digits.
    BadKey,
}

impl fmt::Display for KeyLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyLineError::Prefix => {
                "not a key line: it should look like backup-key:<user id>:<64 hex digits>, as printed by `backup-server user add`"
            }
            KeyLineError::BadUser => "the key line's user id is not a number from 1 to 4294967295",
            KeyLineError::BadKey => "the key line's key is not 64 hex digits",
        })
    }
}

impl std::error::Error for KeyLineError {}

impl FromStr for KeyLine {
    type Err = KeyLineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text.trim().strip_prefix(KEY_LINE_PREFIX).ok_or(KeyLineError::Prefix)?;
        let (user, key) = rest.split_once(':').ok_or(KeyLineError::BadKey)?;
        let user = user
            .parse::<u32>()
            .ok()
            .filter(|&u| u >= backup_core::wire::MIN_USER_ID)
            .ok_or(KeyLineError::BadUser)?;
        Ok(KeyLine { user, key: Key::from_hex(key)? })
    }
}

impl KeyLine {
    /// The line itself, with the secret in it: for stdout and owner-only
    /// files only, never for logs.
    pub fn expose(&self) -> String {
        format!("{KEY_LINE_PREFIX}{}:{}", self.user, self.key.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_line_round_trips_in_lowercase_hex() {
        let line = KeyLine { user: 1234, key: Key::from_bytes([0xab; 32]) };
        let text = line.expose();
        assert_eq!(text, format!("backup-key:1234:{}", "ab".repeat(32)));
        assert_eq!(text.parse::<KeyLine>().unwrap(), line);
    }

    #[test]
    fn uppercase_hex_and_surrounding_space_are_accepted() {
        let text = format!("  backup-key:7:{}\n", "AB".repeat(32));
        assert_eq!(text.parse::<KeyLine>().unwrap().key, Key::from_bytes([0xab; 32]));
    }

    #[test]
    fn bad_lines_say_what_is_wrong_without_quoting_the_secret() {
        let short = format!("backup-key:7:{}", "ab".repeat(31));
        assert_eq!(short.parse::<KeyLine>().unwrap_err(), KeyLineError::BadKey);
        assert_eq!(
            format!("backup-key:0:{}", "ab".repeat(32)).parse::<KeyLine>().unwrap_err(),
            KeyLineError::BadUser
        );
        assert_eq!("7:abab".parse::<KeyLine>().unwrap_err(), KeyLineError::Prefix);
        assert!(!KeyLineError::BadKey.to_string().contains("abab"));
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let line = KeyLine { user: 9, key: Key::from_bytes([0x5a; 32]) };
        assert!(!format!("{line:?}").contains("5a5a"));
    }
}
