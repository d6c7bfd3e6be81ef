//! The control socket: a local Unix socket through which an administrator asks the running
//! daemon for its status, changes the mode, or unlocks the door for a while
//! (`lock-daemon ctl ...`).
//!
//! * Off unless `control.socket` is configured. The socket is created mode 0660 and, when
//!   `control.group` is set, handed to that group (e.g. `facelock-admin`): file permissions
//!   are the authentication, and the peer's uid (`SO_PEERCRED`) names who asked in the
//!   audit log.
//! * One JSON request per connection, one JSON reply. A request line is at most
//!   [`MAX_REQUEST`] bytes and must arrive within [`CLIENT_TIMEOUT`]; at most
//!   [`MAX_CLIENTS`] connections are served at once. A slow or hostile client ties up only
//!   its own thread.
//! * Requests go to the door loop as [`Input::Command`] on the service's one channel and
//!   pass through the door controller and the audit log like every other decision; status
//!   is read from the snapshot the loop publishes. Nothing here can block a frame, a
//!   re-lock or the watchdog: the door loop never waits on a client.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::service::{Command, Input, StatusBoard};

/// The longest request line accepted.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request, and to read the reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more are answered "busy" and closed.
pub const MAX_CLIENTS: usize = 8;
/// How long a command may wait for the door loop's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// `[control]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// Where the socket is created, e.g. `/run/facelock/control.sock`.
    pub socket: PathBuf,
    /// The group the socket is handed to (its members may send commands).
    pub group: Option<String>,
}

/// A request, as JSON: `{"command": "status"}`, `{"command": "mode", "mode": "lockdown"}`,
/// `{"command": "unlock", "seconds": 10, "reason": "delivery"}`, `{"command": "lock"}`,
/// `{"command": "capture", "person": "ada", "count": 20, "seconds": 60}`,
/// `{"command": "capture-cancel"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status,
    Mode {
        mode: String,
    },
    Unlock {
        seconds: f64,
        reason: String,
    },
    /// Lock now: end a timed unlock (refused while the mode, the schedule or the fire
    /// release holds the door unlocked).
    Lock,
    /// Keep the next `count` good frames of the one face in view as enrolment photos of
    /// `person`, for at most `seconds` ([`crate::capture`]). Progress is in the status.
    Capture {
        person: String,
        count: u32,
        seconds: f64,
    },
    /// Stop the running capture (the frames kept so far stay).
    CaptureCancel,
}

/// The reply, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl Reply {
    pub fn ok(message: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            message: message.into(),
            status: None,
        }
    }

    pub fn refused(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            message: message.into(),
            status: None,
        }
    }
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "control socket {path}: {reason}; check control.socket (its directory must be \
         writable by the service user: /run/facelock under systemd)"
    )]
    Socket { path: PathBuf, reason: String },
    #[error(
        "control socket {path} is in use by a running process (another lock-daemon?); stop \
         it first"
    )]
    InUse { path: PathBuf },
    #[error(
        "control.group = {group:?}: {reason}; create it (`groupadd --system {group}`) and add \
         the service user to it (`usermod -aG {group} facelock`), or remove the key"
    )]
    Group { group: String, reason: String },
}

/// The running control server; stops accepting when dropped and removes its socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Creates the socket and serves it on its own thread.
pub fn serve(
    settings: &ControlSettings,
    inputs: SyncSender<Input>,
    board: StatusBoard,
) -> Result<ControlServer, ControlError> {
    let path = settings.socket.clone();
    let fail = |reason: String| ControlError::Socket {
        path: path.clone(),
        reason,
    };
    if path.exists() {
        // A socket left by a crashed daemon is removed; one that answers is in use.
        if UnixStream::connect(&path).is_ok() {
            return Err(ControlError::InUse { path });
        }
        std::fs::remove_file(&path).map_err(|e| fail(format!("cannot remove the old one: {e}")))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let listener = UnixListener::bind(&path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| fail(format!("cannot set its mode: {e}")))?;
    if let Some(group) = &settings.group {
        let gid = group_id(group).map_err(|reason| ControlError::Group {
            group: group.clone(),
            reason,
        })?;
        rustix::fs::chown(&path, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(|e| {
            ControlError::Group {
                group: group.clone(),
                reason: format!("cannot hand the socket to it: {e}"),
            }
        })?;
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let server_stop = stop.clone();
    let clients = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_loop(listener, inputs, board, server_stop, clients))
        .map_err(|e| fail(e.to_string()))?;
    log::info!("control socket {}", path.display());
    Ok(ControlServer { path, stop })
}

fn accept_loop(
    listener: UnixListener,
    inputs: SyncSender<Input>,
    board: StatusBoard,
    stop: Arc<AtomicBool>,
    clients: Arc<AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                    clients.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
                    let _ = write_reply(&stream, &Reply::refused("busy: too many clients"));
                    continue;
                }
                let (inputs, board, clients) = (inputs.clone(), board.clone(), clients.clone());
                let spawned = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || {
                        serve_client(stream, &inputs, &board);
                        clients.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    log::warn!("control socket: cannot start a client thread");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                log::warn!("control socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn serve_client(stream: UnixStream, inputs: &SyncSender<Input>, board: &StatusBoard) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let by = peer(&stream);
    let reply = match read_request(&stream) {
        Ok(request) => handle(request, &by, inputs, board),
        Err(reason) => Reply::refused(reason),
    };
    if let Err(e) = write_reply(&stream, &reply) {
        log::debug!("control socket: reply to {by} lost: {e}");
    }
}

/// Who is on the other end: `uid N (name) via control socket`.
fn peer(stream: &UnixStream) -> String {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) => {
            let uid = cred.uid.as_raw();
            match user_name(uid) {
                Some(name) => format!("uid {uid} ({name}) via control socket"),
                None => format!("uid {uid} via control socket"),
            }
        }
        Err(_) => "unknown peer via control socket".into(),
    }
}

fn read_request(stream: &UnixStream) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64 + 1));
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice(line.trim_ascii()).map_err(|e| {
        format!(
            "not a request ({e}); send one JSON line such as {{\"command\": \"status\"}}, \
             {{\"command\": \"mode\", \"mode\": \"lockdown\"}} or {{\"command\": \"unlock\", \
             \"seconds\": 10, \"reason\": \"delivery\"}}"
        )
    })
}

