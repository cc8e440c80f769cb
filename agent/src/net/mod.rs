//! The machine's network as the agent sees it, and outgoing HTTP(S).

pub mod http;
pub mod interfaces;
