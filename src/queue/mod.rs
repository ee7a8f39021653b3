//! The durable queue on sled (issue #4). The module doc becomes its design document.
