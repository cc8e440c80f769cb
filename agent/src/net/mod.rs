//! Networking: link control over rtnetlink, the DHCPv4 client and network bring-up.

pub mod bringup;
pub mod dhcp;
pub mod link;

pub use bringup::{bring_up_network, BringupOptions, BringupReport};
