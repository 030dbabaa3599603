//! File name rules, shared by every client and server so both sides agree.

use super::MAX_NAME_LEN;
pub use crate::error::NameError;

/// Checks a file name against the protocol's rules and returns it as `&str`.
///
/// A valid name is 1 to 255 bytes of UTF-8 with no `/`, `\`, NUL or other
/// control character, and is not `.` or `..`. Dot-files such as `.bashrc` are
/// valid.
pub fn validate_name(name: &[u8]) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let name = core::str::from_utf8(name).map_err(|_| NameError::NotUtf8)?;
    check_name(name)?;
    Ok(name)
}

/// The same rules for a name that is already text: what a client checks
/// before sending (it needs no UTF-8 validation, which keeps it small).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    // Scanning bytes is enough on valid UTF-8: every forbidden character but
    // the C1 controls is one byte, and those are exactly C2 80 to C2 9F.
    let bytes = name.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => return Err(NameError::Slash),
            b'\\' => return Err(NameError::Backslash),
            0 => return Err(NameError::Nul),
            0x01..=0x1f | 0x7f => return Err(NameError::Control),
            0xc2 if matches!(bytes.get(i + 1), Some(0x80..=0x9f)) => return Err(NameError::Control),
            _ => {}
        }
    }
    if name == "." || name == ".." {
        return Err(NameError::DotOrDotDot);
    }
    Ok(())
}

/// A name held by value, for callers that must keep it while the buffer it
/// came from is reused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameBuf {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
}

impl NameBuf {
    pub(crate) const fn new() -> Self {
        NameBuf { bytes: [0; MAX_NAME_LEN], len: 0 }
    }

    /// Copies a name of at most 255 bytes; longer input is refused.
    pub(crate) fn from_str(name: &str) -> Option<Self> {
        let mut buf = Self::new();
        buf.extend(name.as_bytes()).then_some(buf)
    }

    /// Appends bytes; false (and nothing appended) when they do not fit.
    pub(crate) fn extend(&mut self, more: &[u8]) -> bool {
        let end = self.len + more.len();
        match self.bytes.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(more);
                self.len = end;
                true
            }
            None => false,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// The name as text; empty if it is not UTF-8 (names held here were validated).
    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_dot_files_and_unicode_are_valid() {
        for name in ["a", "report.pdf", ".bashrc", "...", "..a", "naïve café", "日本語"] {
            assert_eq!(validate_name(name.as_bytes()), Ok(name));
        }
        assert!(validate_name(&[b'x'; 255]).is_ok());
    }

    #[test]
    fn each_forbidden_name_gets_its_own_reason() {
        let cases: [(&[u8], NameError); 12] = [
            (b"", NameError::Empty),
            (&[b'x'; 256], NameError::TooLong),
            (b"\xff\xfe", NameError::NotUtf8),
            (b"a/b", NameError::Slash),
            (b"/etc/passwd", NameError::Slash),
            (b"../x", NameError::Slash),
            (b"a\\b", NameError::Backslash),
            (b"a\0b", NameError::Nul),
            (b"a\nb", NameError::Control),
            (b"\x7f", NameError::Control),
            (b".", NameError::DotOrDotDot),
            (b"..", NameError::DotOrDotDot),
        ];
        for (name, expected) in cases {
            assert_eq!(validate_name(name), Err(expected), "{name:?}");
        }
        assert_eq!(NameError::Slash.reason(), "name contains '/'");
    }

    #[test]
    fn the_byte_scan_agrees_with_unicode_control_characters() {
        for c in ['\u{1}', '\u{1f}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}'] {
            let name = std::format!("a{c}b");
            assert_eq!(validate_name(name.as_bytes()), Err(NameError::Control), "{c:?}");
        }
        for c in ['\u{a0}', '\u{c2}', '\u{100}', '\u{2028}', '\u{1f600}'] {
            let name = std::format!("a{c}b");
            assert_eq!(validate_name(name.as_bytes()), Ok(name.as_str()), "{c:?}");
        }
    }
}
