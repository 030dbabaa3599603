//! The subcommands, on the core's client.

use std::path::{Path, PathBuf};

use backup_core::wire::{MAX_FILE_SIZE, validate_name};
use backup_core::{Client, ClientError};

use crate::failure::{Context, Failure};
use crate::finisher::{self, Finisher, Placement, Restored};
use crate::framing::FramedConnector;
use crate::progress::{Mode, Progress, ProgressReader, ProgressWriter};
use crate::restore_sink::RestoreSink;
use crate::source::Snapshot;

/// A line on stdout. Output piped into a program that stops reading
/// (`backup-client list | head -1`) must not crash the client, so write
/// errors are ignored where `println!` would panic.
pub fn out(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

macro_rules! out {
    ($($arg:tt)*) => {
        out(format_args!($($arg)*))
    };
}

/// What every command needs.
pub struct Session<'b> {
    pub client: Client<'b, FramedConnector>,
    pub server: String,
    pub user: u32,
    pub timeout_secs: u64,
    pub mode: Mode,
}

impl Session<'_> {
    fn context(&self, doing: String) -> Context<'_> {
        Context { doing, server: &self.server, user: self.user, timeout_secs: self.timeout_secs }
    }

    fn say(&self, line: std::fmt::Arguments<'_>) {
        if self.mode != Mode::Quiet {
            out(line);
        }
    }

    fn explain<L: std::fmt::Display + std::fmt::Debug>(
        &self,
        doing: String,
        e: ClientError<std::io::Error, L>,
    ) -> Failure {
        self.context(doing).explain(e, self.client.server_reason())
    }
}

/// A file to back up, checked before anything is sent.
pub struct Planned {
    path: PathBuf,
    name: String,
    size: u32,
}

fn plan(path: &Path, as_name: Option<&str>) -> Result<Planned, Failure> {
    let name = match as_name {
        Some(name) => name.to_string(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                Failure::local(format!("{}: no usable file name; give one with --as NAME", path.display()))
            })?
            .to_string(),
    };
    validate_name(name.as_bytes()).map_err(|e| {
        Failure::local(format!(
            "cannot back up {} as {name:?}: {e}; choose another name with --as",
            path.display()
        ))
    })?;
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::local(format!("cannot back up {}: {e}; check the path", path.display())))?;
    if !meta.is_file() {
        return Err(Failure::local(format!("cannot back up {}: not a regular file", path.display())));
    }
    let size = u32::try_from(meta.len()).map_err(|_| {
        Failure::local(format!(
            "cannot back up {}: it is {} bytes, and the protocol carries at most {MAX_FILE_SIZE} bytes (4 GiB - 1)",
            path.display(),
            meta.len()
        ))
    })?;
    Ok(Planned { path: path.to_path_buf(), name, size })
}

/// A command with its local checks done: files exist and fit, names are
/// valid, nothing would be overwritten. Nothing has touched the network yet.
pub enum Prepared {
    Backup(Vec<Planned>),
    Restore { files: Vec<(String, PathBuf)>, how: Placement },
    Delete(Vec<String>),
    List,
    Run { planned: Vec<Planned>, force: bool },
}

/// Checks `backup FILE... [--as NAME]`: every file, before the first is sent.
pub fn prepare_backup(files: &[PathBuf], as_name: Option<&str>) -> Result<Prepared, Failure> {
    if as_name.is_some() && files.len() != 1 {
        return Err(Failure::usage("--as NAME names one file; give exactly one FILE with it"));
    }
    let planned: Vec<Planned> = files.iter().map(|f| plan(f, as_name)).collect::<Result<_, _>>()?;
    refuse_duplicate_names(&planned, "")?;
    Ok(Prepared::Backup(planned))
}

/// Two files stored under one name would silently keep only the last, while
/// the client reported both as backed up: refuse before anything is sent.
fn refuse_duplicate_names(planned: &[Planned], listed_in: &str) -> Result<(), Failure> {
    let mut seen = std::collections::HashMap::new();
    for file in planned {
        if let Some(first) = seen.insert(file.name.as_str(), &file.path) {
            return Err(Failure::usage(format!(
                "{} and {}{listed_in} would both be stored as {}, and only one would be kept; \
                 back up one of them on its own with --as NAME",
                first.display(),
                file.path.display(),
                file.name
            )));
        }
    }
    Ok(())
}

