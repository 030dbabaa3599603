//! Paths, the names of version-3 sessions: relative, `/`-separated
//! segments, each a valid name ([`check_name`]), no empty segment (so no
//! leading, trailing or doubled `/`), at most [`MAX_PATH_SEGMENTS`] of
//! them and [`MAX_PATH_LEN`] bytes in all. A path of one segment is a
//! name, so every name of versions 1 and 2 is a path too.

use super::name::check_name;
use crate::error::PathError;

/// Longest path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Most segments in a path.
pub const MAX_PATH_SEGMENTS: usize = 32;

/// Checks a path as it came off the wire, and returns it as text.
pub fn validate_path(path: &[u8]) -> Result<&str, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let path = core::str::from_utf8(path).map_err(|_| PathError::NotUtf8)?;
    check_path(path)?;
    Ok(path)
}

/// The same rules for a path that is already text (what a client checks
/// before sending).
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let mut count = 0;
    for segment in path.split('/') {
        count += 1;
        if count > MAX_PATH_SEGMENTS {
            return Err(PathError::TooManySegments);
        }
        if segment.is_empty() {
            return Err(PathError::EmptySegment);
        }
        check_name(segment).map_err(PathError::Segment)?;
    }
    Ok(())
}

/// Whether `path` lies under `prefix`, matching whole segments: `docs`
/// holds `docs/a` and `docs` itself, not `docsx`. The empty prefix holds
/// every path.
pub fn has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        _ if prefix.is_empty() => true,
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NameError;

    #[test]
    fn names_and_nested_paths_are_valid() {
        for path in ["a", "docs/report.pdf", "a/b/c/.bashrc", "naïve/café", "..a/...", "x/y"] {
            assert_eq!(validate_path(path.as_bytes()), Ok(path), "{path}");
        }
        let deepest = ["s"; MAX_PATH_SEGMENTS].join("/");
        assert!(validate_path(deepest.as_bytes()).is_ok());
        let longest =
            [[b'x'; 255].as_slice(), b"/", &[b'y'; 255], b"/", &[b'z'; 255], b"/", &[b'w'; 256]].concat();
        assert_eq!(longest.len(), MAX_PATH_LEN);
        assert_eq!(validate_path(&longest), Err(PathError::Segment(NameError::TooLong)));
        let longest =
            [[b'x'; 255].as_slice(), b"/", &[b'y'; 255], b"/", &[b'z'; 255], b"/", &[b'w'; 255]].concat();
        assert!(validate_path(&longest[..MAX_PATH_LEN - 1]).is_ok());
    }

    #[test]
    fn each_forbidden_path_gets_its_exact_reason() {
        let too_deep = ["s"; MAX_PATH_SEGMENTS + 1].join("/");
        let too_long = [b'a'; MAX_PATH_LEN + 1];
        let cases: [(&[u8], PathError); 13] = [
            (b"", PathError::Empty),
            (b"a//b", PathError::EmptySegment),
            (b"/a", PathError::EmptySegment),
            (b"a/", PathError::EmptySegment),
            (b"a/../b", PathError::Segment(NameError::DotOrDotDot)),
            (b"./a", PathError::Segment(NameError::DotOrDotDot)),
            (b"a/.", PathError::Segment(NameError::DotOrDotDot)),
            (too_deep.as_bytes(), PathError::TooManySegments),
            (&too_long, PathError::TooLong),
            (&[[b'a'; 256].as_slice(), b"/b"].concat(), PathError::Segment(NameError::TooLong)),
            (b"a\\b/c", PathError::Segment(NameError::Backslash)),
            (b"a/b\nc", PathError::Segment(NameError::Control)),
            (b"a/\xff", PathError::NotUtf8),
        ];
        for (path, expected) in cases {
            assert_eq!(validate_path(path), Err(expected), "{:?}", core::str::from_utf8(path));
        }
        assert_eq!(
            PathError::EmptySegment.reason(),
            "path has an empty segment (a leading, trailing or doubled '/')"
        );
        assert_eq!(PathError::Segment(NameError::DotOrDotDot).reason(), "a path segment is '.' or '..'");
    }

    #[test]
    fn a_prefix_matches_whole_segments() {
        assert!(has_prefix("docs/a", "docs"));
        assert!(has_prefix("docs", "docs"));
        assert!(has_prefix("docs/sub/a", "docs/sub"));
        assert!(has_prefix("anything", ""));
        assert!(!has_prefix("docsx/a", "docs"));
        assert!(!has_prefix("doc", "docs"));
        assert!(!has_prefix("docs/sub2/a", "docs/sub"));
    }
}
