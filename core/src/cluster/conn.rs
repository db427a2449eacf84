//! Connection ids that name their node, and removing a node's connections.
//!
//! A room's owner addresses sockets held by other nodes, and must find every
//! member of a node that died without asking it; so in a cluster the
//! registry's connection type carries the node's id next to the socket's own.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::registry::{Delivery, Registry};

/// A socket in a cluster: the node that holds it and its id there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId {
    /// The node's id (`--node-id`).
    pub node: String,
    /// The socket's id on that node (the Engine.IO session id).
    pub sid: String,
}

impl ConnId {
    /// The socket `sid` on `node`.
    pub fn new(node: impl Into<String>, sid: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            sid: sid.into(),
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.sid)
    }
}

/// Why a node id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// Empty, or longer than 64 bytes.
    #[error("a node id has 1 to 64 characters")]
    Length,
    /// A character outside `A-Z a-z 0-9 _ -`.
    #[error("a node id uses only A-Z, a-z, 0-9, '_' and '-'")]
    Character,
}

/// Checks a node id: 1 to 64 of `A-Z a-z 0-9 _ -`, so it can appear in Redis
/// keys, metrics labels and logs without quoting.
pub fn validate_node_id(id: &str) -> Result<(), NodeIdError> {
    if id.is_empty() || id.len() > 64 {
        return Err(NodeIdError::Length);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NodeIdError::Character);
    }
    Ok(())
}

impl Registry<ConnId> {
    /// Removes every member held by `node` (a node that died): each its own
    /// change and version, room by room, in list order.
    pub fn remove_node(&mut self, node: &str) -> Vec<Delivery<ConnId>> {
        self.remove_conns(|c| c.node == node)
    }

    /// The nodes that hold members here, each once, in order: whose liveness
    /// an owner watches.
    pub fn member_nodes(&self) -> Vec<&str> {
        let mut nodes: Vec<&str> = self.member_conns().map(|c| c.node.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

/// Splits deliveries by the node that holds their recipients, keeping their
/// order, each addressed by socket id: what an owner sends each node (one
/// batch per node per change, see `docs/cluster.md`). A delivery whose
/// recipients span nodes becomes one per node; none is left empty.
pub fn split_by_node(deliveries: &[Delivery<ConnId>]) -> BTreeMap<&str, Vec<Delivery<&str>>> {
    let mut out: BTreeMap<&str, Vec<Delivery<&str>>> = BTreeMap::new();
    for d in deliveries {
        let mut here: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for c in &d.to {
            here.entry(c.node.as_str())
                .or_default()
                .push(c.sid.as_str());
        }
        for (node, to) in here {
            out.entry(node).or_default().push(Delivery {
                to,
                event: d.event.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, EventName, LeaveSuccess, Payload};

    #[test]
    fn deliveries_split_by_node_in_order() {
        let event = |peer: &str| {
            Event::new(
                EventName::LeaveRoomSuccess,
                Payload::LeaveSuccess(LeaveSuccess {
                    room_name: "r".into(),
                    peer_id: peer.into(),
                }),
            )
        };
        let ds = vec![
            Delivery {
                to: vec![
                    ConnId::new("b", "1"),
                    ConnId::new("a", "2"),
                    ConnId::new("b", "3"),
                ],
                event: event("x"),
            },
            Delivery {
                to: vec![ConnId::new("a", "4")],
                event: event("y"),
            },
        ];
        let split = split_by_node(&ds);
        let shape: Vec<(&str, Vec<Vec<&str>>)> = split
            .iter()
            .map(|(n, ds)| (*n, ds.iter().map(|d| d.to.clone()).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", vec![vec!["2"], vec!["4"]]),
                ("b", vec![vec!["1", "3"]])
            ]
        );
        assert!(
            matches!(&split["a"][1].event.payload, Payload::LeaveSuccess(l) if l.peer_id == "y")
        );
        assert!(split_by_node(&[]).is_empty());
    }

    #[test]
    fn node_ids_are_short_and_plain() {
        assert_eq!(validate_node_id("node-1_a"), Ok(()));
        assert_eq!(validate_node_id(&"a".repeat(64)), Ok(()));
        assert_eq!(validate_node_id(""), Err(NodeIdError::Length));
        assert_eq!(validate_node_id(&"a".repeat(65)), Err(NodeIdError::Length));
        assert_eq!(validate_node_id("a:b"), Err(NodeIdError::Character));
        assert_eq!(validate_node_id("é"), Err(NodeIdError::Character));
    }

    #[test]
    fn a_conn_id_shows_its_node() {
        assert_eq!(ConnId::new("n1", "abc").to_string(), "n1/abc");
        let json = serde_json::to_string(&ConnId::new("n1", "abc")).expect("serializes");
        assert_eq!(json, r#"{"node":"n1","sid":"abc"}"#);
    }
}
