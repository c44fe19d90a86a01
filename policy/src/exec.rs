//! A bounded pool of OS threads for plugin calls, so a guest near its deadline never stalls
//! a tokio worker serving HTTP. The queue is bounded: when it is full a call fails fast and
//! the fail-static policy answers instead.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool. Dropping it lets the workers finish queued jobs and exit.
pub(crate) struct Executor {
    tx: SyncSender<Job>,
}

impl Executor {
    pub(crate) fn new(workers: usize, queue_capacity: usize) -> Executor {
        let (tx, rx) = sync_channel::<Job>(queue_capacity.max(1));
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("dasher-plugin-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn plugin worker thread");
        }
        Executor { tx }
    }

    /// Runs `f` on a worker; `None` if the queue is full or the pool is gone.
    pub(crate) async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.tx.try_send(job) {
            Ok(()) => rx.await.ok(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => None,
        }
    }
}