fn handle(request: Request, by: &str, inputs: &SyncSender<Input>, board: &StatusBoard) -> Reply {
    if request == Request::Status {
        let status = board.get();
        return Reply {
            ok: true,
            message: status.line(),
            status: Some(serde_json::to_value(status).expect("the status serialises")),
        };
    }
    submit(inputs, request, by)
}

/// Hands a request to the door loop on the service's one channel and waits (at most
/// `REPLY_TIMEOUT`, 5 s) for its answer. Blocks the calling front-end thread, never the loop.
pub fn submit(inputs: &SyncSender<Input>, request: Request, by: &str) -> Reply {
    let (reply_tx, reply_rx) = mpsc::channel();
    let command = Command {
        request,
        by: by.to_owned(),
        reply: reply_tx,
    };
    if inputs.send(Input::Command(command)).is_err() {
        return Reply::refused(STOPPING);
    }
    reply_rx
        .recv_timeout(REPLY_TIMEOUT)
        .unwrap_or_else(|_| Reply::refused(NO_ANSWER))
}

/// The refusal when the door loop has gone.
pub const STOPPING: &str = "the daemon is stopping";
/// The refusal when the door loop did not answer in time.
pub const NO_ANSWER: &str = "the daemon did not answer in time";

fn write_reply(mut stream: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).expect("replies serialise");
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// The client side (`lock-daemon ctl`): sends one request, returns the reply.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, String> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "is the daemon running, and is control.socket set in its configuration?"
            }
            std::io::ErrorKind::PermissionDenied => {
                "add yourself to the socket's group (control.group, e.g. facelock-admin) and \
                 log in again, or use sudo"
            }
            std::io::ErrorKind::ConnectionRefused => "the daemon is not running",
            _ => "check control.socket",
        };
        format!("cannot connect to {}: {e}; {hint}", socket.display())
    })?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT + CLIENT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write_line(&stream, request).map_err(|e| format!("cannot send the request: {e}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("no reply: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("unreadable reply {line:?}: {e}"))
}

fn write_line(mut stream: &UnixStream, request: &Request) -> std::io::Result<()> {
    let mut line = serde_json::to_string(request).expect("requests serialise");
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// Looks a group up in /etc/group.
fn group_id(name: &str) -> Result<u32, String> {
    let groups = std::fs::read_to_string("/etc/group").map_err(|e| e.to_string())?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| "no such group".to_owned())
}

/// The user name of `uid` from /etc/passwd, for the audit log.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line_each() {
        let cases = [
            (r#"{"command":"status"}"#, Request::Status),
            (
                r#"{"command":"mode","mode":"lockdown"}"#,
                Request::Mode {
                    mode: "lockdown".into(),
                },
            ),
            (
                r#"{"command":"unlock","seconds":10,"reason":"delivery"}"#,
                Request::Unlock {
                    seconds: 10.0,
                    reason: "delivery".into(),
                },
            ),
            (
                r#"{"command":"capture","person":"ada","count":20,"seconds":60}"#,
                Request::Capture {
                    person: "ada".into(),
                    count: 20,
                    seconds: 60.0,
                },
            ),
            (r#"{"command":"capture-cancel"}"#, Request::CaptureCancel),
        ];
        for (text, request) in cases {
            assert_eq!(serde_json::from_str::<Request>(text).unwrap(), request);
            let back = serde_json::to_string(&request).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&back).unwrap(), request);
        }
        for bad in [
            r#"{"command":"open-sesame"}"#,
            r#"{"command":"unlock","seconds":10}"#,
            r#"{"command":"capture","person":"ada","count":-1,"seconds":60}"#,
            r#"{"command":"mode","mode":"lockdown","force":true}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn root_is_named_and_groups_are_looked_up() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(group_id("root"), Ok(0));
        assert!(group_id("no-such-group-facelock").is_err());
    }
}
