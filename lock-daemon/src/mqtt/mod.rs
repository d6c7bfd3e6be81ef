//! MQTT and Home Assistant: the lock's state, its access events and its commands on a
//! broker, with Home Assistant discovery. Off unless `[mqtt]` says `enabled = true`;
//! docs/mqtt.md lists the topics and payloads.
//!
//! * **Its own thread.** One thread runs a single-threaded tokio runtime with the MQTT
//!   client (rumqttc), at a lower CPU priority (nice [`NICE`]) than the door loop and the
//!   vision thread. A broker that is slow, away or refusing never delays a frame or a
//!   relock: nothing in the door loop waits on this thread.
//! * **One way in.** Commands reach the door loop as [`Input::Command`] on the service's
//!   one channel, through [`control::submit`] like the control socket's and the HTTP API's,
//!   and pass through the door controller and the audit log. States come from the status
//!   snapshot, events from the door loop's record feed ([`EventFeed`]).
//! * **Fail-safe commands.** A retained command is never obeyed (it would run again at
//!   every reconnect): it is ignored, audited and cleared. Unlocking and the mode need
//!   their permission in `mqtt.commands`, and optionally a PIN; commands are rate-limited.
//! * **Offline.** The client reconnects with a growing backoff; events wait in a bounded
//!   buffer ([`outbox`]), and problems are logged and audited once, not at every retry.

pub mod commands;
pub mod discovery;
pub mod outbox;
pub mod settings;
pub mod topics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, LastWill,
    MqttOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, Notify};
use tokio_rustls::rustls;

pub use settings::{MqttSettings, MqttTls, Permission};

use crate::audit::{Event as AuditEvent, Record};
use crate::control;
use crate::http::limit::{Limiter, Rate};
use crate::metrics::{Metrics, Stage};
use crate::service::{EventFeed, Input, StatusBoard};
use commands::{Gate, Refusal};
use outbox::{Message, Outbox};
use topics::Topics;

/// The CPU priority of the MQTT thread (the door loop and recognition run at 0).
pub const NICE: i32 = 10;
/// How often new records and state changes are looked for.
const TICK: Duration = Duration::from_millis(100);
/// How often the slow-moving sensors (latency, frame rate) are published.
const SENSOR_EVERY: Duration = Duration::from_secs(10);
/// The first wait after a failed connection; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The wait after the broker refused the credentials (they will not change by retrying).
const AUTH_BACKOFF: Duration = Duration::from_secs(60);
/// The same problem is audited again only after this long (a flapping broker must not
/// flood the audit log); it is logged at every change.
const AUDIT_AGAIN_AFTER: Duration = Duration::from_secs(600);
/// The largest message taken from the broker (commands and Home Assistant's status are a
/// few bytes); the largest sent (a snapshot).
const MAX_INCOMING: usize = 64 * 1024;
const MAX_OUTGOING: usize = 4 * 1024 * 1024;
/// Requests queued for the client.
const REQUEST_CAPACITY: usize = 128;
/// A connection that lasted this long resets the reconnect backoff (one that drops at
/// once, e.g. a client-id takeover, keeps it growing).
const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// Audit records about MQTT commands (refusals, retained commands): this many at once,
/// then one a minute; the rest are counted in the log. A hostile publisher cannot flood
/// the audit log.
const COMMAND_AUDITS: u32 = 10;
const COMMAND_AUDIT_EVERY: Duration = Duration::from_secs(60);
/// How long shutdown waits to publish the final state and `offline`.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// What the client needs from the service.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The service's one channel to the door loop.
    pub inputs: SyncSender<Input>,
    /// The status snapshot the door loop publishes.
    pub board: StatusBoard,
    /// The records the door loop writes.
    pub feed: EventFeed,
    pub metrics: Arc<Metrics>,
    pub settings: MqttSettings,
    /// Where the audit log's snapshots are (for the opt-in camera entity).
    pub snapshots: Option<PathBuf>,
    /// Whether a door contact is wired (the door entity).
    pub door_wired: bool,
    /// The configuration file (checked for who can read the unlock code's hash).
    pub config_path: PathBuf,
}

