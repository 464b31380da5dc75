//! Configuration: the YAML file (`file`), the validated model (`model`) and
//! the problems found on the way (`error`).

mod error;
mod file;
pub mod model;

pub use error::{ConfigError, Problem};
pub use model::*;
pub fn load(_p: &std::path::Path) -> Result<Config, ConfigError> { todo!() }
