//! The steps, as in the QEMU firmware's async session, then the same two
//! files again as pipelined batches.

use backup_core::ClientError;
use backup_core::async_client::{AsyncClient, AsyncConnect};
use backup_core::client::{Batch, BatchFile, RestoreBatch};
use core::convert::Infallible;

use crate::content::{CONFIG_LEN, CONFIG_NAME, Checker, Generated, LOG_LEN, LOG_NAME};

/// The step that failed.
#[derive(Debug, Clone, Copy, defmt::Format)]
pub enum Step {
    BackupLog,
    BackupConfig,
    List,
    RestoreLog,
    RestoreConfig,
    Delete,
    RestoreDeleted,
    BackupBatch,
    RestoreBatch,
    Connection,
}

/// The files of the batches, by index: the log, then the config blob.
const NAMES: [&str; 2] = [LOG_NAME, CONFIG_NAME];

fn name(index: usize) -> &'static str {
    NAMES.get(index).copied().unwrap_or("")
}

fn contents(index: usize) -> Generated {
    if index == 0 { Generated::log() } else { Generated::config() }
}

/// Both files as one pipelined backup.
struct Backups {
    done: u8,
}

impl Batch for Backups {
    type Reader = Generated;
    fn file(&mut self, index: usize) -> BatchFile<'_, Generated> {
        let source = contents(index);
        Ok((name(index), source.len(), source))
    }
    fn name(&mut self, index: usize) -> &str {
        name(index)
    }
    fn done(&mut self, index: usize) {
        self.done |= 1 << index;
    }
}

/// Both files as one pipelined restore, each checked as it arrives.
struct Restores {
    checked: u8,
}

impl RestoreBatch for Restores {
    type Writer = Checker;
    fn name(&mut self, index: usize) -> &str {
        name(index)
    }
    fn open(&mut self, _: usize, _: u32) -> Result<Checker, Infallible> {
        Ok(Checker::new())
    }
    fn finish(&mut self, index: usize, check: Checker) -> Result<(), Infallible> {
        let expected = contents(index);
        if check.count == expected.len() && check.hash.0 == expected.checksum() {
            self.checked |= 1 << index;
        }
        Ok(())
    }
}

pub async fn run<C: AsyncConnect>(client: &mut AsyncClient<'_, C>) -> Result<(), Step>
where
    C::Conn: embedded_io_async::ErrorType<Error: defmt::Format>,
{
    client.backup(LOG_NAME, LOG_LEN, &mut Generated::log()).await.map_err(|e| fail(Step::BackupLog, e))?;
    defmt::info!("backed up {=str}", LOG_NAME);
    client
        .backup(CONFIG_NAME, CONFIG_LEN, &mut Generated::config())
        .await
        .map_err(|e| fail(Step::BackupConfig, e))?;
    defmt::info!("backed up {=str}", CONFIG_NAME);

    // Other files of this user may exist from earlier runs; ours must be there.
    let mut seen = 0u8;
    let count = client
        .list(|name| {
            if name == LOG_NAME.as_bytes() {
                seen |= 1;
            } else if name == CONFIG_NAME.as_bytes() {
                seen |= 2;
            }
        })
        .await
        .map_err(|e| fail(Step::List, e))?;
    if seen != 3 {
        return Err(Step::List);
    }
    defmt::info!("listed {=usize} files, both of ours among them", count);

    for (name, expected, step) in [
        (LOG_NAME, Generated::log(), Step::RestoreLog),
        (CONFIG_NAME, Generated::config(), Step::RestoreConfig),
    ] {
        let mut check = Checker::new();
        let size = client.restore(name, &mut check, |_| {}).await.map_err(|e| fail(step, e))?;
        if size != expected.len() || check.count != size || check.hash.0 != expected.checksum() {
            return Err(step);
        }
        defmt::info!("restored {=str}: {=u32} bytes, checksum ok", name, size);
    }

    client.delete(CONFIG_NAME).await.map_err(|e| fail(Step::Delete, e))?;
    match client.restore(CONFIG_NAME, &mut Checker::new(), |_| {}).await {
        Err(ClientError::NotFound) => defmt::info!("{=str} is gone, as expected", CONFIG_NAME),
        _ => return Err(Step::RestoreDeleted),
    }

    let mut backups = Backups { done: 0 };
    client.backup_batch(NAMES.len(), &mut backups).await.map_err(|e| fail(Step::BackupBatch, e))?;
    if backups.done != 3 {
        return Err(Step::BackupBatch);
    }
    let mut restores = Restores { checked: 0 };
    client.restore_batch(NAMES.len(), &mut restores).await.map_err(|e| fail(Step::RestoreBatch, e))?;
    if restores.checked != 3 {
        return Err(Step::RestoreBatch);
    }
    defmt::info!("pipelined batches: both backed up, both restored and checked");

    // Version 2: the server kept the one connection open throughout.
    if !client.is_connected() {
        return Err(Step::Connection);
    }
    Ok(())
}

/// Logs why `step` failed and names it.
fn fail(step: Step, error: impl defmt::Format) -> Step {
    defmt::error!("{}: {}", step, error);
    step
}