/// The running client; stops (publishing `offline`, bounded by [`SHUTDOWN_LIMIT`]) when
/// dropped.
#[derive(Debug)]
pub struct MqttClient {
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the client on its own thread. It never fails the service: problems with the
/// broker, the credentials or the TLS files are logged and audited, and the door works
/// without MQTT.
pub fn start(shared: Shared) -> std::io::Result<MqttClient> {
    let stop = Arc::new(Notify::new());
    let stop_thread = stop.clone();
    let thread = std::thread::Builder::new()
        .name("mqtt".into())
        .spawn(move || {
            lower_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(4)
                .on_thread_start(lower_priority)
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    log::error!("MQTT: cannot start its runtime: {e}; MQTT is off");
                    return;
                }
            };
            runtime.block_on(session(shared, stop_thread));
            runtime.shutdown_timeout(Duration::from_millis(100));
        })?;
    Ok(MqttClient {
        stop,
        thread: Some(thread),
    })
}

impl MqttClient {
    /// Publishes the final state and `offline`, disconnects, and waits for the thread at
    /// most `limit`.
    pub fn stop(&mut self, limit: Duration) {
        self.stop.notify_one();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + limit;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

impl Drop for MqttClient {
    fn drop(&mut self) {
        self.stop(SHUTDOWN_LIMIT);
    }
}

fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, NICE) {
        log::debug!("cannot lower the MQTT thread's priority: {e}");
    }
}

/// Checks what `start` will read (the password file, the TLS files), for
/// `lock-daemon check-config`.
pub fn check(settings: &MqttSettings) -> Result<(), String> {
    let topics = Topics::new(&settings.base_topic, &settings.discovery_prefix);
    options(settings, &topics)
        .map(|_| ())
        .map_err(|problem| format!("MQTT: {problem}"))
}

/// The client's options: broker, credentials, TLS, last will.
fn options(settings: &MqttSettings, topics: &Topics) -> Result<MqttOptions, String> {
    let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    options
        .set_keep_alive(settings.keepalive)
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING)
        .set_last_will(LastWill::new(
            &topics.availability,
            topics::OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &settings.username {
        let password = match &settings.password_file {
            Some(path) => read_password(path)?,
            None => String::new(),
        };
        options.set_credentials(user, password);
    }
    if let Some(tls) = &settings.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(tls)?),
        )));
    }
    Ok(options)
}

/// The password: the first line of `path`, which others must not be able to read.
fn read_password(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let fail = |problem: String| format!("mqtt.password_file {}: {problem}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| {
        fail(format!(
            "cannot read it ({e}); create it with the password on one line, owned by root, \
             group facelock, mode 0640"
        ))
    })?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(fail(
            "every user on this machine can read it; run `chmod o-r` on it (mode 0640, \
             owned by root, group facelock)"
                .into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it ({e})")))?;
    let password = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if password.is_empty() {
        return Err(fail(
            "is empty; write the broker password on its first line".into(),
        ));
    }
    Ok(password.to_owned())
}

/// rustls (ring provider) trusting `tls.ca_file`, with the client certificate if any.
fn tls_config(tls: &MqttTls) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |path: &Path, key: &str| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                format!(
                    "mqtt.{key} {}: not a readable PEM certificate file ({e})",
                    path.display()
                )
            })?;
        if certs.is_empty() {
            return Err(format!(
                "mqtt.{key} {}: holds no \"-----BEGIN CERTIFICATE-----\" block",
                path.display()
            ));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&tls.ca_file, "ca_file")? {
        roots.add(cert).map_err(|e| {
            format!(
                "mqtt.ca_file {}: not a usable CA certificate ({e})",
                tls.ca_file.display()
            )
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots);
    match &tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            if readable_by_others(key) {
                return Err(format!(
                    "mqtt.client_key {}: every user on this machine can read it; run `chmod \
                     o-r` on it (mode 0640, owned by root, group facelock)",
                    key.display()
                ));
            }
            let chain = certs(cert, "client_cert")?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!(
                    "mqtt.client_key {}: no usable private key ({e}); expected a PEM \"PRIVATE \
                     KEY\" block",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!(
                    "mqtt.client_key {}: {e}; it must be the key of mqtt.client_cert",
                    key.display()
                )
            })
        }
    }
}

