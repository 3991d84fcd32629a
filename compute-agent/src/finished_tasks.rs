//! What this agent finished, on disk: a journal (`journal.jsonl`, one JSON line per task: the
//! task, when, the instance and the outcome it reported), and its index in memory.
//!
//! The conductor sends a task's command again when it has not heard of its end (its result
//! was lost, or came after the reconciler looked). Commands are not all harmless twice: a
//! reboot re-run reboots the guest again. So an agent that finds a command's task here does
//! not run it again; it reports the recorded outcome once more, which is what the conductor
//! was missing. The record survives an agent restart: it is written while the result is
//! reported, and synced when a second run would repeat something (a reboot; see
//! `ComputeCommand::repeats_harmlessly`).
//!
//! One journal with group commit, not a file per task: a file per task cost two fsyncs per
//! command (the file and its directory), which took a tenth of the boot benchmark's burst
//! throughput on a disk. Records appended while one fsync runs are made durable by the next
//! one, together.
//!
//! Records older than the retention are removed (the journal is rewritten without them): by
//! then the conductor has ended the task one way or the other (its re-sends stop after
//! `task_attempts`, builds at the build timeout).

use nova_core::ids::{InstanceUuid, TaskId};
use nova_core::rpc::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Finished {
    pub instance: InstanceUuid,
    pub outcome: Outcome,
}

/// One line of the journal.
#[derive(Serialize, Deserialize)]
struct Entry {
    task: TaskId,
    /// When it was recorded (ms since the epoch).
    at_ms: i64,
    #[serde(flatten)]
    finished: Finished,
}

const JOURNAL: &str = "journal.jsonl";

pub struct FinishedTasks {
    dir: PathBuf,
    state: Mutex<State>,
    /// How many appended records are durable; held while an fsync runs.
    synced: Mutex<u64>,
}

