//! The MQTT / Home Assistant front-end as a process, against a real mosquitto broker and
//! watched by a real MQTT client (rumqttc): discovery, access events and lock states, an
//! UNLOCK command reaching the relay, a retained command ignored and cleared, lockdown
//! refusing a command, the broker going away and coming back, no broker, a wrong password,
//! and TLS. Real models, real photos, the simulated relay.

use std::cell::RefCell;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lock_daemon::relay::LockState;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use crate::daemon::{
    empty_hallway, output_within, photos, signal, wait_within, Lock, Timing, PROCESS_LIMIT,
};
use crate::support::extra;
use crate::support::free_port;
use crate::training::classifier_without_ben;

/// The lock's name in every test (each test has a broker of its own).
const NAME: &str = "test-door";
/// Its base topic (`facelock/<lock_name>`).
const BASE: &str = "facelock/test-door";

const LOOPING: Timing = Timing {
    fps: 10.0,
    unlock_secs: 1.0,
    cooldown_secs: 0.5,
    looping: true,
};

/// How long the daemon may take to start (models, camera) and reach the broker.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long anything may take once the daemon is up.
const LIMIT: Duration = Duration::from_secs(15);

fn mosquitto() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("mosquitto"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| {
            ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .expect("the MQTT tests need a broker: install mosquitto (apt-get install mosquitto)")
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The broker's TLS material: a CA and a server certificate it signed for 127.0.0.1.
struct TlsFiles {
    ca_pem: String,
}

/// What the broker asks of clients.
#[derive(Default)]
struct BrokerOptions {
    /// (user, password): anonymous clients are refused.
    password: Option<(&'static str, &'static str)>,
    /// The daemon's listener speaks TLS only; the test's own clients use a second, plain
    /// listener.
    tls: bool,
    /// Sessions and retained messages survive a restart (for a watcher with a persistent
    /// session that must not miss what is published while it reconnects).
    persistence: bool,
}

/// A mosquitto broker on 127.0.0.1, in a temporary folder, killed on drop.
struct Broker {
    dir: tempfile::TempDir,
    /// The listener the daemon is given.
    port: u16,
    /// The plain listener the test's clients use (the same as `port` without TLS).
    observer_port: u16,
    credentials: Option<(&'static str, &'static str)>,
    tls: Option<TlsFiles>,
    child: Option<Child>,
}

impl Broker {
    fn start(options: BrokerOptions) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let observer_port = if options.tls { free_port() } else { port };
        let mut conf = String::from(
            "per_listener_settings false\nlog_dest stderr\nlog_type all\n\
             connection_messages true\n",
        );
        // Run as root, mosquitto drops to the `mosquitto` user unless told otherwise, and
        // could then not read its files in our temporary folder.
        if rustix::process::geteuid().is_root() {
            conf.push_str("user root\n");
        }
        if options.persistence {
            conf.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                dir.path().display()
            ));
        } else {
            conf.push_str("persistence false\n");
        }
        match options.password {
            Some((user, password)) => {
                let file = dir.path().join("passwords");
                let out = output_within(
                    {
                        let mut c = Command::new("mosquitto_passwd");
                        c.arg("-b").arg("-c").arg(&file).arg(user).arg(password);
                        c
                    },
                    Duration::from_secs(10),
                );
                assert!(
                    out.status.success(),
                    "mosquitto_passwd failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                conf.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            None => conf.push_str("allow_anonymous true\n"),
        }
        let mut tls = None;
        if options.tls {
            conf.push_str(&format!("listener {observer_port} 127.0.0.1\n"));
            let files = Self::certificates(dir.path());
            conf.push_str(&format!(
                "listener {port} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/server.pem\n\
                 keyfile {0}/server.key\n",
                dir.path().display()
            ));
            tls = Some(files);
        } else {
            conf.push_str(&format!("listener {port} 127.0.0.1\n"));
        }
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut broker = Broker {
            dir,
            port,
            observer_port,
            credentials: options.password,
            tls,
            child: None,
        };
        broker.run();
        broker
    }

    /// A CA and a server certificate for 127.0.0.1 / localhost, written for the broker.
    fn certificates(dir: &Path) -> TlsFiles {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "facelock test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        write_private(&dir.join("server.key"), &key.serialize_pem());
        TlsFiles { ca_pem: ca.pem() }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Starts the broker process and waits until its listeners accept connections.
    fn run(&mut self) {
        assert!(self.child.is_none());
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let mut child = Command::new(mosquitto())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "mosquitto does not start ({e}): install mosquitto (apt-get install mosquitto)"
                )
            });
        let started = Instant::now();
        for port in [self.port, self.observer_port] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "mosquitto exited ({status}) before listening on {port}; its log:\n{}",
                        self.log()
                    );
                }
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "mosquitto did not listen on {port} within 10 s; its log:\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.child = Some(child);
    }

    /// Stops the broker (SIGTERM: with persistence on, it saves its sessions).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "-TERM");
            wait_within(&mut child, Duration::from_secs(10));
        }
    }

    /// Kills the broker process and starts a new one on the same port(s).
    fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// The `[mqtt]` section that points the daemon at this broker; `extra` adds keys.
    fn mqtt_section(&self, lock: &Lock, extra: &str) -> String {
        let mut text = mqtt_section(self.port, extra);
        if let Some((user, password)) = self.credentials {
            write_private(&lock.path("mqtt.password"), &format!("{password}\n"));
            text.push_str(&format!(
                "username = \"{user}\"\npassword_file = \"mqtt.password\"\n"
            ));
        }
        if let Some(tls) = &self.tls {
            std::fs::write(lock.path("mqtt-ca.pem"), &tls.ca_pem).unwrap();
            text.push_str("ca_file = \"mqtt-ca.pem\"\n");
        }
        text
    }

    fn watch(&self) -> Watcher {
        Watcher::connect(self, &["#"], false)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `[mqtt]` section for a broker at 127.0.0.1:`port`.
fn mqtt_section(port: u16, extra: &str) -> String {
    format!(
        "[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\nlock_name = \"{NAME}\"\n\
         commands = [\"lock\", \"unlock\", \"mode\"]\n{extra}"
    )
}

/// One message a watcher received.
#[derive(Clone)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    /// How many times the watcher had connected when it arrived.
    connection: usize,
}

