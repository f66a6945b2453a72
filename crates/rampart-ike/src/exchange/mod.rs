//! One module per exchange; each adds `impl Ike` methods for its requests and responses.

mod auth;
mod create_child;
pub(crate) mod eap;
mod ike_rekey;
mod info;
pub(crate) mod init;
pub(crate) mod sig;