/// Checks `restore NAME... [-o PATH] [--force]`: with several names, PATH
/// must be a folder.
pub fn prepare_restore(names: &[String], output: Option<&Path>, how: Placement) -> Result<Prepared, Failure> {
    if names.len() > 1 && output.is_some_and(|o| !o.is_dir()) {
        return Err(Failure::usage("with several names, -o must be an existing folder"));
    }
    let files: Vec<(String, PathBuf)> = names
        .iter()
        .map(|name| Ok((name.clone(), restore_target(name, output, how.force)?)))
        .collect::<Result<_, Failure>>()?;
    // Two restores into one file would race to replace each other.
    let mut targets = std::collections::HashSet::new();
    if let Some((name, _)) = files.iter().find(|(_, target)| !targets.insert(target)) {
        return Err(Failure::usage(format!("{name} is named twice; restore each file once")));
    }
    Ok(Prepared::Restore { files, how })
}

/// Checks `delete NAME...`.
pub fn prepare_delete(names: &[String]) -> Result<Prepared, Failure> {
    for name in names {
        validate_name(name.as_bytes()).map_err(|e| {
            Failure::local(format!("cannot delete {name:?}: {e}; `backup-client list` shows the names"))
        })?;
    }
    Ok(Prepared::Delete(names.to_vec()))
}

/// Checks `run`: reads backup.info and every file it lists, and ./tmp.
pub fn prepare_run(info: &Path, force: bool) -> Result<Prepared, Failure> {
    let paths = crate::backup_info::read(info).map_err(Failure::local)?;
    let planned: Vec<Planned> = paths.iter().map(|p| plan(p, None)).collect::<Result<_, _>>()?;
    refuse_duplicate_names(&planned, &format!(" (both listed in {})", info.display()))?;
    if let Some(first) = planned.first() {
        // The restore goes to the file ./tmp itself, never into a folder
        // of that name (which restore_target would look inside), and no
        // file replaces a folder, even with --force.
        let tmp = Path::new(RUN_RESTORE_AS);
        if tmp.is_dir() {
            return Err(Failure::local(format!(
                "{RUN_RESTORE_AS} is a folder, and run restores {} as the file {RUN_RESTORE_AS}; \
                 move the folder away, or run from another folder",
                first.name
            )));
        }
        restore_target(&first.name, Some(tmp), force)?;
    }
    Ok(Prepared::Run { planned, force })
}

/// Where `run` restores the first file, as the classic clients do.
const RUN_RESTORE_AS: &str = "tmp";

/// Runs a prepared command.
pub fn execute(s: &mut Session<'_>, prepared: Prepared) -> Result<(), Failure> {
    match prepared {
        Prepared::Backup(planned) if planned.len() == 1 => {
            planned.iter().try_for_each(|file| backup_one(s, file))
        }
        Prepared::Backup(planned) => backup_many(s, &planned),
        Prepared::Restore { files, how } if files.len() == 1 => {
            files.iter().try_for_each(|(name, target)| restore_to(s, name, target, how).map(drop))
        }
        Prepared::Restore { files, how } => restore_many(s, &files, how),
        Prepared::Delete(names) => delete(s, &names),
        Prepared::List => print_list(s),
        Prepared::Run { planned, force } => run(s, &planned, force),
    }
}

fn backup_one(s: &mut Session<'_>, file: &Planned) -> Result<(), Failure> {
    let doing = format!("backing up {}", file.path.display());
    let handle =
        Snapshot::open(&file.path, file.size).map_err(|e| Failure::local(format!("{doing}: {e}")))?;
    let progress = Progress::start(s.mode, &file.name, u64::from(file.size));
    let mut source = ProgressReader { inner: handle, progress: &progress };
    let result = s.client.backup(&file.name, file.size, &mut source);
    progress.finish();
    result.map_err(|e| s.explain(doing, e))?;
    s.say(format_args!("backed up {} as {} ({} bytes)", file.path.display(), file.name, file.size));
    Ok(())
}

