//! Where a new room goes: the pure rule, over what the nodes published.

use serde::{Deserialize, Serialize};

/// What a node publishes with each heartbeat (`tessera:node:<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub id: String,
    /// Its WebSocket URL, for clients proxied to it.
    pub url: String,
    /// Rooms it holds a lease on (read fresh from the directory when
    /// placing, so a burst of new rooms does not pile onto one node
    /// between two heartbeats).
    pub rooms: usize,
    pub max_rooms: usize,
    pub participants: usize,
    /// `[cluster] node_capacity`: participants it takes.
    pub capacity: usize,
    /// The server process's share of the machine's CPU over the last
    /// heartbeat, 0..=1.
    pub cpu: f64,
    /// Draining (SIGTERM): it keeps its rooms but takes no new ones.
    pub draining: bool,
    /// How long each heartbeat keeps the node alive (three heartbeats), ms.
    pub ttl_ms: u64,
    /// Time since its last heartbeat, ms (from the key's remaining time to
    /// live in Redis, so the nodes' clocks do not matter).
    #[serde(skip)]
    pub age_ms: u64,
}

impl NodeState {
    /// The node's load, 0 (idle) to 1 (full) and over: the highest of
    /// participants / capacity, rooms / max_rooms and its CPU share.
    pub fn load(&self) -> f64 {
        let part = self.participants as f64 / self.capacity.max(1) as f64;
        let rooms = self.rooms as f64 / self.max_rooms.max(1) as f64;
        part.max(rooms).max(self.cpu)
    }

    /// Whether a new room may be placed here: not draining, under its
    /// limits, and heard from within one and a half heartbeats (a node
    /// killed a moment ago still has its key, but no fresh heartbeat).
    pub fn takes_rooms(&self) -> bool {
        !self.draining && self.load() < 1.0 && self.rooms < self.max_rooms && self.age_ms * 2 <= self.ttl_ms
    }
}

/// The node a new room goes to: the least loaded of those that take rooms;
/// on equal load the one with fewer rooms, then the lower id (so every node
/// deciding at once decides alike). None: every node is full or draining.
pub fn pick(nodes: &[NodeState]) -> Option<&NodeState> {
    nodes.iter().filter(|n| n.takes_rooms()).min_by(|a, b| {
        a.load()
            .partial_cmp(&b.load())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.rooms.cmp(&b.rooms))
            .then(a.id.cmp(&b.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, rooms: usize, participants: usize, cpu: f64) -> NodeState {
        NodeState { id: id.into(), url: format!("ws://{id}/ws"), rooms, max_rooms: 100, participants, capacity: 50, cpu, draining: false, ttl_ms: 6000, age_ms: 500 }
    }

    #[test]
    fn load_is_the_highest_of_participants_rooms_and_cpu() {
        assert_eq!(node("a", 10, 25, 0.1).load(), 0.5);
        assert_eq!(node("a", 60, 5, 0.1).load(), 0.6);
        assert_eq!(node("a", 1, 5, 0.7).load(), 0.7);
    }

    #[test]
    fn a_new_room_goes_to_the_least_loaded_node_that_takes_rooms() {
        let nodes = [node("a", 3, 30, 0.2), node("b", 5, 10, 0.1), node("c", 1, 40, 0.3)];
        assert_eq!(pick(&nodes).map(|n| n.id.as_str()), Some("b"));
        let mut draining = node("b", 0, 0, 0.0);
        draining.draining = true;
        let nodes = [node("a", 3, 30, 0.2), draining, node("c", 1, 50, 0.1)];
        assert_eq!(pick(&nodes).map(|n| n.id.as_str()), Some("a"), "b drains, c is full");
        assert_eq!(pick(&[node("c", 1, 50, 0.1)]), None);
        let mut silent = node("d", 0, 0, 0.0);
        silent.age_ms = 3500;
        assert_eq!(pick(&[silent, node("a", 3, 30, 0.2)]).map(|n| n.id.as_str()), Some("a"), "d missed its last heartbeat");
    }

    #[test]
    fn equal_loads_go_by_fewer_rooms_then_by_id() {
        let nodes = [node("b", 2, 0, 0.0), node("a", 2, 0, 0.0), node("c", 1, 0, 0.0)];
        // rooms/max_rooms makes c's load lower already; equal rooms: by id.
        assert_eq!(pick(&nodes).map(|n| n.id.as_str()), Some("c"));
        assert_eq!(pick(&nodes[..2]).map(|n| n.id.as_str()), Some("a"));
    }
}