impl Msg {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.text()))
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.text();
        if text.len() > 300 {
            let mut end = 300;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        let retained = if self.retain { " (retained)" } else { "" };
        write!(f, "\n  {} = {text:?}{retained}", self.topic)
    }
}

/// An MQTT client subscribed to topic filters, collecting every message in the
/// background; it reconnects (and subscribes again) when the broker comes back.
struct Watcher {
    client: Client,
    seen: Arc<Mutex<Vec<Msg>>>,
    connections: Arc<AtomicUsize>,
    subscribed: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Watcher {
    /// `persistent`: a session the broker keeps (and queues for) while it is away.
    fn connect(broker: &Broker, filters: &[&str], persistent: bool) -> Watcher {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "watch-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.observer_port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(!persistent)
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = broker.credentials {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 100);
        let watcher = Watcher {
            client: client.clone(),
            seen: Arc::default(),
            connections: Arc::default(),
            subscribed: Arc::default(),
            acked: Arc::default(),
            stop: Arc::default(),
        };
        let (seen, connections, subscribed, acked, stop) = (
            watcher.seen.clone(),
            watcher.connections.clone(),
            watcher.subscribed.clone(),
            watcher.acked.clone(),
            watcher.stop.clone(),
        );
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        let wanted = filters.len();
        std::thread::spawn(move || {
            for event in connection.iter() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connections.fetch_add(1, Ordering::SeqCst);
                        for filter in &filters {
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = Msg {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            connection: connections.load(Ordering::SeqCst),
                        };
                        seen.lock().unwrap().push(msg);
                    }
                    Ok(_) => {}
                    // The broker is away: try again soon (rumqttc reconnects on the next poll).
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        watcher.wait_until(
            Duration::from_secs(10),
            "the watcher's subscription",
            || watcher.subscribed.load(Ordering::SeqCst) >= wanted,
        );
        watcher
    }

    fn wait_until(&self, limit: Duration, what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; MQTT messages seen:{:?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn messages(&self) -> Vec<Msg> {
        self.seen.lock().unwrap().clone()
    }

    fn on(&self, topic: &str) -> Vec<Msg> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Publishes (QoS 1) and waits for the broker's acknowledgement.
    fn publish(&self, topic: &str, payload: &str, retain: bool) {
        let before = self.acked.load(Ordering::SeqCst);
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .unwrap();
        self.wait_until(Duration::from_secs(10), "the broker's PUBACK", || {
            self.acked.load(Ordering::SeqCst) > before
        });
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

/// What a new subscriber to `filter` is given as retained messages right away.
fn retained(broker: &Broker, filter: &str) -> Vec<Msg> {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let marker = format!(
        "facelock-test-marker/{}/{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let watcher = Watcher::connect(broker, &[filter, &marker], false);
    // The broker sends a subscription's retained messages before it handles the client's
    // next packet: once the marker published after the subscription is back, all of them
    // are in.
    watcher.publish(&marker, "marker", false);
    watcher.wait_until(Duration::from_secs(10), "the marker", || {
        !watcher.on(&marker).is_empty()
    });
    watcher
        .messages()
        .into_iter()
        .filter(|m| m.retain && m.topic != marker)
        .collect()
}

/// Waits until a new subscriber to `filter` gets retained messages that satisfy `done`;
/// returns them.
fn wait_retained(
    broker: &Broker,
    filter: &str,
    what: &str,
    done: impl Fn(&[Msg]) -> bool,
) -> Vec<Msg> {
    let start = Instant::now();
    loop {
        let msgs = retained(broker, filter);
        if done(&msgs) {
            return msgs;
        }
        assert!(
            start.elapsed() < LIMIT,
            "timed out waiting for retained {what} under {filter}; retained now:{msgs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn payloads(msgs: &[Msg], topic: &str) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.topic == topic)
        .map(Msg::text)
        .collect()
}

fn events(msgs: &[Msg]) -> Vec<Value> {
    msgs.iter()
        .filter(|m| m.topic == format!("{BASE}/event"))
        .map(Msg::json)
        .collect()
}

fn has_event(msgs: &[Msg], kind: &str) -> bool {
    events(msgs).iter().any(|e| e["event_type"] == kind)
}

/// A lock that enrols four of the five sample people (ben_afflek plays a stranger), with
/// the control socket on and the `[mqtt]` section given.
fn lock_with_mqtt(mqtt: impl FnOnce(&Lock) -> String) -> Lock {
    let lock = Lock::new(&classifier_without_ben().0.bytes, LOOPING, None);
    let path = lock.path("lock.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[control]\nsocket = \"control.sock\"\n");
    text.push_str(&mqtt(&lock));
    std::fs::write(&path, text).unwrap();
    lock
}

/// The daemon running, its standard error in a file, killed on drop.
struct Daemon {
    child: RefCell<Child>,
    lock: Lock,
}

impl Daemon {
    fn start(lock: Lock) -> Daemon {
        let stderr = File::create(lock.path("daemon.stderr")).unwrap();
        let child = lock
            .command(&["run"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Daemon {
            child: RefCell::new(child),
            lock,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.lock.path("daemon.stderr")).unwrap_or_default()
    }

    /// The daemon's side of a failure: the end of its log, the relay and the audit.
    fn context(&self) -> String {
        let stderr = self.stderr();
        let mut from = stderr.len().saturating_sub(6000);
        while !stderr.is_char_boundary(from) {
            from += 1;
        }
        format!(
            "\n--- relay {:?}\n--- audit {:#?}\n--- daemon stderr (end):\n{}",
            self.lock.relay(),
            self.lock.audit(),
            &stderr[from..]
        )
    }

    /// Waits until `done` holds for the watcher's messages; panics with what was seen.
    fn wait_mqtt(
        &self,
        watcher: &Watcher,
        limit: Duration,
        what: &str,
        done: impl Fn(&[Msg]) -> bool,
    ) {
        let start = Instant::now();
        while !done(&watcher.messages()) {
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}; MQTT messages seen:{:?}{}",
                    watcher.messages(),
                    self.context()
                );
            }
            self.assert_running();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `done` holds for the lock (relay, audit); panics with the daemon's side.
    fn wait_lock(&self, limit: Duration, what: &str, done: impl Fn(&Lock) -> bool) {
        let start = Instant::now();
        while !done(&self.lock) {
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}{}",
                    self.context()
                );
            }
            self.assert_running();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_running(&self) {
        let exited = self.child.borrow_mut().try_wait().unwrap();
        if let Some(status) = exited {
            panic!("the daemon exited ({status}){}", self.context());
        }
    }

    /// Waits for the daemon's birth message ("online") on the watcher.
    fn wait_online(&self, watcher: &Watcher) {
        self.wait_mqtt(watcher, START_LIMIT, "availability online", |m| {
            payloads(m, &format!("{BASE}/availability")).contains(&"online".to_owned())
        });
    }

    /// Runs `lock-daemon ctl ARGS`; returns (success, stdout + stderr).
    fn ctl(&self, args: &[&str]) -> (bool, String) {
        let mut full = vec!["ctl"];
        full.extend_from_slice(args);
        let out = output_within(self.lock.command(&full), PROCESS_LIMIT);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// SIGTERM: the daemon stops cleanly with the door locked.
    fn stop(mut self) {
        let child = self.child.get_mut();
        signal(child, "-TERM");
        let status = wait_within(child, PROCESS_LIMIT);
        assert!(status.success(), "exit status {status}{}", self.context());
        assert_eq!(
            self.lock.relay().last().unwrap().state,
            LockState::Locked,
            "{}",
            self.context()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A broker, a watcher on it, and a daemon with `[mqtt]` (plus `extra` keys) replaying an
/// empty hallway, once the daemon says `online`.
fn online_in_an_empty_hallway(extra: &str) -> (Broker, Watcher, Daemon) {
    let broker = Broker::start(BrokerOptions::default());
    let lock = lock_with_mqtt(|l| broker.mqtt_section(l, extra));
    lock.add_frames(&empty_hallway(), 3);
    let watcher = broker.watch();
    let daemon = Daemon::start(lock);
    daemon.wait_online(&watcher);
    (broker, watcher, daemon)
}

#[test]
fn the_broker_harness_keeps_retained_messages_and_comes_back_on_the_same_port() {
    let mut broker = Broker::start(BrokerOptions::default());
    let watcher = broker.watch();
    watcher.publish("harness/state", "one", true);
    watcher.wait_until(LIMIT, "the message back", || {
        !watcher.on("harness/state").is_empty()
    });
    assert_eq!(
        payloads(&retained(&broker, "harness/#"), "harness/state"),
        ["one"]
    );
    let port = broker.port;
    broker.restart();
    assert_eq!(broker.port, port);
    watcher.wait_until(LIMIT, "the watcher back", || watcher.connections() >= 2);
    // Without persistence the new broker starts empty.
    assert!(retained(&broker, "harness/#").is_empty());
    watcher.publish("harness/state", "two", false);
    watcher.wait_until(LIMIT, "a message after the restart", || {
        payloads(&watcher.messages(), "harness/state").contains(&"two".to_owned())
    });
}

#[test]
fn discovery_announces_every_entity_home_assistant_needs_as_retained_json() {
    let (broker, watcher, daemon) = online_in_an_empty_hallway("");
    let lock_config = format!("homeassistant/lock/{NAME}/lock/config");
    let event_config = format!("homeassistant/event/{NAME}/access/config");
    let select_config = format!("homeassistant/select/{NAME}/mode/config");
    let sensors: Vec<String> = ["last_person", "latency", "camera_fps", "events_dropped"]
        .iter()
        .map(|s| format!("homeassistant/sensor/{NAME}/{s}/config"))
        .collect();
    let mut wanted = vec![
        lock_config.clone(),
        event_config.clone(),
        select_config.clone(),
    ];
    wanted.extend(sensors.iter().cloned());
    let configs = wait_retained(&broker, "homeassistant/#", "discovery", |msgs| {
        wanted
            .iter()
            .all(|t| msgs.iter().any(|m| &m.topic == t && !m.payload.is_empty()))
    });
    let config = |topic: &str| {
        configs
            .iter()
            .find(|m| m.topic == topic)
            .unwrap_or_else(|| panic!("no {topic}:{configs:?}"))
            .json()
    };
    let mut unique_ids = Vec::new();
    for m in configs.iter().filter(|m| !m.payload.is_empty()) {
        let c = m.json();
        let id = c["unique_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no unique_id: {c}", m.topic));
        assert!(
            id.starts_with(&format!("facelock_{NAME}")),
            "{}: {c}",
            m.topic
        );
        unique_ids.push(id.to_owned());
        assert_eq!(
            c["availability_topic"],
            format!("{BASE}/availability"),
            "{}: {c}",
            m.topic
        );
        let identifiers = c["device"]["identifiers"].as_array();
        assert!(
            identifiers.is_some_and(|ids| ids.contains(&Value::from(format!("facelock_{NAME}")))),
            "{}: {c}",
            m.topic
        );
        assert_eq!(c["device"]["manufacturer"], "facelock", "{}: {c}", m.topic);
        assert!(c["device"]["name"].is_string(), "{}: {c}", m.topic);
    }
    unique_ids.sort();
    let count = unique_ids.len();
    unique_ids.dedup();
    assert_eq!(
        unique_ids.len(),
        count,
        "unique_id repeated: {unique_ids:?}"
    );

    let l = config(&lock_config);
    assert_eq!(l["command_topic"], format!("{BASE}/lock/set"), "{l}");
    assert_eq!(l["state_topic"], format!("{BASE}/lock"), "{l}");
    assert_eq!(l["payload_lock"], "LOCK", "{l}");
    assert_eq!(l["payload_unlock"], "UNLOCK", "{l}");
    assert_eq!(l["state_locked"], "LOCKED", "{l}");
    assert_eq!(l["state_unlocked"], "UNLOCKED", "{l}");
    // No PIN configured: Home Assistant must not ask for one.
    assert!(l.get("code_format").is_none(), "{l}");

    let e = config(&event_config);
    assert_eq!(e["state_topic"], format!("{BASE}/event"), "{e}");
    let types = e["event_types"].as_array().expect("event_types");
    for kind in ["granted", "denied-unknown", "manual-unlock", "refused"] {
        assert!(types.contains(&Value::from(kind)), "{kind} missing: {e}");
    }

    for topic in &sensors {
        let s = config(topic);
        let state = s["state_topic"]
            .as_str()
            .unwrap_or_else(|| panic!("{topic}: {s}"));
        assert!(state.starts_with(&format!("{BASE}/")), "{topic}: {s}");
    }
    assert_eq!(config(&sensors[1])["unit_of_measurement"], "ms");

    let s = config(&select_config);
    assert_eq!(s["command_topic"], format!("{BASE}/mode/set"), "{s}");
    assert_eq!(s["state_topic"], format!("{BASE}/mode"), "{s}");
    assert_eq!(
        s["options"],
        serde_json::json!(["normal", "lockdown", "unlocked"]),
        "{s}"
    );
    // Not configured: no door contact, no camera, and the mode is a select, not a sensor.
    for absent in [
        format!("homeassistant/binary_sensor/{NAME}/door/config"),
        format!("homeassistant/camera/{NAME}/snapshot/config"),
        format!("homeassistant/sensor/{NAME}/mode/config"),
    ] {
        assert!(
            configs
                .iter()
                .all(|m| m.topic != absent || m.payload.is_empty()),
            "{absent} announced:{configs:?}"
        );
    }
    // The states are retained too.
    let states = wait_retained(&broker, &format!("{BASE}/#"), "states", |m| {
        !payloads(m, &format!("{BASE}/lock")).is_empty()
            && !payloads(m, &format!("{BASE}/mode")).is_empty()
    });
    assert_eq!(payloads(&states, &format!("{BASE}/lock")), ["LOCKED"]);
    assert_eq!(payloads(&states, &format!("{BASE}/mode")), ["normal"]);
    assert_eq!(
        payloads(&states, &format!("{BASE}/availability")),
        ["online"]
    );
    // Home Assistant starting again (its status "online") gets the configs again.
    let before = watcher.on(&lock_config).len();
    watcher.publish("homeassistant/status", "online", false);
    daemon.wait_mqtt(&watcher, LIMIT, "discovery again", |m| {
        m.iter().filter(|m| m.topic == lock_config).count() > before
    });
    for m in watcher.messages() {
        assert!(!m.text().contains("embedding"), "{m:?}");
    }
    daemon.stop();
    // A clean stop says "offline".
    let after = retained(&broker, &format!("{BASE}/availability"));
    assert_eq!(
        payloads(&after, &format!("{BASE}/availability")),
        ["offline"]
    );
}

#[test]
fn a_face_let_in_and_a_stranger_refused_are_published_as_events_with_the_lock_state() {
    let broker = Broker::start(BrokerOptions::default());
    let lock = lock_with_mqtt(|l| broker.mqtt_section(l, ""));
    // Round and round: madonna (enrolled) gets in; ben_afflek and grace_hopper do not.
    lock.add_frames(&photos("madonna"), 1);
    lock.add_frames(&empty_hallway(), 10);
    lock.add_frames(&photos("ben_afflek"), 1);
    lock.add_frames(&[extra("stranger/grace_hopper.jpg")], 4);
    let watcher = broker.watch();
    let daemon = Daemon::start(lock);
    daemon.wait_online(&watcher);
    let lock_topic = format!("{BASE}/lock");
    daemon.wait_mqtt(
        &watcher,
        START_LIMIT,
        "granted, denied-unknown, and UNLOCKED then LOCKED",
        |m| {
            let states = payloads(m, &lock_topic);
            let unlocked = states.iter().position(|s| s == "UNLOCKED");
            has_event(m, "granted")
                && has_event(m, "denied-unknown")
                && unlocked.is_some_and(|i| states[i..].iter().any(|s| s == "LOCKED"))
        },
    );
    let msgs = watcher.messages();
    let all = events(&msgs);
    let granted = all.iter().find(|e| e["event_type"] == "granted").unwrap();
    assert_eq!(granted["person"], "madonna", "{granted}");
    assert!(granted["probability"].is_number(), "{granted}");
    assert!(granted["similarity"].is_number(), "{granted}");
    assert!(
        granted["frames"].as_u64().is_some_and(|f| f >= 3),
        "{granted}"
    );
    let denied = all
        .iter()
        .find(|e| e["event_type"] == "denied-unknown")
        .unwrap();
    assert_ne!(denied["person"], "ben_afflek", "{denied}");
    for e in &all {
        let time = e["time"].as_str().unwrap_or_else(|| panic!("no time: {e}"));
        assert!(time.len() >= 20 && time.contains('T'), "not RFC 3339: {e}");
        // Biometric data stays on the lock: scores only, no embedding, no image.
        let text = e.to_string();
        assert!(!text.contains("embedding") && text.len() < 2000, "{e}");
    }
    // The last state and the last person are retained for whoever subscribes next.
    daemon.wait_lock(LIMIT, "relocked", |l| {
        l.relay().last().unwrap().state == LockState::Locked
    });
    let states = wait_retained(&broker, &format!("{BASE}/#"), "last person", |m| {
        !payloads(m, &format!("{BASE}/last_person")).is_empty()
    });
    assert_eq!(
        payloads(&states, &format!("{BASE}/last_person")),
        ["madonna"]
    );
    assert!(
        !payloads(&states, &lock_topic).is_empty(),
        "{BASE}/lock not retained:{states:?}"
    );
    for m in &msgs {
        assert!(!m.text().contains("embedding"), "{m:?}");
    }
    daemon.stop();
}

#[test]
fn an_unlock_command_over_mqtt_reaches_the_relay_and_is_audited() {
    // Long enough that only the LOCK command can end it within the test.
    let (_broker, watcher, daemon) = online_in_an_empty_hallway("unlock_secs = 60.0\n");
    let command = format!("{BASE}/lock/set");
    watcher.publish(&command, "UNLOCK", false);
    daemon.wait_lock(LIMIT, "the unlock", |l| {
        l.relay().last().unwrap().state == LockState::Unlocked
    });
    let manual = daemon.lock.events("manual-unlock");
    assert_eq!(manual.len(), 1, "{}", daemon.context());
    let by = manual[0]["by"].as_str().unwrap_or_default();
    assert!(by.contains("mqtt"), "{}", manual[0]);
    // Home Assistant shows it unlocked (the state is sampled every 100 ms)...
    let lock_topic = format!("{BASE}/lock");
    daemon.wait_mqtt(&watcher, LIMIT, "UNLOCKED", |m| {
        payloads(m, &lock_topic).iter().any(|s| s == "UNLOCKED")
    });
    // ...and its LOCK ends the grant now.
    watcher.publish(&command, "LOCK", false);
    daemon.wait_lock(LIMIT, "the relock", |l| {
        l.relay().last().unwrap().state == LockState::Locked && !l.events("relock").is_empty()
    });
    assert_eq!(daemon.lock.unlocks(), 1, "{}", daemon.context());
    // Home Assistant sees the lock close again, and the event.
    daemon.wait_mqtt(&watcher, LIMIT, "UNLOCKED then LOCKED and the event", |m| {
        let states = payloads(m, &lock_topic);
        let unlocked = states.iter().position(|s| s == "UNLOCKED");
        unlocked.is_some_and(|i| states[i..].iter().any(|s| s == "LOCKED"))
            && has_event(m, "manual-unlock")
    });
    let msgs = watcher.messages();
    let event = events(&msgs)
        .into_iter()
        .find(|e| e["event_type"] == "manual-unlock")
        .unwrap();
    assert!(
        event["by"].as_str().is_some_and(|b| b.contains("mqtt")),
        "{event}"
    );
    daemon.stop();
}

#[test]
fn a_flood_of_wrong_codes_neither_opens_the_door_nor_floods_the_audit_nor_stops_a_lock() {
    let broker = Broker::start(BrokerOptions::default());
    let code_hash =
        lock_daemon::http::auth::hash_text(&lock_daemon::http::auth::hash_token("97531"));
    let lock = lock_with_mqtt(|l| {
        broker.mqtt_section(
            l,
            &format!("unlock_secs = 60.0\nunlock_code_hash = \"{code_hash}\"\n"),
        )
    });
    lock.add_frames(&empty_hallway(), 3);
    let watcher = broker.watch();
    let daemon = Daemon::start(lock);
    daemon.wait_online(&watcher);
    let command = format!("{BASE}/lock/set");
    // The right code opens the door...
    watcher.publish(&command, r#"{"action": "UNLOCK", "code": "97531"}"#, false);
    daemon.wait_lock(LIMIT, "the unlock with the right code", |l| {
        l.relay().last().unwrap().state == LockState::Unlocked
    });
    // ...a hostile client then floods the topic with wrong codes...
    for _ in 0..200 {
        watcher.publish(&command, r#"{"action": "UNLOCK", "code": "86420"}"#, false);
    }
    // ...and Home Assistant's LOCK still gets through.
    watcher.publish(&command, "LOCK", false);
    daemon.wait_lock(LIMIT, "the LOCK after the flood", |l| {
        l.relay().last().unwrap().state == LockState::Locked
    });
    // The right code now waits (3 wrong codes in a row), and the door stays locked.
    watcher.publish(&command, r#"{"action": "UNLOCK", "code": "97531"}"#, false);
    std::thread::sleep(Duration::from_secs(2));
    daemon.assert_running();
    assert_eq!(daemon.lock.unlocks(), 1, "{}", daemon.context());
    // At most the burst of commands reached the door loop, and the audit log holds a
    // bounded number of refusals, none with the code.
    let refused = daemon.lock.events("refused");
    assert!(
        (3..=11).contains(&refused.len()),
        "{} refusals: {}",
        refused.len(),
        daemon.context()
    );
    let audit = std::fs::read_to_string(daemon.lock.path("audit.jsonl")).unwrap();
    assert!(
        !audit.contains("86420") && !audit.contains("97531"),
        "{audit}"
    );
    daemon.stop();
}

#[test]
fn retained_commands_left_on_the_broker_are_cleared_at_connect_and_never_obeyed() {
    let broker = Broker::start(BrokerOptions::default());
    let watcher = broker.watch();
    // A stale UNLOCK, and a mode that would hold the door open.
    let unlock = format!("{BASE}/lock/set");
    let mode = format!("{BASE}/mode/set");
    watcher.publish(&unlock, "UNLOCK", true);
    watcher.publish(&mode, "unlocked", true);
    let left = retained(&broker, &format!("{BASE}/#"));
    assert_eq!(payloads(&left, &unlock), ["UNLOCK"]);
    assert_eq!(payloads(&left, &mode), ["unlocked"]);
    let lock = lock_with_mqtt(|l| broker.mqtt_section(l, ""));
    lock.add_frames(&empty_hallway(), 3);
    let daemon = Daemon::start(lock);
    daemon.wait_online(&watcher);
    let online = Instant::now();
    // Cleared: an empty retained message removes each, so a new subscriber gets nothing.
    for topic in [&unlock, &mode] {
        daemon.wait_mqtt(&watcher, LIMIT, &format!("{topic} cleared"), |m| {
            m.iter().any(|m| &m.topic == topic && m.payload.is_empty())
        });
    }
    let left = retained(&broker, &format!("{BASE}/+/set"));
    assert!(left.is_empty(), "still retained:{left:?}");
    // The door never opened, and the mode stayed.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(online.elapsed()));
    daemon.assert_running();
    assert_eq!(daemon.lock.unlocks(), 0, "{}", daemon.context());
    for kind in ["manual-unlock", "mode-changed"] {
        assert!(daemon.lock.events(kind).is_empty(), "{}", daemon.context());
    }
    let states = retained(&broker, &format!("{BASE}/mode"));
    assert_eq!(payloads(&states, &format!("{BASE}/mode")), ["normal"]);
    daemon.stop();
}

#[test]
fn lockdown_set_over_mqtt_refuses_an_unlock_command() {
    let (_broker, watcher, daemon) = online_in_an_empty_hallway("");
    watcher.publish(&format!("{BASE}/mode/set"), "lockdown", false);
    let mode_topic = format!("{BASE}/mode");
    daemon.wait_mqtt(&watcher, LIMIT, "mode lockdown", |m| {
        payloads(m, &mode_topic)
            .last()
            .is_some_and(|s| s == "lockdown")
    });
    let changed = daemon.lock.events("mode-changed");
    assert_eq!(changed.len(), 1, "{}", daemon.context());
    assert_eq!(changed[0]["message"], "normal -> lockdown");
    assert!(
        changed[0]["by"]
            .as_str()
            .is_some_and(|b| b.contains("mqtt")),
        "{}",
        changed[0]
    );
    watcher.publish(&format!("{BASE}/lock/set"), "UNLOCK", false);
    daemon.wait_lock(LIMIT, "the refusal", |l| !l.events("refused").is_empty());
    let refused = &daemon.lock.events("refused")[0];
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("lockdown")),
        "{refused}"
    );
    assert!(
        refused["by"].as_str().is_some_and(|b| b.contains("mqtt")),
        "{refused}"
    );
    daemon.wait_mqtt(&watcher, LIMIT, "the refused event", |m| {
        has_event(m, "refused")
    });
    assert_eq!(daemon.lock.unlocks(), 0, "{}", daemon.context());
    assert!(daemon.lock.events("manual-unlock").is_empty());
    daemon.stop();
}

#[test]
fn the_daemon_reconnects_after_the_broker_restarts_and_delivers_what_happened_meanwhile() {
    // A persistent watcher session on a persistent broker: what the daemon publishes
    // after the restart is queued for the watcher even if it is not back yet.
    let mut broker = Broker::start(BrokerOptions {
        persistence: true,
        ..BrokerOptions::default()
    });
    let watcher = Watcher::connect(&broker, &["#"], true);
    let lock = lock_with_mqtt(|l| broker.mqtt_section(l, ""));
    lock.add_frames(&empty_hallway(), 3);
    let daemon = Daemon::start(lock);
    daemon.wait_online(&watcher);
    broker.stop();
    let (ok, text) = daemon.ctl(&["unlock", "--seconds", "1", "--reason", "while-offline"]);
    assert!(ok, "{text}");
    daemon.wait_lock(LIMIT, "the manual unlock", |l| {
        !l.events("manual-unlock").is_empty()
    });
    let before = watcher.connections();
    broker.run();
    watcher.wait_until(LIMIT, "the watcher back", || watcher.connections() > before);
    let after = watcher.connections();
    // Published by the daemon after it reconnected (not replayed from storage): the birth
    // message, discovery, and the event from while the broker was down.
    daemon.wait_mqtt(
        &watcher,
        Duration::from_secs(30),
        "online, discovery and the offline event after the restart",
        |m| {
            let fresh: Vec<Msg> = m
                .iter()
                .filter(|m| m.connection >= after && !m.retain)
                .cloned()
                .collect();
            payloads(&fresh, &format!("{BASE}/availability")).contains(&"online".to_owned())
                && fresh
                    .iter()
                    .any(|m| m.topic == format!("homeassistant/lock/{NAME}/lock/config"))
                && events(&fresh).iter().any(|e| {
                    e["event_type"] == "manual-unlock"
                        && e["message"]
                            .as_str()
                            .is_some_and(|s| s.contains("while-offline"))
                })
        },
    );
    // Said so in the log.
    assert!(daemon.stderr().contains("MQTT"), "{}", daemon.context());
    daemon.stop();
}

#[test]
fn without_a_broker_the_door_still_lets_an_enrolled_person_in() {
    let port = free_port();
    let lock = lock_with_mqtt(|_| mqtt_section(port, ""));
    lock.add_frames(&photos("madonna"), 1);
    lock.add_frames(&empty_hallway(), 10);
    let daemon = Daemon::start(lock);
    daemon.wait_lock(START_LIMIT, "an unlock for madonna", |l| {
        l.events("unlock").iter().any(|e| e["person"] == "madonna")
    });
    daemon.wait_lock(LIMIT, "an MQTT error in the audit", |l| {
        l.events("error").iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("MQTT:"))
        })
    });
    daemon.assert_running();
    daemon.stop();
}

#[test]
fn a_wrong_mqtt_password_is_reported_and_the_door_still_works() {
    let broker = Broker::start(BrokerOptions {
        password: Some(("facelock", "right-password")),
        ..BrokerOptions::default()
    });
    let lock = lock_with_mqtt(|l| {
        write_private(&l.path("mqtt.password"), "wrong-password\n");
        mqtt_section(
            broker.port,
            "username = \"facelock\"\npassword_file = \"mqtt.password\"\n",
        )
    });
    lock.add_frames(&photos("madonna"), 1);
    lock.add_frames(&empty_hallway(), 10);
    let daemon = Daemon::start(lock);
    let is_auth_error = |e: &Value| {
        e["message"].as_str().is_some_and(|m| {
            m.starts_with("MQTT:") && (m.contains("password") || m.contains("user name"))
        })
    };
    daemon.wait_lock(START_LIMIT, "an MQTT error about the password", |l| {
        l.events("error").iter().any(is_auth_error)
    });
    let stderr = daemon.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("MQTT:") && l.contains("password")),
        "{}",
        daemon.context()
    );
    daemon.wait_lock(START_LIMIT, "an unlock for madonna", |l| {
        l.events("unlock").iter().any(|e| e["person"] == "madonna")
    });
    // Reported once, not once per retry.
    let reported = daemon
        .lock
        .events("error")
        .iter()
        .filter(|e| is_auth_error(e))
        .count();
    assert_eq!(reported, 1, "{}", daemon.context());
    daemon.stop();
}

#[test]
fn over_tls_with_the_brokers_ca_the_daemon_connects_and_says_online() {
    let broker = Broker::start(BrokerOptions {
        tls: true,
        password: Some(("facelock", "right-password")),
        ..BrokerOptions::default()
    });
    let watcher = broker.watch();
    // A CA that did not sign the broker's certificate: refused, and said so.
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let lock = lock_with_mqtt(|l| {
        let section = broker.mqtt_section(l, "");
        std::fs::write(l.path("mqtt-ca.pem"), stranger.cert.pem()).unwrap();
        section
    });
    lock.add_frames(&empty_hallway(), 3);
    let daemon = Daemon::start(lock);
    daemon.wait_lock(START_LIMIT, "an MQTT error about TLS", |l| {
        l.events("error").iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("MQTT:") && m.contains("ca_file"))
        })
    });
    assert!(
        watcher.on(&format!("{BASE}/availability")).is_empty(),
        "online with an untrusted certificate:{:?}",
        watcher.messages()
    );
    daemon.stop();

    // The CA that signed it: connected (it can only have come in over TLS: the daemon's
    // listener speaks nothing else), and usable.
    let lock = lock_with_mqtt(|l| broker.mqtt_section(l, ""));
    lock.add_frames(&empty_hallway(), 3);
    let daemon = Daemon::start(lock);
    daemon.wait_online(&watcher);
    watcher.publish(&format!("{BASE}/lock/set"), "UNLOCK", false);
    daemon.wait_lock(LIMIT, "the unlock", |l| l.unlocks() >= 1);
    daemon.stop();
}
