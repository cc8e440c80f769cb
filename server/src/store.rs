//! Queries on the schema of `db::migrations`: nodes, their MACs, events and steps. Every
//! function takes a connection, so the same code runs in the writer's transactions and on
//! the readers.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use crate::db::now_ms;
use crate::error::ApiError;
use rivet_protocol::JsonObject;

/// Where a node is in its life on this server.
pub mod states {
    /// Added by an operator, not seen yet.
    pub const ENROLLED: &str = "enrolled";
    /// Registered automatically from an inspection.
    pub const DISCOVERED: &str = "discovered";
    /// Inspection data received.
    pub const INSPECTED: &str = "inspected";
    /// The agent reports plan steps.
    pub const RUNNING: &str = "running";
    /// The agent reported its plan finished.
    pub const DONE: &str = "done";
    /// The agent reported a failure (see `last_error`).
    pub const FAILED: &str = "failed";
}

/// One node, as stored (the inventory is read separately: it is large).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    #[serde(skip)]
    pub id: i64,
    pub uuid: String,
    pub name: Option<String>,
    pub state: String,
    pub macs: Vec<String>,
    pub serial: Option<String>,
    pub system_uuid: Option<String>,
    pub properties: JsonObject,
    pub instance_info: JsonObject,
    pub plan: Option<Value>,
    pub agent: AgentState,
    #[serde(serialize_with = "crate::time::serialize_opt_ms")]
    pub inspected_at: Option<i64>,
    pub last_error: Option<String>,
    pub auto_registered: bool,
    #[serde(serialize_with = "crate::time::serialize_ms")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::serialize_ms")]
    pub updated_at: i64,
}

/// What the server knows of the node's agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentState {
    /// `none`, `issued` (handed out at lookup) or `pregenerated` (made by an operator).
    pub token: String,
    #[serde(skip)]
    pub token_sha256: Option<String>,
    pub url: Option<String>,
    pub version: Option<String>,
    /// The certificate the agent pinned with `agent_verify_ca`.
    pub verify_ca: Option<String>,
    #[serde(serialize_with = "crate::time::serialize_opt_ms")]
    pub last_heartbeat: Option<i64>,
    pub heartbeats: i64,
    /// When the agent last posted plan-mode reports.
    #[serde(serialize_with = "crate::time::serialize_opt_ms")]
    pub last_report: Option<i64>,
    /// The later of `last_heartbeat` and `last_report`: when the agent was last heard.
    #[serde(serialize_with = "crate::time::serialize_opt_ms")]
    pub last_seen: Option<i64>,
}

impl AgentState {
    fn update_last_seen(&mut self) {
        self.last_seen = self.last_heartbeat.max(self.last_report);
    }
}

const NODE_COLUMNS: &str = "id, uuid, name, state, serial, system_uuid, properties, \
    instance_info, plan, token_sha256, token_pregenerated, agent_url, agent_version, \
    agent_verify_ca, last_heartbeat, heartbeats, inspected_at, last_error, auto_registered, \
    created_at, updated_at, last_report";

fn json_object(text: String) -> rusqlite::Result<JsonObject> {
    serde_json::from_str(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<Node> {
    let plan: Option<String> = row.get(8)?;
    let plan = plan
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                8,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })?;
    let token_sha256: Option<String> = row.get(9)?;
    let pregenerated: bool = row.get(10)?;
    let token = match (&token_sha256, pregenerated) {
        (None, _) => "none",
        (Some(_), true) => "pregenerated",
        (Some(_), false) => "issued",
    };
    Ok(Node {
        id: row.get(0)?,
        uuid: row.get(1)?,
        name: row.get(2)?,
        state: row.get(3)?,
        macs: Vec::new(),
        serial: row.get(4)?,
        system_uuid: row.get(5)?,
        properties: json_object(row.get(6)?)?,
        instance_info: json_object(row.get(7)?)?,
        plan,
        agent: AgentState {
            token: token.to_string(),
            token_sha256,
            url: row.get(11)?,
            version: row.get(12)?,
            verify_ca: row.get(13)?,
            last_heartbeat: row.get(14)?,
            heartbeats: row.get(15)?,
            last_report: row.get(21)?,
            last_seen: None,
        },
        inspected_at: row.get(16)?,
        last_error: row.get(17)?,
        auto_registered: row.get(18)?,
        created_at: row.get(19)?,
        updated_at: row.get(20)?,
    })
}

/// Lowercase `aa:bb:cc:dd:ee:ff` from either `:` or `-` separated input; `None` when it is
/// not a 6-octet MAC (Ironic ignores such lookup addresses).
pub fn normalize_mac(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase().replace('-', ":");
    let octets: Vec<&str> = text.split(':').collect();
    let valid = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    valid.then_some(text)
}

