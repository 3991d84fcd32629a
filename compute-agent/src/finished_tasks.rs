//! What this agent finished, on disk: one small file per task, `<task id>.json`, holding the
//! instance and the outcome it reported.
//!
//! The conductor sends a task's command again when it has not heard of its end (its result
//! was lost, or came after the reconciler looked). Commands are not all harmless twice: a
//! reboot re-run reboots the guest again. So an agent that finds a command's task here does
//! not run it again; it reports the recorded outcome once more, which is what the conductor
//! was missing. The record survives an agent restart: it is written (and synced) before the
//! result is reported.
//!
//! Records older than the retention are removed: by then the conductor has ended the task one
//! way or the other (its re-sends stop after `task_attempts`, builds at the build timeout).

use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::rpc::Outcome;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Finished {
    pub instance: InstanceUuid,
    pub outcome: Outcome,
}

pub struct FinishedTasks {
    dir: PathBuf,
}

impl FinishedTasks {
    /// The record in `dir`, created when missing. Partial files of a crash are removed.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "partial") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, task: TaskId) -> PathBuf {
        self.dir.join(format!("{task}.json"))
    }

    /// The recorded end of `task`, if this agent finished it. An unreadable record counts as
    /// none (the command then runs again, as it did before there were records).
    pub fn get(&self, task: TaskId) -> Option<Finished> {
        let bytes = match std::fs::read(self.path(task)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(%task, error = %e, "finished-task record unreadable");
                return None;
            }
        };
        serde_json::from_slice(&bytes)
            .inspect_err(|e| tracing::warn!(%task, error = %e, "finished-task record unreadable"))
            .ok()
    }

    /// Records the end of `task` durably: written to a partial file, synced, renamed, and the
    /// directory synced, so that a crash leaves either no record or a whole one.
    pub fn record(&self, task: TaskId, finished: &Finished) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(finished).map_err(std::io::Error::other)?;
        let partial = self.dir.join(format!("{task}.partial"));
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&partial, self.path(task))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Removes the records older than `retention`; returns how many went.
    pub fn prune(&self, retention: Duration) -> std::io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            if now.duration_since(modified).unwrap_or_default() > retention {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nova_core::model::PowerState;

    #[test]
    fn a_record_survives_reopening_and_is_pruned_after_its_retention() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        let task = TaskId::new_v4();
        assert_eq!(tasks.get(task), None);
        let finished = Finished {
            instance: InstanceUuid::new_v4(),
            outcome: Outcome::Done {
                power_state: PowerState::Running,
                addresses: Vec::new(),
            },
        };
        tasks.record(task, &finished).unwrap();
        // A crash mid-write leaves a partial file, which reopening removes.
        std::fs::write(dir.path().join("x.partial"), b"{").unwrap();
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        assert_eq!(tasks.get(task), Some(finished));
        assert!(!dir.path().join("x.partial").exists());
        assert_eq!(tasks.prune(Duration::from_secs(3600)).unwrap(), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(tasks.prune(Duration::from_millis(1)).unwrap(), 1);
        assert_eq!(tasks.get(task), None);
    }
}
