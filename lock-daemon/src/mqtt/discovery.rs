//! Home Assistant MQTT discovery: one retained config message per entity, under
//! `<prefix>/<component>/<lock name>/<object>/config`. An entity that is not configured
//! (the door contact, the snapshot camera, the mode select without the mode permission)
//! gets an empty retained config, which removes one left from an earlier configuration.

use serde_json::{json, Value};

use super::settings::{MqttSettings, Permission};
use super::topics::{self, Topics, EVENT_TYPES};

/// The PIN Home Assistant asks for when `mqtt.unlock_code_hash` is set.
pub const CODE_FORMAT: &str = r"^\d{4,8}$";

/// What the lock has, beyond the settings.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    pub door_wired: bool,
}

/// Every discovery message: (topic, payload); an empty payload removes the entity.
pub fn messages(
    settings: &MqttSettings,
    topics: &Topics,
    features: Features,
) -> Vec<(String, Vec<u8>)> {
    let name = &settings.lock_name;
    let prefix = &settings.discovery_prefix;
    let version = env!("CARGO_PKG_VERSION");
    let device = json!({
        "identifiers": [format!("facelock_{name}")],
        "name": format!("facelock {name}"),
        "manufacturer": "facelock",
        "model": "lock-daemon",
        "sw_version": version,
    });
    let origin = json!({ "name": "facelock", "sw_version": version });
    let common = |object: &str, label: &str| {
        json!({
            "name": label,
            "unique_id": format!("facelock_{name}_{object}"),
            "availability_topic": topics.availability,
            "payload_available": topics::ONLINE,
            "payload_not_available": topics::OFFLINE,
            "device": device,
            "origin": origin,
        })
    };
    let with = |mut base: Value, extra: Value| {
        let object = base.as_object_mut().expect("an object");
        for (k, v) in extra.as_object().expect("an object") {
            object.insert(k.clone(), v.clone());
        }
        base
    };
    let mut lock = with(
        common("lock", "Door lock"),
        json!({
            "command_topic": topics.lock_set,
            "state_topic": topics.lock,
            "payload_lock": "LOCK",
            "payload_unlock": "UNLOCK",
            "state_locked": topics::LOCKED,
            "state_unlocked": topics::UNLOCKED,
            "state_jammed": topics::JAMMED,
            "optimistic": false,
            "qos": 1,
            "retain": false,
        }),
    );
    if settings.unlock_code_hash.is_some() {
        lock = with(
            lock,
            json!({
                "code_format": CODE_FORMAT,
                "command_template": "{\"action\": \"{{ value }}\", \"code\": \"{{ code }}\"}",
            }),
        );
    }
    let event = with(
        common("access", "Access"),
        json!({ "state_topic": topics.event, "event_types": EVENT_TYPES, "qos": 1 }),
    );
    let last_person = with(
        common("last_person", "Last person let in"),
        json!({ "state_topic": topics.last_person, "icon": "mdi:account-check" }),
    );
    let latency = with(
        common("latency", "Recognition latency"),
        json!({
            "state_topic": topics.latency,
            "unit_of_measurement": "ms",
            "device_class": "duration",
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }),
    );
    let fps = with(
        common("camera_fps", "Camera frame rate"),
        json!({
            "state_topic": topics.camera_fps,
            "unit_of_measurement": "fps",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "icon": "mdi:camera",
        }),
    );
    let dropped = with(
        common("events_dropped", "Events dropped while offline"),
        json!({
            "state_topic": topics.events_dropped,
            "state_class": "total_increasing",
            "entity_category": "diagnostic",
        }),
    );
    let door = with(
        common("door", "Door"),
        json!({
            "state_topic": topics.door,
            "device_class": "door",
            "payload_on": "open",
            "payload_off": "closed",
            // "unknown" (after an input read error) leaves the state unknown.
            "value_template": "{{ value if value in ['open', 'closed'] else 'None' }}",
        }),
    );
    let modes = ["normal", "lockdown", "unlocked"];
    let mode_select = with(
        common("mode", "Mode"),
        json!({
            "state_topic": topics.mode,
            "command_topic": topics.mode_set,
            "options": modes,
            "qos": 1,
            "retain": false,
            "icon": "mdi:shield-lock",
        }),
    );
    let mode_sensor = with(
        common("mode", "Mode"),
        json!({ "state_topic": topics.mode, "icon": "mdi:shield-lock" }),
    );
    let camera = with(
        common("snapshot", "Last decision snapshot"),
        json!({ "topic": topics.snapshot }),
    );
    let mode_allowed = settings.allows(Permission::Mode);
    let entities: [(&str, &str, Option<Value>); 10] = [
        ("lock", "lock", Some(lock)),
        ("event", "access", Some(event)),
        ("sensor", "last_person", Some(last_person)),
        ("sensor", "latency", Some(latency)),
        ("sensor", "camera_fps", Some(fps)),
        ("sensor", "events_dropped", Some(dropped)),
        ("binary_sensor", "door", features.door_wired.then_some(door)),
        ("select", "mode", mode_allowed.then_some(mode_select)),
        ("sensor", "mode", (!mode_allowed).then_some(mode_sensor)),
        ("camera", "snapshot", settings.camera.then_some(camera)),
    ];
    entities
        .into_iter()
        .map(|(component, object, config)| {
            (
                format!("{prefix}/{component}/{name}/{object}/config"),
                config
                    .map(|c| serde_json::to_vec(&c).expect("JSON serialises"))
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn settings() -> MqttSettings {
        MqttSettings {
            host: "broker".into(),
            port: 1883,
            tls: None,
            username: None,
            password_file: None,
            client_id: "facelock-front".into(),
            lock_name: "front".into(),
            base_topic: "facelock/front".into(),
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            commands: vec![Permission::Lock],
            unlock: Duration::from_secs(5),
            unlock_code_hash: None,
            camera: false,
            keepalive: Duration::from_secs(30),
        }
    }

    fn config(messages: &[(String, Vec<u8>)], topic: &str) -> Option<Value> {
        let (_, payload) = messages
            .iter()
            .find(|(t, _)| t == topic)
            .unwrap_or_else(|| panic!("no {topic}"));
        (!payload.is_empty()).then(|| serde_json::from_slice(payload).unwrap())
    }

    /// The keys Home Assistant's MQTT schemas require, or that this lock relies on.
    fn has(config: &Value, keys: &[&str]) {
        for key in keys {
            assert!(config.get(key).is_some(), "{key} missing from {config}");
        }
    }

    #[test]
    fn every_entity_carries_the_fields_its_home_assistant_schema_requires() {
        let s = settings();
        let topics = Topics::new(&s.base_topic, &s.discovery_prefix);
        let m = messages(&s, &topics, Features { door_wired: true });
        let common = [
            "name",
            "unique_id",
            "availability_topic",
            "device",
            "origin",
        ];
        let lock = config(&m, "homeassistant/lock/front/lock/config").unwrap();
        has(&lock, &common);
        has(
            &lock,
            &[
                "command_topic",
                "state_topic",
                "payload_lock",
                "state_jammed",
            ],
        );
        assert_eq!(lock["command_topic"], "facelock/front/lock/set");
        assert!(lock.get("code_format").is_none());
        let event = config(&m, "homeassistant/event/front/access/config").unwrap();
        has(&event, &common);
        has(&event, &["state_topic", "event_types"]);
        assert!(event["event_types"]
            .as_array()
            .unwrap()
            .contains(&json!("denied-unknown")));
        for sensor in [
            "last_person",
            "latency",
            "camera_fps",
            "events_dropped",
            "mode",
        ] {
            let c = config(&m, &format!("homeassistant/sensor/front/{sensor}/config")).unwrap();
            has(&c, &common);
            has(&c, &["state_topic"]);
        }
        let door = config(&m, "homeassistant/binary_sensor/front/door/config").unwrap();
        has(
            &door,
            &["state_topic", "device_class", "payload_on", "payload_off"],
        );
        // Not configured: removed.
        assert!(config(&m, "homeassistant/select/front/mode/config").is_none());
        assert!(config(&m, "homeassistant/camera/front/snapshot/config").is_none());
        let ids: std::collections::HashSet<String> = m
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(_, p)| serde_json::from_slice::<Value>(p).unwrap()["unique_id"].to_string())
            .collect();
        assert_eq!(ids.len(), m.iter().filter(|(_, p)| !p.is_empty()).count());
    }

    #[test]
    fn the_mode_is_a_select_with_the_mode_permission_and_the_code_is_asked_with_a_pin() {
        let mut s = settings();
        s.commands.push(Permission::Mode);
        s.unlock_code_hash = Some([0; 32]);
        s.camera = true;
        let topics = Topics::new(&s.base_topic, &s.discovery_prefix);
        let m = messages(&s, &topics, Features { door_wired: false });
        let select = config(&m, "homeassistant/select/front/mode/config").unwrap();
        has(&select, &["command_topic", "options", "state_topic"]);
        assert!(config(&m, "homeassistant/sensor/front/mode/config").is_none());
        assert!(config(&m, "homeassistant/binary_sensor/front/door/config").is_none());
        let lock = config(&m, "homeassistant/lock/front/lock/config").unwrap();
        has(&lock, &["code_format", "command_template"]);
        let camera = config(&m, "homeassistant/camera/front/snapshot/config").unwrap();
        has(&camera, &["topic", "unique_id"]);
    }
}
