//! Connection ids that name their node, and removing a node's connections.
//!
//! A room's owner addresses sockets held by other nodes, and must find every
//! member of a node that died without asking it; so in a cluster the
//! registry's connection type carries the node's id next to the socket's own.

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

#[cfg(test)]
mod tests {
    use super::*;

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
