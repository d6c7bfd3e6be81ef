//! systemd notification (`sd_notify`): READY, STATUS, WATCHDOG and STOPPING datagrams to
//! `$NOTIFY_SOCKET`. Without that variable (not started by systemd, or `Type=simple`) every
//! call is a no-op, so the daemon runs the same from a shell.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to systemd's notification socket, or nothing.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
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
        Notifier { target: None }
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
        Ok(Notifier {
            target: Some((UnixDatagram::unbound()?, addr)),
        })
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends raw `KEY=VALUE` lines.
    pub fn send(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some((socket, addr)) => socket.send_to_addr(state.as_bytes(), addr).map(drop),
            None => Ok(()),
        }
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

/// How often to ping the watchdog: half of `$WATCHDOG_USEC` when systemd asked this process
/// for pings (`$WATCHDOG_PID` unset or ours), `None` otherwise.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] as a pure function of the variables' values.
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == own_pid => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec / 2))
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
        assert!(notifier.is_enabled());
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
    fn disabled_notifier_does_nothing() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.ready("x").unwrap();
        notifier.watchdog().unwrap();
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_process() {
        let cases = [
            (Some("10000000"), None, Some(Duration::from_secs(5))),
            (Some("10000000"), Some("42"), Some(Duration::from_secs(5))),
            (Some("10000000"), Some("43"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (None, Some("42"), None),
        ];
        for (usec, pid, expected) in cases {
            assert_eq!(
                watchdog_interval_from(usec, pid, 42),
                expected,
                "{usec:?} {pid:?}"
            );
        }
    }
}
