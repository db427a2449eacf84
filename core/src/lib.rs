//! signalroom-core

pub mod tracker;
