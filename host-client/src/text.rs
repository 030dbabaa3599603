//! Text a server sent, made safe to print: a name or reason must not be able
//! to drive the terminal (change its title, clear it, fake a line) or
//! reorder what is printed around it.

use std::fmt;

/// Server bytes as printable text: valid UTF-8 is printed as is, except
/// control characters, bidirectional controls, line separators and `\`,
/// which are written as Rust-style escapes (`\u{1b}`, `\\`); bytes that are
/// not UTF-8 are written as `\xNN`. A valid name has none of these, so it
/// prints unchanged. (Hand-written because std's `escape_debug` also escapes
/// quotes, which valid names may hold, and gives no `\xNN` for bad bytes.)
pub struct Printable<'a>(pub &'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else if needs_escape(c) {
                    write!(f, "{}", c.escape_unicode())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// Characters a terminal acts on, or that reorder or break the line.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '\u{2028}' | '\u{2029}')
}

/// [`Printable`] for text already decoded.
pub fn printable(text: &str) -> String {
    Printable(text.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_print_unchanged() {
        for name in ["notes.txt", "it's \"quoted\".pdf", "été ünïcødé 日本.md", ".bashrc"] {
            assert_eq!(Printable(name.as_bytes()).to_string(), name);
        }
    }

    #[test]
    fn escape_sequences_controls_and_bad_bytes_are_escaped() {
        let evil = b"\x1b]0;owned\x07\x1b[2J\rok\n\x9b\xff\\\xe2\x80\xae";
        assert_eq!(
            Printable(evil).to_string(),
            "\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{d}ok\\u{a}\\x9b\\xff\\\\\\u{202e}"
        );
        assert_eq!(printable("a\u{85}b"), "a\\u{85}b", "C1 controls too");
    }
}
