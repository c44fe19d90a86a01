//! The plugin directory watcher: notify + debouncer on a thread of its own. Every batch of
//! events triggers a full rescan (content-hash deduplicated, so unchanged files cost a read
//! and a hash). While a removed plugin file is inside its grace window the watcher rescans
//! periodically, so the removal takes effect without another event.

use crate::manager::{Inner, watcher_reload};
use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;
use std::path::PathBuf;
use std::sync::Weak;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

pub(crate) fn spawn(inner: Weak<Inner>, dir: PathBuf, debounce_ms: u64) -> Result<(), String> {
    let (tx, rx) = channel();
    let mut debouncer =
        new_debouncer(Duration::from_millis(debounce_ms.max(10)), None, tx).map_err(|e| e.to_string())?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive).map_err(|e| e.to_string())?;
    let poll = Duration::from_millis(debounce_ms.max(10));
    std::thread::Builder::new()
        .name("dasher-plugin-watch".into())
        .spawn(move || {
            let _debouncer = debouncer;
            let mut pending = false;
            loop {
                match rx.recv_timeout(poll) {
                    Ok(Ok(events)) => {
                        if events.iter().all(|e| e.kind.is_access()) {
                            continue;
                        }
                    }
                    Ok(Err(errors)) => {
                        tracing::warn!("plugin directory watch error: {errors:?}");
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if inner.strong_count() == 0 {
                            return;
                        }
                        if !pending {
                            continue;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                match watcher_reload(&inner) {
                    Some(p) => pending = p,
                    None => return,
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
