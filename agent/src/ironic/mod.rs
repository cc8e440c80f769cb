//! The agent's side of talking to Ironic: the API client, lookup, the advertise address and
//! the heartbeater (spec §1, §2).

pub mod advertise;
pub mod client;
pub mod heartbeat;
pub mod lookup;