/// Whether the broker refused the credentials.
fn refused_credentials(error: &ConnectionError) -> bool {
    matches!(
        error,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
        )
    )
}

/// What went wrong, and what to do, in one line starting with "MQTT:".
fn describe(error: &ConnectionError, settings: &MqttSettings, was_connected: bool) -> String {
    let broker = format!("{}:{}", settings.host, settings.port);
    let user = settings
        .username
        .as_deref()
        .map(|u| format!("user name {u:?}"))
        .unwrap_or_else(|| "no user name".into());
    match error {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => format!(
            "MQTT: the broker at {broker} refused the user name or password ({user}); check \
             mqtt.username and mqtt.password_file against the broker's users; retrying every \
             {} s",
            AUTH_BACKOFF.as_secs()
        ),
        ConnectionError::ConnectionRefused(code) => format!(
            "MQTT: the broker at {broker} refused the connection ({code:?}); check \
             mqtt.client_id is unique and the broker speaks MQTT 3.1.1"
        ),
        ConnectionError::NetworkTimeout => format!(
            "MQTT: no answer from {broker}; check mqtt.host and mqtt.port, and that the \
             network (and the systemd drop-in's IPAddressAllow) lets the lock reach it"
        ),
        ConnectionError::Tls(e) => format!(
            "MQTT: TLS with {broker} failed: {e}; check that mqtt.ca_file signed the broker's \
             certificate and that the certificate names {}",
            settings.host
        ),
        ConnectionError::Io(e) if !was_connected => {
            let hint = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "is the broker running and listening there? (mqtt.host, mqtt.port)"
                }
                _ if settings.tls.is_some() => {
                    "check mqtt.host, mqtt.port and that mqtt.ca_file signed the broker's \
                     certificate"
                }
                _ => "check mqtt.host and mqtt.port, and the network",
            };
            format!("MQTT: cannot connect to {broker}: {e}; {hint}")
        }
        e if was_connected => {
            format!("MQTT: the connection to {broker} was lost ({e}); reconnecting")
        }
        e => format!("MQTT: cannot connect to {broker}: {e}"),
    }
}

/// Logs problems at every change and audits each one at most once per
/// [`AUDIT_AGAIN_AFTER`].
#[derive(Debug)]
struct Reporter {
    inputs: SyncSender<Input>,
    current: Option<String>,
    audited: HashMap<String, Instant>,
}

impl Reporter {
    fn problem(&mut self, message: String, now: Instant) {
        if self.current.as_deref() == Some(message.as_str()) {
            return;
        }
        log::error!("{message}");
        let due = self
            .audited
            .get(&message)
            .is_none_or(|t| now.saturating_duration_since(*t) >= AUDIT_AGAIN_AFTER);
        if due {
            self.audited
                .retain(|_, t| now.saturating_duration_since(*t) < AUDIT_AGAIN_AFTER);
            self.audited.insert(message.clone(), now);
            audit(
                &self.inputs,
                Record::new(AuditEvent::Error).message(&message),
            );
        }
        self.current = Some(message);
    }

    fn connected(&mut self, broker: &str) {
        match self.current.take() {
            Some(_) => log::warn!("MQTT: connected to {broker} again"),
            None => log::info!("MQTT: connected to {broker}"),
        }
    }
}

/// Sends a record to the door loop's audit log without ever waiting (a full channel drops
/// it, with a log line).
fn audit(inputs: &SyncSender<Input>, record: Record) {
    if inputs.try_send(Input::Audit(record)).is_err() {
        log::warn!("MQTT: the door loop is busy; an audit record was dropped");
    }
}

/// Drives the client's connection and hands what happens to the session; reconnects
/// with backoff.
async fn drive(mut eventloop: EventLoop, events: mpsc::Sender<Result<Event, ConnectionError>>) {
    let mut failures = 0u32;
    let mut connected_at: Option<Instant> = None;
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                if matches!(event, Event::Incoming(Incoming::ConnAck(_))) {
                    connected_at = Some(Instant::now());
                }
                if events.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                if connected_at
                    .take()
                    .is_some_and(|t| t.elapsed() >= STABLE_CONNECTION)
                {
                    failures = 0;
                }
                let wait = if refused_credentials(&error) {
                    AUTH_BACKOFF
                } else {
                    (FIRST_BACKOFF * 2u32.saturating_pow(failures.min(6))).min(MAX_BACKOFF)
                };
                failures = failures.saturating_add(1);
                if events.send(Err(error)).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                // Requests the session queued after the connection broke belong to the
                // old connection: drop them (the session sends its events again after
                // the next connect), so nothing stale goes out on the new one.
                eventloop.clean();
                eventloop.pending.clear();
            }
        }
    }
}

