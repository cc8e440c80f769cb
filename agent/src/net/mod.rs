//! The machine's network as the agent sees it: interfaces and MACs (sysfs, ethtool), link
//! control over rtnetlink, the DHCPv4 client, network bring-up, and outgoing HTTP(S).

pub mod bringup;
pub mod dhcp;
pub mod http;
pub mod interfaces;
pub mod link;

pub use bringup::{bring_up_network, BringupOptions, BringupReport};