/// Several files as one pipelined batch: the server answers in order, so
/// the client sends ahead and the server can sync many backups at once.
fn backup_many(s: &mut Session<'_>, planned: &[Planned]) -> Result<(), Failure> {
    let total: u64 = planned.iter().map(|f| u64::from(f.size)).sum();
    let progress = Progress::start(s.mode, &format!("{} files", planned.len()), total);
    let mut batch = PlannedBatch { files: planned, progress: &progress, mode: s.mode };
    let result = s.client.backup_batch(planned.len(), &mut batch);
    progress.finish();
    if result.is_ok() && s.mode == Mode::Bar {
        out!("backed up {} files ({total} bytes)", planned.len());
    }
    result.map_err(|stop| {
        let path = planned.get(stop.index).map_or_else(String::new, |f| f.path.display().to_string());
        batch_failure(s, format!("backing up {path}"), "backed up", stop, planned.len())
    })
}

/// Explains where a batch stopped, and how much of it was done.
fn batch_failure<L: std::fmt::Display + std::fmt::Debug>(
    s: &Session<'_>,
    doing: String,
    done: &str,
    stop: backup_core::BatchError<std::io::Error, L>,
    total: usize,
) -> Failure {
    let mut failure = s.explain(doing, stop.error);
    failure.message.push_str(&format!(" ({} of {total} files were {done} before it)", stop.index));
    failure
}

/// Planned files for the core's batch, opened as they are sent.
struct PlannedBatch<'a> {
    files: &'a [Planned],
    progress: &'a Progress,
    mode: Mode,
}

impl<'a> backup_core::Batch for PlannedBatch<'a> {
    type Reader = ProgressReader<'a, Snapshot>;

    fn file(&mut self, index: usize) -> Result<(&str, u32, Self::Reader), std::io::Error> {
        let file = self.files.get(index).ok_or_else(|| std::io::Error::other("no such file in the batch"))?;
        let handle = Snapshot::open(&file.path, file.size).map_err(|e| match e.kind() {
            // Its message names the file already.
            std::io::ErrorKind::InvalidData => e,
            kind => std::io::Error::new(kind, format!("{}: {e}", file.path.display())),
        })?;
        Ok((&file.name, file.size, ProgressReader { inner: handle, progress: self.progress }))
    }

    fn name(&mut self, index: usize) -> &str {
        self.files.get(index).map_or("", |f| f.name.as_str())
    }

    fn done(&mut self, index: usize) {
        // On a terminal the bar shows progress; plain lines otherwise.
        if let (Some(file), Mode::Lines) = (self.files.get(index), self.mode) {
            out!("backed up {} as {} ({} bytes)", file.path.display(), file.name, file.size);
        }
    }
}

/// Several restores as one pipelined batch, each into a temporary file
/// beside its target; the finisher's threads sync each and rename it into
/// place while the next ones arrive.
fn restore_many(s: &mut Session<'_>, files: &[(String, PathBuf)], how: Placement) -> Result<(), Failure> {
    remove_stale_temps(s, files.iter().map(|(_, target)| finisher::parent(target)));
    let finisher = Finisher::start(how, s.mode)
        .map_err(|e| Failure::local(format!("cannot start a thread to finish restores: {e}")))?;
    let progress = Progress::start(s.mode, &format!("{} files", files.len()), 0);
    let mut batch = Targets { files, progress: &progress, finisher: &finisher };
    let result = s.client.restore_batch(files.len(), &mut batch);
    progress.finish();
    // Every file the server sent whole is finished, even when a later one
    // failed.
    let finished = finisher.wait();
    // A file that failed to finish comes before any failure the batch saw.
    if let Some((index, name, e)) = finished.failure {
        return Err(Failure::local(format!(
            "restoring {name}: {e} ({index} of {} files were restored before it)",
            files.len()
        )));
    }
    result.map_err(|stop| {
        let name = files.get(stop.index).map_or("", |(name, _)| name.as_str());
        batch_failure(s, format!("restoring {name}"), "restored", stop, files.len())
    })?;
    if s.mode == Mode::Bar {
        out!("restored {} files ({} bytes)", finished.files, finished.bytes);
    }
    Ok(())
}

/// Restore targets for the core's batch.
struct Targets<'a> {
    files: &'a [(String, PathBuf)],
    progress: &'a Progress,
    finisher: &'a Finisher,
}

impl<'a> backup_core::RestoreBatch for Targets<'a> {
    type Writer = ProgressWriter<'a, RestoreSink<tempfile::NamedTempFile>>;

    fn name(&mut self, index: usize) -> &str {
        self.files.get(index).map_or("", |(name, _)| name.as_str())
    }