async fn session(shared: Shared, stop: Arc<Notify>) {
    let settings = shared.settings.clone();
    let topics = Topics::new(&settings.base_topic, &settings.discovery_prefix);
    let mut reporter = Reporter {
        inputs: shared.inputs.clone(),
        current: None,
        audited: HashMap::new(),
    };
    let options = match options(&settings, &topics) {
        Ok(options) => options,
        Err(problem) => {
            reporter.problem(
                format!(
                    "MQTT: {problem}; MQTT stays off until this is fixed and the lock restarted"
                ),
                Instant::now(),
            );
            stop.notified().await;
            return;
        }
    };
    if settings.tls.is_none() && settings.username.is_some() && !is_loopback(&settings.host) {
        log::warn!(
            "MQTT: the password goes to {} in clear text; set mqtt.ca_file to use TLS",
            settings.host
        );
    }
    if settings.unlock_code_hash.is_some() && readable_by_others(&shared.config_path) {
        let message = format!(
            "MQTT: {} holds mqtt.unlock_code_hash and every user on this machine can read \
             it; a 4 to 8 digit code is found from its hash in seconds: `chgrp facelock` and \
             `chmod 640` the file",
            shared.config_path.display()
        );
        log::warn!("{message}");
        audit(
            &shared.inputs,
            Record::new(AuditEvent::Warning).message(message),
        );
    }
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let (events_tx, mut events) = mpsc::channel(64);
    let driver = tokio::spawn(drive(eventloop, events_tx));
    let mut session = Session {
        cursor: shared.feed.end(),
        shared,
        settings,
        topics,
        client,
        reporter,
        outbox: Outbox::default(),
        connected: false,
        ever_connected: false,
        published: HashMap::new(),
        gate: Gate::default(),
        command_audits: Limiter::new(
            Rate {
                capacity: COMMAND_AUDITS,
                refill_every: COMMAND_AUDIT_EVERY,
            },
            1,
        ),
        audits_suppressed: 0,
        drop_logged: (0, None),
        last_person: None,
        sensors_at: None,
        latency_mark: (0, Duration::ZERO),
        missed: 0,
        floods: 0,
        shutting_down: false,
        flood_logged: None,
        bad_logged: None,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.notified() => break,
            event = events.recv() => match event {
                Some(event) => session.on_event(event),
                None => break,
            },
            _ = tick.tick() => session.on_tick(),
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_LIMIT, session.shutdown(&mut events)).await;
    driver.abort();
}

fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

struct Session {
    shared: Shared,
    settings: MqttSettings,
    topics: Topics,
    client: AsyncClient,
    reporter: Reporter,
    outbox: Outbox,
    connected: bool,
    ever_connected: bool,
    /// What each retained state topic last carried on this connection.
    published: HashMap<String, Vec<u8>>,
    /// The next record to read from the feed.
    cursor: u64,
    gate: Gate,
    /// The allowance of audit records about commands, and how many were left out.
    command_audits: Limiter<()>,
    audits_suppressed: u64,
    /// Dropped events last logged: (count, when).
    drop_logged: (u64, Option<Instant>),
    last_person: Option<String>,
    /// When the slow sensors were last published.
    sensors_at: Option<Instant>,
    /// (count, sum) of the capture-to-decision times at the last latency reading.
    latency_mark: (u64, Duration),
    /// Records the feed dropped before they were read.
    missed: u64,
    /// Commands dropped by the flood limit, and when that was last logged.
    floods: u64,
    /// Stopping: no snapshots (the last second is for the state and `offline`).
    shutting_down: bool,
    flood_logged: Option<Instant>,
    /// When an unreadable command was last logged.
    bad_logged: Option<Instant>,
}

impl Session {
    fn broker(&self) -> String {
        format!("{}:{}", self.settings.host, self.settings.port)
    }

