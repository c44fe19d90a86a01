//! The single writer thread and group commit.
//!
//! Owns: the only code path that writes to the engine. Jobs arrive on a bounded channel; the
//! thread drains what is queued (at most [`MAX_GROUP_JOBS`] jobs or [`MAX_GROUP_BYTES`]),
//! runs each against a [`Txn`] that sees the committed data plus the group's earlier writes,
//! commits the group as one durable batch and only then answers every caller.
//!
//! Must never: answer `Ok` before the batch is durable, or let a failed job's writes reach the
//! batch (each job writes into its own layer, merged only on success). Exclusive jobs (large
//! maintenance such as pruning) run alone and may commit in several steps.

use super::keys;
use crate::kv::{Direction, KeyRange, KvEngine, WriteBatch};
use crate::{Result, StoreError};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed in one group.
pub const MAX_GROUP_JOBS: usize = 1024;
/// Group commit stops draining once the pending writes exceed this many bytes.
pub const MAX_GROUP_BYTES: usize = 8 << 20;
/// Jobs waiting for the writer before callers wait (back-pressure).
pub const QUEUE_JOBS: usize = 4096;

type Layer = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
/// Runs a job's writes; `(succeeded, how to answer once the group is committed)`.
type RunJob<E> = Box<dyn FnOnce(&mut Txn<'_, E>) -> (bool, Finish) + Send>;
type Finish = Box<dyn FnOnce(std::result::Result<(), &StoreError>) + Send>;

/// A unit of work for the writer.
pub struct Job<E> {
    exclusive: bool,
    run: RunJob<E>,
}

/// The writes of the current group over the committed data. Reads see (newest first) the
/// running job's layer, the group's layer, then the engine.
pub struct Txn<'a, E> {
    engine: &'a E,
    group: Layer,
    job: Layer,
    group_bytes: usize,
}

impl<'a, E: KvEngine> Txn<'a, E> {
    fn new(engine: &'a E) -> Self {
        Txn { engine, group: Layer::new(), job: Layer::new(), group_bytes: 0 }
    }

    /// The engine (for reads that need no view of pending writes).
    pub fn engine(&self) -> &E {
        self.engine
    }

    /// The value of `key` including pending writes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.job.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(key) {
            return Ok(v.clone());
        }
        self.engine.get(key)
    }

    /// A counter (absent = 0).
    pub fn get_u64(&self, key: &[u8]) -> Result<u64> {
        match self.get(key)? {
            Some(v) => keys::read_u64(key, &v),
            None => Ok(0),
        }
    }

    /// The first entry with key in `[start, end)`, including pending writes.
    ///
    /// Pending deletes are honoured only for keys the engine returns first; callers use it
    /// where non-exclusive jobs never delete (rule history is append-only in normal jobs).
    pub fn first_in(&self, start: &[u8], end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let range = (Bound::Included(start.to_vec()), Bound::Excluded(end.to_vec()));
        let mut best: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
        for layer in [&self.job, &self.group] {
            if let Some((k, v)) = layer.range(range.clone()).next()
                && best.as_ref().is_none_or(|(bk, _)| k < bk)
            {
                best = Some((k.clone(), v.clone()));
            }
        }
        let r: KeyRange<'_> = (Bound::Included(start), Bound::Excluded(end));
        let mut from_engine = None;
        self.engine.scan(r, Direction::Forward, &mut |k, v| {
            if self.job.get(k).or(self.group.get(k)).is_some_and(|v| v.is_none()) {
                return true; // deleted in this group: look further
            }
            from_engine = Some((k.to_vec(), v.to_vec()));
            false
        })?;
        match (best, from_engine) {
            (Some((bk, bv)), Some((ek, ev))) => {
                if ek < bk {
                    Ok(Some((ek, ev)))
                } else {
                    Ok(bv.map(|v| (bk, v)))
                }
            }
            (Some((bk, bv)), None) => Ok(bv.map(|v| (bk, v))),
            (None, e) => Ok(e),
        }
    }

    /// Sets `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.job.insert(key, Some(value));
    }

    /// Sets a counter.
    pub fn put_u64(&mut self, key: &[u8], value: u64) {
        self.put(key.to_vec(), keys::u64_value(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.job.insert(key, None);
    }

    fn merge_job(&mut self) {
        for (k, v) in std::mem::take(&mut self.job) {
            self.group_bytes += k.len() + v.as_ref().map_or(0, Vec::len);
            self.group.insert(k, v);
        }
    }

    /// Commits everything pending now (exclusive jobs use this to work in steps).
    pub fn commit_now(&mut self) -> Result<()> {
        self.merge_job();
        let mut batch = WriteBatch::new();
        for (k, v) in std::mem::take(&mut self.group) {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        self.group_bytes = 0;
        self.engine.write(&batch)
    }
}

/// Handle to the writer thread; dropping it stops the thread after the queued jobs.
pub struct Writer<E> {
    tx: Option<mpsc::Sender<Job<E>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<E: KvEngine> Writer<E> {
    /// Starts the writer thread for `engine`.
    pub fn start(engine: Arc<E>) -> Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_JOBS);
        let thread = std::thread::Builder::new()
            .name(format!("dasher-store-{}", engine.name()))
            .spawn(move || run(&*engine, rx))
            .map_err(|e| StoreError::Engine(format!("cannot start the store writer thread: {e}")))?;
        Ok(Writer { tx: Some(tx), thread: Some(thread) })
    }

    /// Runs `f` in the writer thread as part of a group commit; returns its result once the
    /// group is durable. If `f` fails, nothing it wrote is committed.
    pub async fn submit<R, F>(&self, exclusive: bool, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_, E>) -> Result<R> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel::<Result<R>>();
        let run = Box::new(move |txn: &mut Txn<'_, E>| -> (bool, Finish) {
            match f(txn) {
                Ok(r) => (
                    true,
                    Box::new(move |committed: std::result::Result<(), &StoreError>| {
                        let _ = reply.send(committed.map(|()| r).map_err(|e| StoreError::Engine(e.to_string())));
                    }),
                ),
                Err(e) => {
                    let _ = reply.send(Err(e));
                    (false, Box::new(|_| {}))
                }
            }
        });
        let closed = || StoreError::Engine("the store writer has stopped".into());
        let tx = self.tx.as_ref().ok_or_else(closed)?;
        tx.send(Job { exclusive, run }).await.map_err(|_| closed())?;
        rx.await.map_err(|_| {
            StoreError::Engine("the store writer dropped the request (job panicked or writer stopped)".into())
        })?
    }
}

