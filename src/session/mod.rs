//! Sessions: the AES-GCM codec, cookie chunking and the cookie jar.

pub mod chunks;
pub mod codec;
pub mod cookies;
