//! Configuration: raw serde types → validated typed `Config`.

pub mod problems;

pub use problems::{ConfigProblem, Problems};