/// Adds the heartbeats still in the log (not yet folded into `nodes`) to `nodes`' counts.
fn with_logged_heartbeats(conn: &Connection, nodes: &mut [Node]) -> Result<(), ApiError> {
    let mut logged = std::collections::HashMap::new();
    let mut statement = conn.prepare_cached(
        "SELECT node_id, count(*), max(time) FROM heartbeat_log GROUP BY node_id",
    )?;
    for row in statement.query_map([], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })? {
        let (id, count, last) = row?;
        logged.insert(id, (count, last));
    }
    for node in nodes {
        if let Some((count, last)) = logged.get(&node.id) {
            node.agent.heartbeats += count;
            node.agent.last_heartbeat = Some(node.agent.last_heartbeat.unwrap_or(0).max(*last));
        }
        node.agent.update_last_seen();
    }
    Ok(())
}

fn with_macs(conn: &Connection, mut node: Node) -> Result<Node, ApiError> {
    let mut statement =
        conn.prepare_cached("SELECT address FROM ports WHERE node_id = ?1 ORDER BY address")?;
    node.macs = statement
        .query_map([node.id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    with_logged_heartbeats(conn, std::slice::from_mut(&mut node))?;
    Ok(node)
}

/// A node by UUID or name.
pub fn find(conn: &Connection, ident: &str) -> Result<Option<Node>, ApiError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE uuid = ?1 OR name = ?1");
    let node = conn
        .prepare_cached(&sql)?
        .query_row([ident], node_from_row)
        .optional()?;
    node.map(|node| with_macs(conn, node)).transpose()
}

/// A node by UUID or name, or Ironic's 404 "Node X could not be found.".
pub fn get(conn: &Connection, ident: &str) -> Result<Node, ApiError> {
    find(conn, ident)?
        .ok_or_else(|| ApiError::not_found(format!("Node {ident} could not be found.")))
}

/// The ids of the nodes owning any of `macs` (normalized).
pub fn ids_by_macs(conn: &Connection, macs: &[String]) -> Result<Vec<i64>, ApiError> {
    let mut statement = conn.prepare_cached("SELECT node_id FROM ports WHERE address = ?1")?;
    let mut ids = Vec::new();
    for mac in macs {
        if let Some(id) = statement
            .query_row([mac], |row| row.get::<_, i64>(0))
            .optional()?
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// The ids of the nodes whose `column` (serial or system_uuid) is `value`.
fn ids_by_identity(conn: &Connection, column: &str, value: &str) -> Result<Vec<i64>, ApiError> {
    let sql = format!("SELECT id FROM nodes WHERE {column} = ?1");
    let mut statement = conn.prepare_cached(&sql)?;
    let ids = statement
        .query_map([value], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// How a machine identifies itself: MACs, SMBIOS system UUID, serial number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub macs: Vec<String>,
    pub system_uuid: Option<String>,
    pub serial: Option<String>,
}

/// What matching an identity found.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    None,
    One(Box<Node>),
    /// Several nodes match (Ironic's `DuplicateNodeOnLookup`).
    Ambiguous,
}

/// The node matching `identity`: by MACs first, then system UUID, then serial. Every
/// criterion that finds nodes must find exactly one.
pub fn match_identity(conn: &Connection, identity: &Identity) -> Result<Match, ApiError> {
    let mut candidates = Vec::new();
    if !identity.macs.is_empty() {
        candidates.push(ids_by_macs(conn, &identity.macs)?);
    }
    if let Some(uuid) = &identity.system_uuid {
        candidates.push(ids_by_identity(conn, "system_uuid", uuid)?);
    }
    if let Some(serial) = &identity.serial {
        candidates.push(ids_by_identity(conn, "serial", serial)?);
    }
    for ids in candidates {
        match ids.as_slice() {
            [] => continue,
            [id] => {
                let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1");
                let node = conn.prepare_cached(&sql)?.query_row([id], node_from_row)?;
                return Ok(Match::One(Box::new(with_macs(conn, node)?)));
            }
            _ => return Ok(Match::Ambiguous),
        }
    }
    Ok(Match::None)
}

/// A node to create.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub macs: Vec<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub system_uuid: Option<String>,
    #[serde(default)]
    pub properties: JsonObject,
    #[serde(default)]
    pub instance_info: JsonObject,
    #[serde(default)]
    pub plan: Option<Value>,
}

/// Creates a node in `state`; fails with 409 when its UUID, name or a MAC is taken.
pub fn insert(
    conn: &Connection,
    new: &NewNode,
    state: &str,
    auto_registered: bool,
) -> Result<Node, ApiError> {
    let uuid = match &new.uuid {
        Some(text) => uuid::Uuid::parse_str(text)
            .map_err(|_| ApiError::bad_request(format!("{text:?} is not a UUID")))?
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    if let Some(name) = &new.name {
        if name.is_empty() || uuid::Uuid::parse_str(name).is_ok() {
            return Err(ApiError::bad_request(format!(
                "node name {name:?} must be non-empty and not a UUID"
            )));
        }
    }
    let mut macs = Vec::new();
    for mac in &new.macs {
        let normal = normalize_mac(mac)
            .ok_or_else(|| ApiError::bad_request(format!("{mac:?} is not a MAC address")))?;
        if !macs.contains(&normal) {
            macs.push(normal);
        }
    }
    for (what, value) in [("UUID", Some(&uuid)), ("name", new.name.as_ref())] {
        if let Some(value) = value {
            if find(conn, value)?.is_some() {
                return Err(ApiError::conflict(format!(
                    "a node with {what} {value} already exists"
                )));
            }
        }
    }
    let owners = ids_by_macs(conn, &macs)?;
    if !owners.is_empty() {
        return Err(ApiError::conflict(format!(
            "a MAC of {} already belongs to another node",
            macs.join(", ")
        )));
    }
    let now = now_ms();
    let plan = new.plan.as_ref().map(Value::to_string);
    conn.prepare_cached(
        "INSERT INTO nodes (uuid, name, state, serial, system_uuid, properties, instance_info, \
         plan, auto_registered, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?
    .execute(params![
        uuid,
        new.name,
        state,
        new.serial,
        new.system_uuid,
        Value::Object(new.properties.clone()).to_string(),
        Value::Object(new.instance_info.clone()).to_string(),
        plan,
        auto_registered,
        now
    ])?;
    let id = conn.last_insert_rowid();
    add_ports(conn, id, &macs)?;
    get(conn, &uuid)
}

/// Gives `macs` to node `id`, skipping those another node already owns.
pub fn add_ports(conn: &Connection, id: i64, macs: &[String]) -> Result<(), ApiError> {
    let mut statement =
        conn.prepare_cached("INSERT OR IGNORE INTO ports (address, node_id) VALUES (?1, ?2)")?;
    for mac in macs {
        statement.execute(params![mac, id])?;
    }
    Ok(())
}

/// All nodes, in creation order.
pub fn list(conn: &Connection) -> Result<Vec<Node>, ApiError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id");
    let nodes: Vec<Node> = conn
        .prepare_cached(&sql)?
        .query_map([], node_from_row)?
        .collect::<Result<_, _>>()?;
    let mut statement =
        conn.prepare_cached("SELECT node_id, address FROM ports ORDER BY address")?;
    let mut by_id: std::collections::HashMap<i64, Vec<String>> = Default::default();
    for row in statement.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get(1)?)))? {
        let (id, mac) = row?;
        by_id.entry(id).or_default().push(mac);
    }
    let mut nodes: Vec<Node> = nodes
        .into_iter()
        .map(|mut node| {
            node.macs = by_id.remove(&node.id).unwrap_or_default();
            node
        })
        .collect();
    with_logged_heartbeats(conn, &mut nodes)?;
    Ok(nodes)
}

