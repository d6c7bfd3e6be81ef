//! What wakes the vision thread besides frames: a classifier file replaced on disk, and
//! the signals (SIGTERM/SIGINT stop, SIGHUP reloads).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

/// Notices when a file is replaced (copied over and renamed into place, or
/// rewritten): its inode, size or modification time changes.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    stamp: Option<(u64, u64, SystemTime)>,
    last_check: Option<Instant>,
    every: Duration,
}

impl FileWatch {
    pub fn new(path: &Path, every: Duration) -> FileWatch {
        FileWatch {
            path: path.to_owned(),
            stamp: Self::read(path),
            last_check: None,
            every,
        }
    }

    fn read(path: &Path) -> Option<(u64, u64, SystemTime)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some((m.ino(), m.len(), m.modified().ok()?))
    }

    /// Takes the file as it is now as seen (after a reload asked for another way, so the
    /// same change does not reload twice).
    pub fn absorb(&mut self) {
        if let Some(stamp) = Self::read(&self.path) {
            self.stamp = Some(stamp);
        }
    }

    /// True once per change, checked at most every `every`.
    pub fn changed(&mut self, now: Instant) -> bool {
        if self.last_check.is_some_and(|t| now - t < self.every) {
            return false;
        }
        self.last_check = Some(now);
        let stamp = Self::read(&self.path);
        // A file that is briefly missing (mid-replace) is not a change yet.
        if stamp.is_none() || stamp == self.stamp {
            return false;
        }
        self.stamp = stamp;
        true
    }
}

/// Flags set from signal handlers.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pub shutdown: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// SIGTERM and SIGINT request shutdown; SIGHUP requests a classifier reload.
    pub fn install() -> Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let signals = Signals::default();
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, signals.shutdown.clone())
                .context("cannot install signal handler")?;
        }
        signal_hook::flag::register(SIGHUP, signals.reload.clone())
            .context("cannot install signal handler")?;
        Ok(signals)
    }
}
