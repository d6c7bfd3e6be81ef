//! End-to-end tests on the real models and the real photos that
//! `models/fetch.sh` downloads. Run `models/fetch.sh` first.

mod capture;
mod collector;
mod daemon;
mod detection;
mod door_control;
mod enrolment;
mod failsafe;
mod golden;
mod hostile_input;
mod http_api;
mod models;
mod mqtt;
mod support;
mod training;
mod trust;
mod workstation_capture;
