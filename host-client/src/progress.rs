//! Progress of a transfer: a bar with rate and ETA on a terminal, a plain
//! line when done otherwise, nothing with `--quiet`.

use std::io::{IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Lines,
    Quiet,
}

impl Mode {
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// One transfer's progress.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(mode: Mode, what: &str, total: u64) -> Progress {
        if mode != Mode::Bar {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:20!} {wide_bar} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} ETA {eta}",
        ) {
            bar.set_style(style);
        }
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Grows the total, for batches whose sizes arrive one by one.
    pub fn add_total(&self, more: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(more);
        }
    }

    fn advance(&self, n: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A file read for upload, counting into a progress bar.
pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a Progress,
}

impl<R: Read> embedded_io::ErrorType for ProgressReader<'_, R> {
    type Error = std::io::Error;
}

impl<R: Read> embedded_io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n);
        Ok(n)
    }
}

/// A file written by a restore, counting into a progress bar.
pub struct ProgressWriter<'a, W> {
    pub inner: W,
    pub progress: &'a Progress,
}

impl<W: Write> embedded_io::ErrorType for ProgressWriter<'_, W> {
    type Error = std::io::Error;
}

impl<W: Write> embedded_io::Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