impl<E> Drop for Writer<E> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            // The thread finishes the queued jobs and drops its engine handle, so a reopen
            // of the same path right after the drop finds the files unlocked.
            let _ = t.join();
        }
    }
}

fn run<E: KvEngine>(engine: &E, mut rx: mpsc::Receiver<Job<E>>) {
    let mut carried: Option<Job<E>> = None;
    loop {
        let first = match carried.take() {
            Some(j) => j,
            None => match rx.blocking_recv() {
                Some(j) => j,
                None => return,
            },
        };
        let mut txn = Txn::new(engine);
        let mut finishers: Vec<Finish> = Vec::new();
        if first.exclusive {
            let (ok, fin) = run_job(&mut txn, first);
            settle(&mut txn, ok);
            let res = txn.commit_now();
            fin(res.as_ref().map(|_| ()));
            continue;
        }
        let (ok, fin) = run_job(&mut txn, first);
        settle(&mut txn, ok);
        finishers.push(fin);
        while finishers.len() < MAX_GROUP_JOBS && txn.group_bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(job) if job.exclusive => {
                    carried = Some(job);
                    break;
                }
                Ok(job) => {
                    let (ok, fin) = run_job(&mut txn, job);
                    settle(&mut txn, ok);
                    finishers.push(fin);
                }
                Err(_) => break,
            }
        }
        let res = txn.commit_now();
        if let Err(e) = &res {
            tracing::error!(engine = engine.name(), jobs = finishers.len(), error = %e, "group commit failed");
        }
        for fin in finishers {
            fin(res.as_ref().map(|_| ()));
        }
    }
}

/// Runs one job; a panicking job fails alone (its caller sees the writer drop its request)
/// instead of taking the writer thread and every later write down with it.
fn run_job<E: KvEngine>(txn: &mut Txn<'_, E>, job: Job<E>) -> (bool, Finish) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.run)(txn))) {
        Ok(done) => done,
        Err(_) => {
            tracing::error!("a store write job panicked; its writes are discarded");
            (false, Box::new(|_| {}))
        }
    }
}

fn settle<E: KvEngine>(txn: &mut Txn<'_, E>, ok: bool) {
    if ok {
        txn.merge_job();
    } else {
        txn.job.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::RedbEngine;

    fn writer() -> (tempfile::TempDir, Arc<RedbEngine>, Writer<RedbEngine>) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(RedbEngine::open(&dir.path().join("db")).unwrap());
        let writer = Writer::start(engine.clone()).unwrap();
        (dir, engine, writer)
    }

    #[tokio::test]
    async fn failed_job_writes_nothing_and_others_commit() {
        let (_dir, engine, writer) = writer();
        let failing = writer.submit(false, |txn| {
            txn.put(b"a".to_vec(), b"1".to_vec());
            Err::<(), _>(StoreError::Engine("refused".into()))
        });
        let ok = writer.submit(false, |txn| {
            txn.put(b"b".to_vec(), b"2".to_vec());
            Ok(())
        });
        let (failing, ok) = tokio::join!(failing, ok);
        assert!(failing.is_err());
        ok.unwrap();
        assert_eq!(engine.get(b"a").unwrap(), None);
        assert_eq!(engine.get(b"b").unwrap(), Some(b"2".to_vec()));
    }

    #[tokio::test]
    async fn panicking_job_does_not_stop_the_writer() {
        let (_dir, engine, writer) = writer();
        let panicked = writer
            .submit(false, |txn| -> Result<()> {
                txn.put(b"p".to_vec(), b"1".to_vec());
                panic!("job bug")
            })
            .await;
        assert!(panicked.is_err());
        writer
            .submit(false, |txn| {
                txn.put(b"q".to_vec(), b"2".to_vec());
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(engine.get(b"p").unwrap(), None);
        assert_eq!(engine.get(b"q").unwrap(), Some(b"2".to_vec()));
    }
}
