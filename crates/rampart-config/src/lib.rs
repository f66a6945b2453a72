//! Rampart configuration: the TOML schema of a gateway and its validation.
//!
//! Every table denies unknown keys. [`GatewayConfig`] is the validated, typed form that the
//! node consumes; parsing and validation errors name the file, the key, what is wrong and what
//! is allowed.

mod schema;

pub use schema::*;