    fn open(&mut self, index: usize, size: u32) -> std::io::Result<Self::Writer> {
        let target = self.files.get(index).map(|(_, t)| t.as_path()).unwrap_or(Path::new("."));
        self.progress.add_total(u64::from(size));
        let temp = crate::restore_temp::create(finisher::parent(target))?;
        Ok(ProgressWriter { inner: RestoreSink::new(temp, Some(u64::from(size))), progress: self.progress })
    }

    fn finish(&mut self, index: usize, writer: Self::Writer) -> std::io::Result<()> {
        let Some((name, target)) = self.files.get(index) else { return Ok(()) };
        let size = writer.inner.written();
        let temp = writer.inner.finish()?;
        self.finisher.submit(Restored { index, name: name.clone(), temp, target: target.clone(), size })
    }
}

/// Removes what restores killed mid-way left in the folders about to be
/// restored into, and says so.
fn remove_stale_temps<'p>(s: &Session<'_>, folders: impl IntoIterator<Item = &'p Path>) {
    let folders: std::collections::BTreeSet<&Path> = folders.into_iter().collect();
    for path in folders.into_iter().flat_map(crate::restore_temp::remove_stale) {
        s.say(format_args!("removed {}, left by an interrupted restore", path.display()));
    }
}

/// Where a restore of `name` goes, refusing to replace a file without `force`.
fn restore_target(name: &str, output: Option<&Path>, force: bool) -> Result<PathBuf, Failure> {
    validate_name(name.as_bytes()).map_err(|e| {
        Failure::local(format!("cannot restore {name:?}: {e}; `backup-client list` shows the names"))
    })?;
    let target = match output {
        None => PathBuf::from(name),
        Some(path) if path.is_dir() => path.join(name),
        Some(path) => path.to_path_buf(),
    };
    if target.file_name().and_then(|n| n.to_str()).is_some_and(crate::restore_temp::is_temporary_name) {
        return Err(Failure::local(format!(
            "cannot restore {name:?} to {}: a file of that name would be taken for one an interrupted \
             restore left, and removed by a later restore there; give it another name with -o",
            target.display()
        )));
    }
    if !force && std::fs::symlink_metadata(&target).is_ok() {
        return Err(Failure::local(format!(
            "{} already exists; pass --force to replace it, or -o to restore elsewhere",
            target.display()
        )));
    }
    Ok(target)
}

/// Restores into a temporary file beside `target`, renamed over it only once
/// complete (and synced, unless told not to); without `force`, never over an
/// existing file.
fn restore_to(s: &mut Session<'_>, name: &str, target: &Path, how: Placement) -> Result<u32, Failure> {
    let dir = finisher::parent(target);
    let doing = format!("restoring {name}");
    remove_stale_temps(s, [dir]);
    let temp = crate::restore_temp::create(dir)
        .map_err(|e| Failure::local(format!("{doing}: cannot write in {}: {e}", dir.display())))?;
    let progress = Progress::start(s.mode, name, 0);
    // A handle of its own for the writer, which may be a thread's.
    let file = temp
        .as_file()
        .try_clone()
        .map_err(|e| Failure::local(format!("{doing}: cannot write in {}: {e}", dir.display())))?;
    let mut sink = ProgressWriter { inner: RestoreSink::new(file, None), progress: &progress };
    let result = s.client.restore(name, &mut sink, |size| progress.set_total(u64::from(size)));
    let written = sink.inner.finish();
    progress.finish();
    // On failure the temporary file is removed and the target untouched.
    let size = result.map_err(|e| s.explain(doing.clone(), e))?;
    written.map_err(|e| Failure::local(format!("{doing}: cannot write {}: {e}", temp.path().display())))?;
    finisher::place(temp, target, how).map_err(|e| Failure::local(format!("{doing}: {e}")))?;
    if how.sync {
        finisher::sync_folder(dir)
            .map_err(|e| Failure::local(format!("{doing}: syncing {}: {e}", dir.display())))?;
    }
    s.say(format_args!("restored {name} to {} ({size} bytes)", target.display()));
    Ok(size)
}

/// `delete NAME...`.
fn delete(s: &mut Session<'_>, names: &[String]) -> Result<(), Failure> {
    for name in names {
        s.client.delete(name).map_err(|e| s.explain(format!("deleting {name}"), e))?;
        s.say(format_args!("deleted {name}"));
    }
    Ok(())
}

