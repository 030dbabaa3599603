//! `backup.info`: the files the classic `run` session backs up.

use std::path::{Path, PathBuf};

/// The paths listed in `backup.info`: one per line, blank lines and `#`
/// comments ignored, relative paths taken from the file's folder.
pub fn read(path: &Path) -> Result<Vec<PathBuf>, String> {
    crate::address::require_regular_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read {}: {e}; create it with one path to back up per line", path.display())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let paths: Vec<PathBuf> = parse(&text).map(|line| base.join(line)).collect();
    if paths.is_empty() {
        return Err(format!("{} lists no files; add one path per line", path.display()));
    }
    Ok(paths)
}

fn parse(text: &str) -> impl Iterator<Item = &str> {
    // Editors on Windows start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_and_comments_are_skipped_and_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("backup.info");
        std::fs::write(&info, "# my files\na.txt\n\n  sub/b.bin  \n/abs/c\n").unwrap();
        let paths = read(&info).unwrap();
        assert_eq!(paths, [dir.path().join("a.txt"), dir.path().join("sub/b.bin"), PathBuf::from("/abs/c")]);
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_not_part_of_the_first_path() {
        assert_eq!(parse("\u{feff}a.txt\nb.txt\n").collect::<Vec<_>>(), ["a.txt", "b.txt"]);
        assert_eq!(parse("\u{feff}# comment\nb.txt").collect::<Vec<_>>(), ["b.txt"]);
    }
}
