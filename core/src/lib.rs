//! signalroom-core
