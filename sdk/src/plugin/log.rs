/// Log level, as in the WIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

#[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
thread_local! {
    static NATIVE: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Logs a message.
pub fn log(level: Level, message: &str) {
    #[cfg(all(feature = "plugin", target_arch = "wasm32"))]
    {
        use crate::guest::dasher::plugin::host::{LogLevel, log};
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        log(level, message);
    }
    #[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
    NATIVE.with(|l| l.borrow_mut().push((level, message.to_owned())));
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Native only: takes this thread's collected log lines.
#[cfg(not(all(feature = "plugin", target_arch = "wasm32")))]
pub fn native_take() -> Vec<(Level, String)> {
    NATIVE.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
