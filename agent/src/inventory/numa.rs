//! The `numa-topology` collector: memory and CPU threads per NUMA node and the node of each
//! NIC, from `/sys/devices/system/node` and `/sys/class/net`, in IPA's shape:
//! `{"ram": [{numa_node, size_kb}], "cpus": [{cpu, numa_node, thread_siblings}],
//! "nics": [{name, numa_node}]}`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::hostfs::{parse_cpu_list, HostFs};
use super::memory::meminfo_value_kb;
use super::InventoryError;

const NODES: &str = "sys/devices/system/node";

/// `Ok(None)` when the kernel has no NUMA node directory (IPA then leaves the key out).
pub fn collect(fs: &HostFs) -> Result<Option<Value>, InventoryError> {
    if !fs.is_dir(NODES) {
        return Ok(None);
    }
    let nodes = fs.numbered(NODES, "node");
    let mut ram = Vec::new();
    // (node, core id) -> thread ids, in first-seen order of IPA's walk.
    let mut cores: BTreeMap<(u32, i64), Vec<u32>> = BTreeMap::new();
    for (node, dir) in &nodes {
        let meminfo_path = format!("{NODES}/{dir}/meminfo");
        let meminfo = fs.read(&meminfo_path)?;
        let size_kb =
            meminfo_value_kb(&meminfo, "MemTotal").ok_or_else(|| InventoryError::Parse {
                path: fs.path(&meminfo_path),
                reason: "no MemTotal line".to_string(),
            })?;
        ram.push(json!({"numa_node": node, "size_kb": size_kb}));
        let threads = match fs.attribute(&format!("{NODES}/{dir}/cpulist")) {
            Some(list) => parse_cpu_list(&list).ok_or_else(|| InventoryError::Parse {
                path: fs.path(&format!("{NODES}/{dir}/cpulist")),
                reason: format!("not a CPU list: {list:?}"),
            })?,
            None => fs
                .numbered(&format!("{NODES}/{dir}"), "cpu")
                .into_iter()
                .map(|(n, _)| n)
                .collect(),
        };
        for thread in threads {
            let path = format!("sys/devices/system/cpu/cpu{thread}/topology/core_id");
            let core: i64 = fs
                .read(&path)?
                .trim()
                .parse()
                .map_err(|e| InventoryError::Parse {
                    path: fs.path(&path),
                    reason: format!("not a core id: {e}"),
                })?;
            cores.entry((*node, core)).or_default().push(thread);
        }
    }
    let cpus: Vec<Value> = cores
        .into_iter()
        .map(|((node, core), threads)| {
            json!({"cpu": core, "numa_node": node, "thread_siblings": threads})
        })
        .collect();
    let mut nics = Vec::new();
    for name in fs.list("sys/class/net")? {
        let Some(node) = fs.attribute(&format!("sys/class/net/{name}/device/numa_node")) else {
            continue;
        };
        let node: i64 = node.parse().map_err(|e| InventoryError::Parse {
            path: fs.path(&format!("sys/class/net/{name}/device/numa_node")),
            reason: format!("not a node number: {e}"),
        })?;
        nics.push(json!({"name": name, "numa_node": node}));
    }
    Ok(Some(json!({"ram": ram, "cpus": cpus, "nics": nics})))
}
