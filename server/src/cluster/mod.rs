//! Cluster mode (`--redis-url`): several nodes sharing rooms through Redis.
//!
//! The design is in `docs/cluster.md`: each room owned by one node through a
//! Redis lease with a fencing epoch, other nodes forwarding their clients'
//! commands to the owner and delivering its events in version order, nodes
//! registered with a short TTL so a dead node's peers can be removed. This
//! module is built only with the `cluster` feature, because it is not complete:
//! so far a node connects to Redis ([`redis`]), registers itself and keeps its
//! registration alive ([`node`]), turns `/healthz` 503 while Redis does not
//! answer, and reports Redis round trips and errors in `/metrics`. Rooms are
//! not shared yet: each node still serves its own, which is why the default
//! build refuses `--redis-url` instead of pretending to be a cluster.

mod node;
mod redis;

pub use node::Node;
