//! The workstation side of facelock: enrol photos, train and calibrate the
//! classifier, evaluate it, and export the file the lock daemon loads.

pub mod capture;
pub mod commands;
pub mod dataset;
pub mod duplicates;
pub mod enroll;
pub mod evaluate;
pub mod fit;
pub mod forget;
pub mod gate;
pub mod people;
pub mod push;
pub mod report;
pub mod review;
pub mod train;
