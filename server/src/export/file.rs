//! The `file` and `stdout` sinks: JSON lines. The file sink appends, `fsync`s before it
//! acknowledges (so the cursor never runs ahead of the disk), and rotates by size and age,
//! optionally gzipping the rotated file.

use super::SinkError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An open JSON-lines file with its rotation policy.
pub struct FileSink {
    path: PathBuf,
    rotate_bytes: u64,
    rotate_after: Option<Duration>,
    gzip: bool,
    file: Option<(std::fs::File, u64, Instant)>,
}

impl FileSink {
    /// A sink writing `path` (opened at the first write).
    pub fn new(path: PathBuf, rotate_bytes: u64, rotate_secs: u64, gzip: bool) -> FileSink {
        let rotate_after = (rotate_secs > 0).then(|| Duration::from_secs(rotate_secs));
        FileSink { path, rotate_bytes, rotate_after, gzip, file: None }
    }

    /// Appends `lines` (each one JSON record, no newline) and syncs them to disk.
    pub fn write(&mut self, lines: &[Vec<u8>]) -> Result<(), SinkError> {
        let io = |e: std::io::Error| SinkError::Transient(format!("{}: {e}", self.path.display()));
        if let Some((_, size, opened)) = &self.file {
            let by_size = self.rotate_bytes > 0 && *size >= self.rotate_bytes;
            let by_age = self.rotate_after.is_some_and(|a| opened.elapsed() >= a && *size > 0);
            if by_size || by_age {
                self.file = None;
                self.rotate().map_err(io)?;
            }
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
            let size = f.metadata().map_err(io)?.len();
            self.file = Some((f, size, Instant::now()));
        }
        let Some((f, size, _)) = self.file.as_mut() else { return Ok(()) };
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.extend_from_slice(l);
            buf.push(b'\n');
        }
        let r = f.write_all(&buf).and_then(|()| f.sync_data());
        if let Err(e) = r {
            // Reopen next time: a partial line may be on disk; the batch is written again.
            self.file = None;
            return Err(io(e));
        }
        *size += buf.len() as u64;
        Ok(())
    }

    /// Renames the current file to `PATH.<unix ms>` (gzipped to `….gz` when configured).
    fn rotate(&self) -> std::io::Result<()> {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let mut n = 0u32;
        let rotated = loop {
            let mut p = self.path.clone().into_os_string();
            p.push(if n == 0 { format!(".{ms}") } else { format!(".{ms}-{n}") });
            let mut gz = p.clone();
            gz.push(".gz");
            if !Path::new(&p).exists() && !Path::new(&gz).exists() {
                break PathBuf::from(p);
            }
            n += 1;
        };
        std::fs::rename(&self.path, &rotated)?;
        if self.gzip {
            gzip(&rotated)?;
        }
        Ok(())
    }
}

/// Compresses `path` to `path.gz` (synced, then renamed into place) and removes `path`.
fn gzip(path: &Path) -> std::io::Result<()> {
    let mut gz_path = path.as_os_str().to_owned();
    gz_path.push(".gz");
    let mut tmp = gz_path.clone();
    tmp.push(".tmp");
    let mut input = std::fs::File::open(path)?;
    let out = std::fs::File::create(&tmp)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut enc)?;
    enc.finish()?.sync_all()?;
    // Shippers watching for `*.gz` never see a partial file.
    std::fs::rename(&tmp, &gz_path)?;
    std::fs::remove_file(path)
}

/// Writes `lines` to standard output, one per line, and flushes.
pub fn write_stdout(lines: &[Vec<u8>]) -> Result<(), SinkError> {
    let mut out = std::io::stdout().lock();
    for l in lines {
        out.write_all(l).and_then(|()| out.write_all(b"\n")).map_err(|e| SinkError::Transient(e.to_string()))?;
    }
    out.flush().map_err(|e| SinkError::Transient(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_gzips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/events.jsonl");
        let mut s = FileSink::new(path.clone(), 10, 0, true);
        s.write(&[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]).unwrap();
        s.write(&[b"{\"a\":3}".to_vec()]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":3}\n");
        let rotated: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "gz"))
            .collect();
        assert_eq!(rotated.len(), 1);
        let mut text = String::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(std::fs::File::open(&rotated[0]).unwrap()).read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
    }
}
