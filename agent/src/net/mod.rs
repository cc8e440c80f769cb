//! The machine's network as the agent sees it: interfaces and MACs (sysfs, ethtool), link
//! control over rtnetlink, the DHCPv4 client, network bring-up, and outgoing HTTP(S).

pub mod bringup;
pub mod dhcp;
pub mod http;
pub mod interfaces;
pub mod link;
pub mod static_apply;
mod static_bond;
pub mod static_config;
mod static_l3;

pub use bringup::{bring_up_network, BringupOptions, BringupReport};
