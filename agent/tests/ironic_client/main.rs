//! The agent's side of talking to Ironic, against a fake Ironic on loopback: the API client
//! (version discovery, fail-over, TLS, error bodies), the lookup loop, applying lookup, the
//! advertise address and the heartbeater; plus interface discovery on a fixture sysfs tree.

mod advertise;
mod client;
mod fake_ironic;
mod heartbeat;
mod inspection;
mod interfaces;
mod lookup;
mod support;
mod tls;
