//! The embedded development IdP and echo upstream of `authgate demo`.