    fn on_event(&mut self, event: Result<Event, ConnectionError>) {
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => self.on_connected(),
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                self.on_message(&publish.topic, publish.retain, &publish.payload)
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                if self.outbox.acknowledged(ack.pkid) {
                    self.pump();
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => self.outbox.written(pkid),
            Ok(_) => {}
            Err(error) => {
                let message = describe(&error, &self.settings, self.connected);
                self.connected = false;
                self.shared.metrics.mqtt_connected(false);
                self.outbox.disconnected();
                self.reporter.problem(message, Instant::now());
            }
        }
    }

    fn on_connected(&mut self) {
        self.connected = true;
        self.ever_connected = true;
        self.shared.metrics.mqtt_connected(true);
        self.reporter.connected(&self.broker());
        // Clear any retained command before subscribing (the broker keeps the order): a
        // stale UNLOCK is never delivered, and an oversized one cannot break every
        // connection as it arrives.
        for topic in [&self.topics.lock_set, &self.topics.mode_set] {
            self.send(topic, QoS::AtMostOnce, true, Vec::new());
        }
        for topic in [&self.topics.lock_set, &self.topics.mode_set] {
            let _ = self.client.try_subscribe(topic.as_str(), QoS::AtLeastOnce);
        }
        if self.settings.discovery {
            let _ = self
                .client
                .try_subscribe(self.topics.ha_status.as_str(), QoS::AtLeastOnce);
        }
        self.announce();
        self.pump();
    }

    /// Availability, discovery and every state, as on a fresh connection.
    fn announce(&mut self) {
        self.published.clear();
        self.retain(&self.topics.availability.clone(), topics::ONLINE.as_bytes());
        if self.settings.discovery {
            let features = discovery::Features {
                door_wired: self.shared.door_wired,
            };
            for (topic, payload) in discovery::messages(&self.settings, &self.topics, features) {
                self.send(&topic, QoS::AtMostOnce, true, payload);
            }
        }
        self.sensors_at = None;
        self.publish_states();
    }

    /// Publishes a retained state when it differs from what this connection last carried.
    fn retain(&mut self, topic: &str, payload: &[u8]) {
        if self.published.get(topic).map(Vec::as_slice) == Some(payload) {
            return;
        }
        if self.send(topic, QoS::AtMostOnce, true, payload.to_vec()) {
            self.published.insert(topic.to_owned(), payload.to_vec());
        }
    }

