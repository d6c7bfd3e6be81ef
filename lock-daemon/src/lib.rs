//! facelock's door-lock service as a library: configuration, camera sources, the decision
//! policy, the relay, the audit log and systemd notification. `main.rs` only wires them up.

pub mod audit;
pub mod camera;
pub mod capture;
pub mod clock;
pub mod collector;
pub mod config;
pub mod control;
pub mod door;
pub mod events;
pub mod http;
pub mod indicator;
pub mod inputs;
pub mod memory;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod policy;
pub mod preflight;
pub mod preview;
pub mod recognizer;
pub mod relay;
pub mod rollback;
pub mod scene;
pub mod schedule;
pub mod secure;
pub mod service;