/// The stored inventory of a node, if it was inspected.
pub fn inventory(conn: &Connection, id: i64) -> Result<Option<Value>, ApiError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT inventory FROM nodes WHERE id = ?1")?
        .query_row([id], |row| row.get(0))?;
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|error| ApiError::internal(format!("stored inventory of node {id}: {error}")))
    })
    .transpose()
}

/// One event in a node's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: i64,
    #[serde(serialize_with = "crate::time::serialize_ms")]
    pub time: i64,
    /// `server`, `agent` or `operator`.
    pub source: String,
    pub kind: String,
    pub message: String,
    pub data: Option<Value>,
    /// For agent reports: the agent's boot and the report's number in it.
    pub boot_id: Option<String>,
    pub seq: Option<i64>,
}

/// Records a server- or operator-side event.
pub fn add_event(
    conn: &Connection,
    node_id: i64,
    source: &str,
    kind: &str,
    message: &str,
    data: Option<&Value>,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "INSERT INTO events (node_id, time, source, kind, message, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        node_id,
        now_ms(),
        source,
        kind,
        message,
        data.map(Value::to_string)
    ])?;
    Ok(())
}

/// Events of node `id` after event `after`, oldest first, at most `limit`.
pub fn events(conn: &Connection, id: i64, after: i64, limit: u32) -> Result<Vec<Event>, ApiError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, time, source, kind, message, data, boot_id, seq FROM events \
         WHERE node_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = statement.query_map(params![id, after, limit], |row| {
        let data: Option<String> = row.get(5)?;
        Ok(Event {
            id: row.get(0)?,
            time: row.get(1)?,
            source: row.get(2)?,
            kind: row.get(3)?,
            message: row.get(4)?,
            data: data.and_then(|text| serde_json::from_str(&text).ok()),
            boot_id: row.get(6)?,
            seq: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One step of a plan run, as last reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub boot_id: String,
    pub index: i64,
    pub name: String,
    pub state: String,
    pub progress: Option<f64>,
    pub message: Option<String>,
    #[serde(serialize_with = "crate::time::serialize_ms")]
    pub started_at: i64,
    #[serde(serialize_with = "crate::time::serialize_ms")]
    pub updated_at: i64,
}

/// The steps of the node's latest plan run (the boot that reported last).
pub fn latest_steps(conn: &Connection, id: i64) -> Result<Vec<Step>, ApiError> {
    let mut statement = conn.prepare_cached(
        "SELECT boot_id, idx, name, state, progress, message, started_at, updated_at FROM steps \
         WHERE node_id = ?1 AND boot_id = (SELECT boot_id FROM steps WHERE node_id = ?1 \
         ORDER BY updated_at DESC LIMIT 1) ORDER BY idx",
    )?;
    let rows = statement.query_map([id], |row| {
        Ok(Step {
            boot_id: row.get(0)?,
            index: row.get(1)?,
            name: row.get(2)?,
            state: row.get(3)?,
            progress: row.get(4)?,
            message: row.get(5)?,
            started_at: row.get(6)?,
            updated_at: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().expect("an in-memory database");
        crate::db::migrations::migrate(&mut conn).expect("the schema");
        conn
    }

    #[test]
    fn macs_are_normalized_or_refused() {
        assert_eq!(
            normalize_mac("52-54-00-AB-cd-01").as_deref(),
            Some("52:54:00:ab:cd:01")
        );
        for bad in ["", "52:54:00:ab:cd", "52:54:00:ab:cd:0g", "525400abcd01"] {
            assert_eq!(normalize_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn matches_by_mac_then_system_uuid_then_serial() -> Result<(), ApiError> {
        let conn = database();
        let a = insert(
            &conn,
            &NewNode {
                name: Some("a".into()),
                macs: vec!["52:54:00:00:00:01".into()],
                serial: Some("S1".into()),
                ..NewNode::default()
            },
            states::ENROLLED,
            false,
        )?;
        let b = insert(
            &conn,
            &NewNode {
                name: Some("b".into()),
                system_uuid: Some("u-b".into()),
                serial: Some("S1".into()),
                ..NewNode::default()
            },
            states::ENROLLED,
            false,
        )?;
        let by = |macs: &[&str], system_uuid: Option<&str>, serial: Option<&str>| {
            match_identity(
                &conn,
                &Identity {
                    macs: macs.iter().map(|m| m.to_string()).collect(),
                    system_uuid: system_uuid.map(str::to_string),
                    serial: serial.map(str::to_string),
                },
            )
        };
        assert_eq!(
            by(&["52:54:00:00:00:01"], None, None)?,
            Match::One(Box::new(a.clone()))
        );
        assert_eq!(
            by(&["52:54:00:00:00:09"], Some("u-b"), None)?,
            Match::One(Box::new(b))
        );
        assert_eq!(by(&[], None, Some("S1"))?, Match::Ambiguous);
        assert_eq!(by(&["52:54:00:00:00:09"], None, None)?, Match::None);
        assert_eq!(a.macs, vec!["52:54:00:00:00:01"]);
        Ok(())
    }

    #[test]
    fn duplicate_macs_and_names_conflict() -> Result<(), ApiError> {
        let conn = database();
        let new = NewNode {
            name: Some("a".into()),
            macs: vec!["52:54:00:00:00:01".into()],
            ..NewNode::default()
        };
        insert(&conn, &new, states::ENROLLED, false)?;
        let again = insert(&conn, &new, states::ENROLLED, false).expect_err("a duplicate");
        assert_eq!(again.status, axum::http::StatusCode::CONFLICT);
        let same_mac = NewNode {
            name: Some("b".into()),
            ..new
        };
        let error = insert(&conn, &same_mac, states::ENROLLED, false).expect_err("a taken MAC");
        assert!(error.message.contains("MAC"), "{error}");
        Ok(())
    }
}