    fn send(&self, topic: &str, qos: QoS, retain: bool, payload: Vec<u8>) -> bool {
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("MQTT: cannot queue a message for {topic}: {e}");
                false
            }
        }
    }

    /// Hands the next event to the client (one at a time, QoS 1).
    fn pump(&mut self) {
        if !self.connected {
            return;
        }
        if let Some(message) = self.outbox.due() {
            let (topic, payload) = (message.topic.clone(), message.payload.clone());
            if self.send(&topic, QoS::AtLeastOnce, false, payload) {
                self.outbox.handed();
            }
        }
    }

    fn on_tick(&mut self) {
        let batch = self.shared.feed.read(&mut self.cursor);
        self.missed += batch.missed;
        for record in batch.records {
            if record.event == AuditEvent::Unlock {
                self.last_person.clone_from(&record.person);
            }
            if let Some(payload) = topics::event_payload(&record) {
                self.outbox.push(Message {
                    topic: self.topics.event.clone(),
                    payload,
                });
            }
            if self.settings.camera && self.connected && !self.shutting_down {
                self.send_snapshot(&record);
            }
        }
        let dropped = self.outbox.dropped() + self.missed;
        self.shared.metrics.mqtt_events_dropped(dropped);
        let now = Instant::now();
        if dropped > self.drop_logged.0
            && self
                .drop_logged
                .1
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60))
        {
            log::warn!(
                "MQTT: {dropped} events dropped since the start (the broker is away and the \
                 buffer of {} is full; the audit log keeps them all)",
                outbox::OUTBOX_DEPTH
            );
            self.drop_logged = (dropped, Some(now));
        }
        if self.connected {
            self.publish_states();
            self.pump();
        }
    }

    fn publish_states(&mut self) {
        let status = self.shared.board.get();
        if status.published.is_none() {
            return; // the door loop has not published yet
        }
        let t = self.topics.clone();
        self.retain(&t.lock, topics::lock_state(&status).as_bytes());
        if let Some(door) = topics::door_state(&status) {
            self.retain(&t.door, door.as_bytes());
        }
        self.retain(&t.mode, status.mode.as_bytes());
        if let Some(person) = self.last_person.clone() {
            self.retain(&t.last_person, person.as_bytes());
        }
        let dropped = (self.outbox.dropped() + self.missed).to_string();
        self.retain(&t.events_dropped, dropped.as_bytes());
        let now = Instant::now();
        if self
            .sensors_at
            .is_none_or(|at| now.saturating_duration_since(at) >= SENSOR_EVERY)
        {
            self.sensors_at = Some(now);
            self.retain(
                &t.camera_fps,
                format!("{:.1}", status.camera_fps).as_bytes(),
            );
            let metrics = &self.shared.metrics;
            let mark = (
                metrics.stage_count(Stage::Decide),
                metrics.stage_sum(Stage::Decide),
            );
            let (count, sum) = (
                mark.0 - self.latency_mark.0.min(mark.0),
                mark.1.saturating_sub(self.latency_mark.1),
            );
            if count > 0 {
                let mean_ms = sum.as_secs_f64() * 1000.0 / count as f64;
                self.retain(&t.latency, format!("{mean_ms:.0}").as_bytes());
                self.latency_mark = mark;
            }
        }
    }

    /// The JPEG of a decision's snapshot, when the camera entity is on.
    fn send_snapshot(&self, record: &Record) {
        let (Some(dir), Some(name)) = (&self.shared.snapshots, &record.snapshot) else {
            return;
        };
        match std::fs::read(dir.join(name)) {
            Ok(jpeg) => {
                self.send(&self.topics.snapshot, QoS::AtMostOnce, false, jpeg);
            }
            Err(e) => log::warn!("MQTT: cannot read snapshot {name}: {e}"),
        }
    }

    fn on_message(&mut self, topic: &str, retained: bool, payload: &[u8]) {
        if topic == self.topics.ha_status {
            if payload == b"online" && self.connected {
                log::info!("MQTT: Home Assistant is online; publishing discovery again");
                self.announce();
            }
            return;
        }
        let is_lock = topic == self.topics.lock_set;
        if !is_lock && topic != self.topics.mode_set {
            return;
        }
        let by = format!("mqtt ({topic})");
        if retained {
            if !payload.is_empty() {
                let message = format!(
                    "MQTT: ignored a retained command on {topic} (a retained command would run \
                     again at every reconnect) and cleared it; publish commands without the \
                     retain flag"
                );
                log::warn!("{message}");
                self.audit_command(Record::new(AuditEvent::Warning).by(&by).message(message));
                // QoS 0: events are the only QoS 1 messages (see outbox).
                self.send(topic, QoS::AtMostOnce, true, Vec::new());
            }
            return;
        }
        if payload.is_empty() {
            return; // a retained command being cleared (by us or by the admin)
        }
        let now = Instant::now();
        let parsed = is_lock.then(|| commands::parse_lock(payload));
        let lock_only = matches!(parsed, Some(Ok(commands::LockCommand::Lock)));
        if self.gate.admit(lock_only, now) == Err(Refusal::Flood) {
            self.floods += 1;
            if self
                .flood_logged
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60))
            {
                self.flood_logged = Some(now);
                log::warn!(
                    "MQTT: too many commands on {topic}; {} dropped so far (at most {} at once, \
                     then one per {} s)",
                    self.floods,
                    commands::COMMAND_BURST,
                    commands::COMMAND_EVERY.as_secs()
                );
            }
            return;
        }
        let request = match parsed {
            Some(Ok(command)) => self.gate.lock(&self.settings, command, now),
            Some(Err(problem)) => {
                if self
                    .bad_logged
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60))
                {
                    self.bad_logged = Some(now);
                    log::warn!("MQTT: ignored a command on {topic}: {problem}");
                }
                return;
            }
            None => self.gate.mode(&self.settings, payload),
        };
        // A command published with the retain flag reaches a connected lock as an
        // ordinary message (MQTT 3.1.1 clears the flag on live delivery): clear any
        // retained copy now, so it can never run again at a reconnect.
        self.send(topic, QoS::AtMostOnce, true, Vec::new());
        match request {
            Ok(request) => {
                let inputs = self.shared.inputs.clone();
                tokio::task::spawn_blocking(move || {
                    let reply = control::submit(&inputs, request, &by);
                    match reply.ok {
                        true => log::info!("MQTT command from {by}: {}", reply.message),
                        false => log::warn!("MQTT command from {by}: {}", reply.message),
                    }
                });
            }
            Err(Refusal::Refused(reason)) => {
                log::warn!("MQTT command from {by} refused: {reason}");
                self.audit_command(Record::new(AuditEvent::Refused).by(&by).message(reason));
            }
            Err(Refusal::Flood) => {}
        }
    }

    /// Audits a record about a command, within the allowance.
    fn audit_command(&mut self, record: Record) {
        let now = Instant::now();
        if self.command_audits.take(&(), now).is_ok() {
            let record = match std::mem::take(&mut self.audits_suppressed) {
                0 => record,
                n => {
                    let message = record.message.clone().unwrap_or_default();
                    record.message(format!(
                        "{message} ({n} earlier records about MQTT commands were left out)"
                    ))
                }
            };
            audit(&self.shared.inputs, record);
        } else {
            self.audits_suppressed += 1;
            if self.audits_suppressed == 1 {
                log::warn!(
                    "MQTT: too many records about commands; leaving them out of the audit \
                     log for a while (they are still logged here)"
                );
            }
        }
    }

    /// The final state and `offline`, then a clean disconnect.
    async fn shutdown(&mut self, events: &mut mpsc::Receiver<Result<Event, ConnectionError>>) {
        if !self.connected {
            return;
        }
        self.shutting_down = true;
        self.on_tick();
        // Awaited (within the caller's limit): `offline` must go out before the clean
        // disconnect, which cancels the last will.
        let offline = self.client.publish(
            self.topics.availability.as_str(),
            QoS::AtMostOnce,
            true,
            topics::OFFLINE.as_bytes().to_vec(),
        );
        if offline.await.is_err() || self.client.disconnect().await.is_err() {
            return;
        }
        while let Some(event) = events.recv().await {
            match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt.password");
        std::fs::write(&path, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let problem = read_password(&path).unwrap_err();
        assert!(problem.contains("chmod o-r"), "{problem}");
        assert!(!problem.contains("s3cret"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(read_password(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password(&path).unwrap_err().contains("empty"));
        let missing = read_password(&dir.path().join("none")).unwrap_err();
        assert!(missing.contains("0640"), "{missing}");
    }

    #[test]
    fn wrong_credentials_are_told_apart_from_an_absent_broker() {
        let settings = discovery::tests::settings();
        let auth = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert!(refused_credentials(&auth));
        assert!(describe(&auth, &settings, false).contains("user name or password"));
        let absent = ConnectionError::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(!refused_credentials(&absent));
        let text = describe(&absent, &settings, false);
        assert!(
            text.starts_with("MQTT: cannot connect to broker:1883"),
            "{text}"
        );
        assert!(text.contains("broker running"), "{text}");
        let lost = ConnectionError::Io(std::io::ErrorKind::ConnectionReset.into());
        assert!(describe(&lost, &settings, true).contains("lost"));
    }

    #[test]
    fn a_problem_is_logged_at_each_change_and_audited_at_most_once_in_ten_minutes() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let mut reporter = Reporter {
            inputs: tx,
            current: None,
            audited: HashMap::new(),
        };
        let t0 = Instant::now();
        reporter.problem("MQTT: a".into(), t0);
        reporter.problem("MQTT: a".into(), t0);
        reporter.problem("MQTT: b".into(), t0);
        reporter.connected("broker:1883");
        reporter.problem("MQTT: a".into(), t0 + Duration::from_secs(60));
        reporter.problem("MQTT: a".into(), t0 + AUDIT_AGAIN_AFTER * 2);
        let audited: Vec<String> = rx
            .try_iter()
            .map(|input| match input {
                Input::Audit(record) => record.message.unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(audited, ["MQTT: a", "MQTT: b"]);
    }
}
