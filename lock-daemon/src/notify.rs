//! systemd notification (`sd_notify`): READY, STATUS, WATCHDOG and STOPPING datagrams to
//! `$NOTIFY_SOCKET`. Without that variable (not started by systemd, or `Type=simple`) every
//! call is a no-op, so the daemon runs the same from a shell.
//!
//! Hand-written rather than the `sd-notify` crate: its 0.5 connects to `$NOTIFY_SOCKET` as a
//! path, so an abstract socket (`@name`, which systemd may hand out) fails, and it reads the
//! variable on every call, so it cannot be pointed at a given socket (tests would have to
//! change the process environment). The protocol is one datagram of `KEY=VALUE` lines.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// A connection to systemd's notification socket, or nothing.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// The last send failed: the next failures are logged at debug level only, so a
    /// watchdog ping every few seconds does not fill the journal.
    failing: AtomicBool,
}

impl Notifier {
    /// Uses `$NOTIFY_SOCKET` if set.
    pub fn from_env() -> io::Result<Notifier> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) if !path.is_empty() => Notifier::with_socket(&path),
            _ => Ok(Notifier::disabled()),
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::to(None)
    }

    fn to(target: Option<(UnixDatagram, SocketAddr)>) -> Notifier {
        Notifier {
            target,
            failing: AtomicBool::new(false),
        }
    }

    /// Sends to the given socket: a path, or an abstract name written `@name`.
    pub fn with_socket(socket: &OsStr) -> io::Result<Notifier> {
        use std::os::unix::ffi::OsStrExt as _;
        let bytes = socket.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(socket)?,
        };
        Ok(Notifier::to(Some((UnixDatagram::unbound()?, addr))))
    }

    /// Sends raw `KEY=VALUE` lines. A failure is logged (as a warning when the previous
    /// send worked, at debug level while it keeps failing) and returned; callers may ignore
    /// it, as systemd's own `sd_notify` callers do.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some((socket, addr)) = &self.target else {
            return Ok(());
        };
        let sent = socket.send_to_addr(state.as_bytes(), addr).map(drop);
        let what = state.lines().next().unwrap_or_default();
        match &sent {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info!("systemd notifications reach {addr:?} again");
                }
            }
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => log::warn!(
                "cannot notify systemd ({what}) at {addr:?}: {e}; further failures are logged \
                 at debug level until one succeeds"
            ),
            Err(e) => log::debug!("cannot notify systemd ({what}): {e}"),
        }
        sent
    }

    /// Start-up is complete: settings, models, camera and relay are up.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// The line `systemctl status` shows.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// The loop is alive.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// Shutting down.
    pub fn stopping(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)))
    }

    /// Reloading (SIGHUP or a new classifier file); send [`Notifier::ready`] when done.
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            crate::clock::monotonic_us()
        ))
    }
}

/// A newline would start a new assignment; keep STATUS on one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::with_socket(path.as_os_str()).unwrap();
        notifier.ready("watching\ncamera").unwrap();
        notifier.watchdog().unwrap();
        notifier.stopping("bye").unwrap();
        let mut buf = [0u8; 256];
        let mut recv = || {
            let n = server.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        assert_eq!(recv(), "READY=1\nSTATUS=watching camera");
        assert_eq!(recv(), "WATCHDOG=1");
        assert_eq!(recv(), "STOPPING=1\nSTATUS=bye");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("facelock-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier::with_socket(OsStr::new(&format!("@{name}"))).unwrap();
        notifier.status("3 people enrolled").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=3 people enrolled");
    }

    #[test]
    fn a_send_to_a_missing_socket_fails_and_the_next_success_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let notifier = Notifier::with_socket(path.as_os_str()).unwrap();
        assert!(notifier.watchdog().is_err());
        assert!(notifier.watchdog().is_err());
        assert!(notifier.failing.load(Ordering::Relaxed));
        let server = UnixDatagram::bind(&path).unwrap();
        notifier.watchdog().unwrap();
        assert!(!notifier.failing.load(Ordering::Relaxed));
        let mut buf = [0u8; 16];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn disabled_notifier_does_nothing() {
        let notifier = Notifier::disabled();
        notifier.ready("x").unwrap();
        notifier.watchdog().unwrap();
    }
}
