//! signalroom-client