/// `list`: each name printed as it arrives, in the server's order, escaped
/// (they are the server's bytes). Nothing is kept, so a listing of any
/// length runs in the transfer buffer.
fn print_list(s: &mut Session<'_>) -> Result<(), Failure> {
    use std::io::{IsTerminal, Write};
    let stdout = std::io::stdout();
    // On a terminal each name shows at once; into a pipe or file, names go
    // out a buffer at a time, not one write per name.
    let each_line = stdout.is_terminal();
    let mut lines = std::io::BufWriter::new(stdout.lock());
    // A reader that went away (`list | head -1`) is no error of ours: the
    // listing is still read to its end, so the connection stays in step.
    let mut gone = false;
    let listed = s.client.list(|name| {
        if !gone {
            gone = writeln!(lines, "{}", crate::text::Printable(name)).is_err()
                || (each_line && lines.flush().is_err());
        }
    });
    let _ = lines.flush();
    listed.map(drop).map_err(|e| s.explain("listing".into(), e))
}

/// Names a `run` list step shows; the rest are counted.
const SUMMARY_NAMES: usize = 10;

/// A `run` list step's summary: how many names, and the first few, escaped.
/// Bounded whatever the server sends.
struct Summary {
    count: usize,
    first: Vec<String>,
}

fn list_summary(s: &mut Session<'_>) -> Result<Summary, Failure> {
    let mut summary = Summary { count: 0, first: Vec::new() };
    s.client
        .list(|name| {
            summary.count += 1;
            if summary.first.len() < SUMMARY_NAMES {
                summary.first.push(crate::text::Printable(name).to_string());
            }
        })
        .map_err(|e| s.explain("listing".into(), e))?;
    Ok(summary)
}

/// `run`: the classic session of existing clients, a line per step: list,
/// back up every file in `backup.info`, list, restore the first as `tmp`,
/// delete it, and check that restoring it again finds nothing.
fn run(s: &mut Session<'_>, planned: &[Planned], force: bool) -> Result<(), Failure> {
    let Some(first) = planned.first().map(|p| p.name.clone()) else {
        return Err(Failure::local("backup.info lists no files"));
    };
    let steps = planned.len() + 5;
    let mut step = 0;
    let mut next = || {
        step += 1;
        format!("[{step}/{steps}]")
    };
    let mode = std::mem::replace(&mut s.mode, Mode::Quiet);
    let result = (|| {
        show_list(s, &next())?;
        for file in planned {
            let n = next();
            backup_one(s, file).map_err(|f| Failure { message: format!("{n} {}", f.message), ..f })?;
            out!("{n} back up {} as {}: stored ({} bytes)", file.path.display(), file.name, file.size);
        }
        show_list(s, &next())?;
        let n = next();
        let size = restore_to(s, &first, Path::new(RUN_RESTORE_AS), Placement { force, sync: true })
            .map_err(|f| Failure { message: format!("{n} {}", f.message), ..f })?;
        out!("{n} restore {first} as tmp: {size} bytes");
        let n = next();
        s.client.delete(&first).map_err(|e| s.explain(format!("{n} delete {first}"), e))?;
        out!("{n} delete {first}: deleted");
        let n = next();
        match s.client.restore(&first, &mut Discard, |_| {}) {
            Err(ClientError::NotFound) => {
                out!("{n} restore {first} again: not found, as expected");
                Ok(())
            }
            Ok(_) => Err(Failure {
                code: crate::failure::code::SERVER,
                message: format!("{n} restore {first} again: the server still has it after deleting it"),
            }),
            Err(e) => Err(s.explain(format!("{n} restore {first} again"), e)),
        }
    })();
    s.mode = mode;
    result
}

fn show_list(s: &mut Session<'_>, n: &str) -> Result<(), Failure> {
    match list_summary(s) {
        Ok(Summary { count, first }) => {
            let files = if count == 1 { "file" } else { "files" };
            let more = match count - first.len() {
                0 => String::new(),
                rest => format!(", and {rest} more"),
            };
            out!("{n} list: {count} {files}: {}{more}", first.join(", "))
        }
        Err(f) if f.code == crate::failure::code::NO_FILES => out!("{n} list: no files yet"),
        Err(f) => return Err(Failure { message: format!("{n} {}", f.message), ..f }),
    }
    Ok(())
}

/// Throws restored bytes away.
struct Discard;

impl embedded_io::ErrorType for Discard {
    type Error = std::convert::Infallible;
}

impl embedded_io::Write for Discard {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
