//! `[mqtt]` settings, validated in `config.rs`.

use std::path::PathBuf;
use std::time::Duration;

/// The broker's port without TLS.
pub const DEFAULT_PORT: u16 = 1883;
/// The broker's port with TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;
/// Home Assistant's discovery prefix.
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";
/// How often the connection is checked when idle.
pub const DEFAULT_KEEPALIVE_SECS: u64 = 30;

/// What MQTT may command. Locking is allowed by default (it only makes the door safer);
/// unlocking and the mode must be turned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Lock,
    Unlock,
    Mode,
}

impl std::str::FromStr for Permission {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lock" => Ok(Permission::Lock),
            "unlock" => Ok(Permission::Unlock),
            "mode" => Ok(Permission::Mode),
            other => Err(format!("{other:?} is not a command")),
        }
    }
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Lock => "lock",
            Permission::Unlock => "unlock",
            Permission::Mode => "mode",
        }
    }
}

/// The validated `[mqtt]` section (present only when `mqtt.enabled = true`).
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    /// `None`: plain MQTT.
    pub tls: Option<MqttTls>,
    pub username: Option<String>,
    /// Read when the client starts; its first line is the password.
    pub password_file: Option<PathBuf>,
    pub client_id: String,
    /// The lock's name: Home Assistant's node id and device name.
    pub lock_name: String,
    pub base_topic: String,
    pub discovery: bool,
    pub discovery_prefix: String,
    pub commands: Vec<Permission>,
    /// How long an MQTT UNLOCK releases the strike.
    pub unlock: Duration,
    /// The hash of the PIN an UNLOCK must carry (`lock-daemon code-hash`).
    pub unlock_code_hash: Option<[u8; 32]>,
    /// The snapshot camera entity (opt-in: photos of people).
    pub camera: bool,
    pub keepalive: Duration,
}

impl MqttSettings {
    pub fn allows(&self, permission: Permission) -> bool {
        self.commands.contains(&permission)
    }
}

/// TLS to the broker: the CA that signed its certificate, and optionally a client
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTls {
    pub ca_file: PathBuf,
    /// Certificate chain and private key, PEM files.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// A name made safe for a topic level and a Home Assistant node id: lower case, `[a-z0-9_-]`,
/// other characters as `_`, at most 64 bytes; "facelock" when nothing is left.
pub fn sanitize_name(name: &str) -> String {
    let clean: String = name
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .take(64)
        .collect();
    match clean.trim_matches('_') {
        "" => "facelock".into(),
        _ => clean,
    }
}

/// This machine's host name, for the default lock name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Why a topic is not usable as a base: empty, wildcards, a leading or trailing `/`, a
/// leading `$`, an empty level, or too long.
pub fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("is empty");
    }
    if topic.len() > 200 {
        return Err("is longer than 200 bytes");
    }
    if topic.contains(['+', '#']) {
        return Err("holds a wildcard (+ or #)");
    }
    if topic.starts_with('/') || topic.ends_with('/') || topic.contains("//") {
        return Err("has an empty level (a leading, trailing or double /)");
    }
    if topic.starts_with('$') {
        return Err("starts with $ (reserved for the broker)");
    }
    if topic.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("holds spaces or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_topic_and_node_id_safe() {
        assert_eq!(sanitize_name("Front Door"), "front_door");
        assert_eq!(sanitize_name("pi-lock_2"), "pi-lock_2");
        assert_eq!(sanitize_name("  "), "facelock");
        assert_eq!(sanitize_name("#/+"), "facelock");
        assert_eq!(sanitize_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn base_topics_with_wildcards_or_empty_levels_are_refused() {
        assert!(check_topic("facelock/front-door").is_ok());
        for bad in ["", "a/+/b", "a/#", "/a", "a/", "a//b", "$SYS/x", "a b"] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }
}
