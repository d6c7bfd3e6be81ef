//! The lock's topics and what is published on them (docs/mqtt.md lists them). Payloads
//! carry names, scores and states: never an embedding, and an image only on the opt-in
//! snapshot topic.

use serde_json::{json, Map, Value};

use crate::audit::{Event, Record};
use crate::service::Status;

/// Every topic under the base, and Home Assistant's status topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub availability: String,
    pub lock: String,
    pub lock_set: String,
    pub door: String,
    pub mode: String,
    pub mode_set: String,
    pub event: String,
    pub last_person: String,
    pub latency: String,
    pub camera_fps: String,
    pub events_dropped: String,
    pub snapshot: String,
    /// Home Assistant announces itself here ("online" after it starts).
    pub ha_status: String,
}

impl Topics {
    pub fn new(base: &str, discovery_prefix: &str) -> Topics {
        let t = |leaf: &str| format!("{base}/{leaf}");
        Topics {
            availability: t("availability"),
            lock: t("lock"),
            lock_set: t("lock/set"),
            door: t("door"),
            mode: t("mode"),
            mode_set: t("mode/set"),
            event: t("event"),
            last_person: t("last_person"),
            latency: t("latency_ms"),
            camera_fps: t("camera_fps"),
            events_dropped: t("events_dropped"),
            snapshot: t("snapshot"),
            ha_status: format!("{discovery_prefix}/status"),
        }
    }
}

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";
pub const LOCKED: &str = "LOCKED";
pub const UNLOCKED: &str = "UNLOCKED";
pub const JAMMED: &str = "JAMMED";

/// The lock entity's state: LOCKED, UNLOCKED, or JAMMED when the relay failed.
pub fn lock_state(status: &Status) -> &'static str {
    match status.lock.as_str() {
        "unlocked" => UNLOCKED,
        "jammed" => JAMMED,
        _ => LOCKED,
    }
}

/// The door contact's state, when one is wired: "open", "closed" or "unknown".
pub fn door_state(status: &Status) -> Option<&str> {
    match status.door.as_str() {
        "not wired" | "" => None,
        door => Some(door),
    }
}

/// The event types the `event` entity announces, in order.
pub const EVENT_TYPES: [&str; 10] = [
    "granted",
    "denied-unknown",
    "exit",
    "manual-unlock",
    "refused",
    "forced-open",
    "held-open",
    "reload",
    "reload-refused",
    "error",
];

/// The event type an audit record is published as; `None` for records that are states
/// (relock, door opened, mode changed, ...) or bookkeeping.
pub fn event_type(event: Event) -> Option<&'static str> {
    Some(match event {
        Event::Unlock => "granted",
        Event::DeniedUnknown => "denied-unknown",
        Event::Exit => "exit",
        Event::ManualUnlock => "manual-unlock",
        Event::Refused => "refused",
        Event::ForcedOpen => "forced-open",
        Event::HeldOpen => "held-open",
        Event::Reload => "reload",
        Event::ReloadRefused => "reload-refused",
        Event::Error => "error",
        _ => return None,
    })
}

/// The JSON published on the event topic for `record`, if it is an event.
pub fn event_payload(record: &Record) -> Option<Vec<u8>> {
    let kind = event_type(record.event)?;
    let mut object = Map::new();
    object.insert("event_type".into(), kind.into());
    object.insert("time".into(), record.time.clone().into());
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            object.insert(key.into(), value);
        }
    };
    put("person", record.person.clone().map(Value::from));
    put("probability", record.probability.map(|p| json!(round3(p))));
    put("similarity", record.similarity.map(|s| json!(round3(s))));
    put("frames", record.frames.map(Value::from));
    put("message", record.message.clone().map(Value::from));
    put("by", record.by.clone().map(Value::from));
    Some(serde_json::to_vec(&Value::Object(object)).expect("JSON serialises"))
}

fn round3(x: f32) -> f64 {
    (f64::from(x) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_published_with_the_person_and_scores_and_nothing_else() {
        let record = Record {
            probability: Some(0.9731),
            similarity: Some(0.81234),
            frames: Some(3),
            ..Record::new(Event::Unlock).person("ada")
        };
        let payload: Value = serde_json::from_slice(&event_payload(&record).unwrap()).unwrap();
        assert_eq!(payload["event_type"], "granted");
        assert_eq!(payload["person"], "ada");
        assert_eq!(payload["probability"], 0.973);
        assert_eq!(payload["frames"], 3);
        let keys: Vec<&String> = payload.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "event_type",
                "frames",
                "person",
                "probability",
                "similarity",
                "time"
            ]
        );
    }

    #[test]
    fn states_and_bookkeeping_are_not_events() {
        for event in [
            Event::Relock,
            Event::Start,
            Event::DoorOpened,
            Event::ModeChanged,
        ] {
            assert!(event_payload(&Record::new(event)).is_none());
        }
        for kind in EVENT_TYPES {
            assert!(EVENT_TYPES.iter().filter(|k| **k == kind).count() == 1);
        }
    }

    #[test]
    fn the_lock_state_follows_the_strike_and_a_failed_relay_is_jammed() {
        let mut status = Status::default();
        assert_eq!(lock_state(&status), LOCKED);
        status.lock = "unlocked".into();
        assert_eq!(lock_state(&status), UNLOCKED);
        status.lock = "jammed".into();
        assert_eq!(lock_state(&status), JAMMED);
        status.door = "not wired".into();
        assert_eq!(door_state(&status), None);
        status.door = "open".into();
        assert_eq!(door_state(&status), Some("open"));
    }
}