struct State {
    index: HashMap<TaskId, (i64, Finished)>,
    journal: File,
    /// Why the journal can no longer be trusted to keep what is appended (an fsync failed,
    /// whose pages Linux may have dropped; a rewrite left the handle on an unlinked file):
    /// every later record fails instead of claiming a durability it lacks.
    broken: Option<String>,
    /// How many records were appended to the journal since it was opened.
    appended: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FinishedTasks {
    /// Opens (creating) the journal in `dir` and reads it. A torn last line (the agent died
    /// while appending it, before its result was reported) is dropped. Records of the earlier
    /// layout (`<task id>.json`, one per task) are taken into the journal.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL);
        let mut index = HashMap::new();
        match File::open(&path) {
            Ok(file) => {
                for line in std::io::BufReader::new(file).split(b'\n') {
                    match serde_json::from_slice::<Entry>(&line?) {
                        Ok(e) => {
                            index.insert(e.task, (e.at_ms, e.finished));
                        }
                        Err(e) => tracing::warn!(error = %e, "finished-task record unreadable"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut earlier = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let task = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<TaskId>().ok());
            match (path.extension().and_then(|e| e.to_str()), task) {
                (Some("partial"), _) => std::fs::remove_file(&path)?,
                (Some("json"), Some(task)) => {
                    let at_ms = std::fs::metadata(&path)?
                        .modified()
                        .ok()
                        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    if let Ok(finished) = serde_json::from_slice(&std::fs::read(&path)?) {
                        index.insert(task, (at_ms, finished));
                    }
                    earlier.push(path);
                }
                _ => {}
            }
        }
        // Rewritten whole: the torn line and the earlier layout's files go.
        write_journal(dir, &index)?;
        for path in earlier {
            std::fs::remove_file(path)?;
        }
        let journal = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                index,
                journal,
                broken: None,
                appended: 0,
            }),
            synced: Mutex::new(0),
        })
    }

    pub fn get(&self, task: TaskId) -> Option<Finished> {
        lock(&self.state)
            .index
            .get(&task)
            .map(|(_, finished)| finished.clone())
    }

    /// Records `task`; with `sync`, returns once the record is on disk (else it is in the
    /// page cache: it survives the agent's death, not the machine's).
    pub fn record(&self, task: TaskId, finished: &Finished, sync: bool) -> std::io::Result<()> {
        let at_ms = nova_core::time::now_ms();
        let mut line = serde_json::to_vec(&Entry {
            task,
            at_ms,
            finished: finished.clone(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mine = {
            let mut state = lock(&self.state);
            if let Some(why) = &state.broken {
                return Err(std::io::Error::other(format!(
                    "the journal is broken: {why}"
                )));
            }
            let length = state.journal.metadata()?.len();
            if let Err(e) = state.journal.write_all(&line) {
                // A line half written (a full disk) would swallow the next record's start.
                if let Err(t) = state.journal.set_len(length) {
                    state.broken = Some(format!("a partial record not removed: {t}"));
                }
                return Err(e);
            }
            state.appended += 1;
            state.index.insert(task, (at_ms, finished.clone()));
            state.appended
        };
        if !sync {
            return Ok(());
        }
        // Group commit: whoever holds `synced` syncs everything appended so far, and those who
        // waited for it find their record durable already. (Locked in this order only, `synced`
        // then `state`; a rewrite by `prune` holds `state` alone.)
        let mut synced = lock(&self.synced);
        if *synced < mine {
            let (appended, journal) = {
                let state = lock(&self.state);
                (state.appended, state.journal.try_clone()?)
            };
            if let Err(e) = journal.sync_data() {
                lock(&self.state).broken = Some(format!("fsync failed: {e}"));
                return Err(e);
            }
            *synced = appended;
        }
        Ok(())
    }

    /// Removes the records older than `retention`; returns how many.
    pub fn prune(&self, retention: Duration) -> std::io::Result<usize> {
        let oldest = nova_core::time::now_ms()
            .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut state = lock(&self.state);
        let before = state.index.len();
        state.index.retain(|_, (at_ms, _)| *at_ms >= oldest);
        let removed = before - state.index.len();
        if removed > 0 {
            // Everything appended so far is in the rewritten journal, synced; appends go to the
            // new file from here (they take `state`, which this holds).
            let renamed = write_journal(&self.dir, &state.index);
            match std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.join(JOURNAL))
            {
                Ok(journal) => state.journal = journal,
                Err(e) if renamed.is_ok() => {
                    state.broken = Some(format!("the rewritten journal does not open: {e}"));
                    return Err(e);
                }
                // Not renamed: the handle is still on the journal.
                Err(_) => {}
            }
            renamed?;
        }
        Ok(removed)
    }
}

/// Writes `index` as the journal: a new file, synced, renamed over the old one, and the
/// directory synced.
fn write_journal(dir: &Path, index: &HashMap<TaskId, (i64, Finished)>) -> std::io::Result<()> {
    let partial = dir.join(format!("{JOURNAL}.partial"));
    let mut out = std::io::BufWriter::new(File::create(&partial)?);
    for (task, (at_ms, finished)) in index {
        let entry = Entry {
            task: *task,
            at_ms: *at_ms,
            finished: finished.clone(),
        };
        serde_json::to_writer(&mut out, &entry).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, dir.join(JOURNAL))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nova_core::model::PowerState;

    fn done() -> Finished {
        Finished {
            instance: InstanceUuid::new_v4(),
            outcome: Outcome::Done {
                power_state: PowerState::Running,
                addresses: Vec::new(),
            },
        }
    }

    #[test]
    fn a_record_survives_reopening_and_is_pruned_after_its_retention() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        let task = TaskId::new_v4();
        assert_eq!(tasks.get(task), None);
        let finished = done();
        tasks.record(task, &finished, true).unwrap();
        drop(tasks);
        // A torn last line (an agent killed while appending) is dropped; a leftover partial
        // journal is removed.
        let journal = dir.path().join(JOURNAL);
        let mut bytes = std::fs::read(&journal).unwrap();
        bytes.extend_from_slice(b"{\"task\": \"0000");
        std::fs::write(&journal, bytes).unwrap();
        std::fs::write(dir.path().join("journal.jsonl.partial"), b"{").unwrap();
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        assert_eq!(tasks.get(task), Some(finished.clone()));
        assert!(!dir.path().join("journal.jsonl.partial").exists());
        // Appends after the torn line are read back.
        let later = TaskId::new_v4();
        tasks.record(later, &finished, false).unwrap();
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        assert_eq!(tasks.get(later), Some(finished.clone()));
        assert_eq!(tasks.prune(Duration::from_secs(3600)).unwrap(), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(tasks.prune(Duration::from_millis(1)).unwrap(), 2);
        assert_eq!(tasks.get(task), None);
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        assert_eq!(tasks.get(later), None);
    }

    #[test]
    fn records_of_the_earlier_layout_are_taken_into_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let task = TaskId::new_v4();
        let finished = done();
        std::fs::write(
            dir.path().join(format!("{task}.json")),
            serde_json::to_vec(&finished).unwrap(),
        )
        .unwrap();
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        assert_eq!(tasks.get(task), Some(finished.clone()));
        assert!(!dir.path().join(format!("{task}.json")).exists());
        drop(tasks);
        assert_eq!(
            FinishedTasks::open(dir.path()).unwrap().get(task),
            Some(finished)
        );
    }

    /// Synced records and rewrites of the journal, side by side: neither waits for the other
    /// for ever, and what was recorded after the last rewrite is read back.
    #[test]
    fn records_and_prunes_run_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = std::sync::Arc::new(FinishedTasks::open(dir.path()).unwrap());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let recorded: Vec<TaskId> = (0..200).map(|_| TaskId::new_v4()).collect();
        let writers: Vec<_> = recorded
            .chunks(50)
            .map(|chunk| {
                let (tasks, chunk, done_tx) = (tasks.clone(), chunk.to_vec(), done_tx.clone());
                std::thread::spawn(move || {
                    for task in chunk {
                        tasks.record(task, &done(), true).unwrap();
                    }
                    done_tx.send(()).unwrap();
                })
            })
            .collect();
        let pruner = {
            let (tasks, done_tx) = (tasks.clone(), done_tx.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    // Every record is younger than an hour: each prune removes nothing, so
                    // make one to remove, then prune.
                    let old = TaskId::new_v4();
                    lock(&tasks.state).index.insert(old, (0, done()));
                    tasks.prune(Duration::from_secs(3600)).unwrap();
                }
                done_tx.send(()).unwrap();
            })
        };
        for _ in 0..5 {
            done_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a record or a prune waits for ever");
        }
        for t in writers.into_iter().chain([pruner]) {
            t.join().unwrap();
        }
        drop(tasks);
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        assert!(recorded.iter().all(|t| tasks.get(*t).is_some()));
    }

    #[test]
    fn concurrent_records_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = std::sync::Arc::new(FinishedTasks::open(dir.path()).unwrap());
        let ids: Vec<TaskId> = (0..64).map(|_| TaskId::new_v4()).collect();
        let threads: Vec<_> = ids
            .chunks(8)
            .map(|chunk| {
                let (tasks, chunk) = (tasks.clone(), chunk.to_vec());
                std::thread::spawn(move || {
                    for task in chunk {
                        tasks.record(task, &done(), true).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock(&tasks.synced), 64);
        drop(tasks);
        let tasks = FinishedTasks::open(dir.path()).unwrap();
        assert!(ids.iter().all(|t| tasks.get(*t).is_some()));
    }
}
