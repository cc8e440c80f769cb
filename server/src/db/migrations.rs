//! The schema, as numbered migrations. `PRAGMA user_version` holds how many have been
//! applied; each runs in its own transaction together with the version bump, so a crash
//! leaves the database at one version or the next, never between. Migrations are only ever
//! appended: a released one is never edited.

use rusqlite::Connection;

/// Migration `i` (0-based) takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: nodes, their MACs, events, step history, operator tokens.
    r#"
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT UNIQUE,
        state TEXT NOT NULL,
        serial TEXT,
        system_uuid TEXT,
        properties TEXT NOT NULL DEFAULT '{}',
        instance_info TEXT NOT NULL DEFAULT '{}',
        plan TEXT,
        token_sha256 TEXT,
        token_pregenerated INTEGER NOT NULL DEFAULT 0,
        agent_url TEXT,
        agent_version TEXT,
        agent_verify_ca TEXT,
        last_heartbeat INTEGER,
        heartbeats INTEGER NOT NULL DEFAULT 0,
        inventory TEXT,
        inspected_at INTEGER,
        last_error TEXT,
        auto_registered INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX nodes_serial ON nodes(serial);
    CREATE INDEX nodes_system_uuid ON nodes(system_uuid);

    CREATE TABLE ports (
        address TEXT PRIMARY KEY,
        node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX ports_node ON ports(node_id);

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        time INTEGER NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT,
        boot_id TEXT,
        seq INTEGER,
        UNIQUE (node_id, boot_id, seq)
    );
    CREATE INDEX events_node ON events(node_id, id);

    CREATE TABLE steps (
        node_id INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        boot_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        progress REAL,
        message TEXT,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (node_id, boot_id, idx)
    ) WITHOUT ROWID;

    CREATE TABLE operator_tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    "#,
    // 2: heartbeats are appended to a log and folded into nodes every few seconds: an
    // append touches the log's last page, where updating nodes in place rewrote one page of
    // the nodes table per heartbeat (about 9 KiB written per heartbeat with the checkpoint).
    r#"
    CREATE TABLE heartbeat_log (
        id INTEGER PRIMARY KEY,
        node_id INTEGER NOT NULL,
        time INTEGER NOT NULL
    );
    "#,
    // 3: the network_data.json an operator sets for a node's per-node ISO.
    r#"
    ALTER TABLE nodes ADD COLUMN network_data TEXT;
    "#,
    // 4: when the node's agent last posted plan-mode reports (progress and heartbeat
    // reports are not events: this and the steps table are where they leave a trace).
    r#"
    ALTER TABLE nodes ADD COLUMN last_report INTEGER;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "the database's schema version {found} is newer than this rivet-server knows \
         ({SCHEMA_VERSION}); use a newer rivet-server"
    )]
    TooNew { found: u32 },
    #[error("reading the schema version: {0}")]
    ReadVersion(#[source] rusqlite::Error),
    #[error("migrating the schema to version {version}: {source}")]
    Apply {
        version: u32,
        source: rusqlite::Error,
    },
}

/// Adds the heartbeats logged since the last fold to `nodes` and empties the log. Rows of
/// deleted nodes are dropped with the rest.
pub fn fold_heartbeats(conn: &Connection) -> rusqlite::Result<usize> {
    let folded = conn.prepare_cached(
        "UPDATE nodes SET heartbeats = heartbeats + h.n,          last_heartbeat = max(coalesce(last_heartbeat, 0), h.last)          FROM (SELECT node_id, count(*) AS n, max(time) AS last FROM heartbeat_log                GROUP BY node_id) AS h WHERE nodes.id = h.node_id",
    )?
    .execute([])?;
    conn.prepare_cached("DELETE FROM heartbeat_log")?
        .execute([])?;
    Ok(folded)
}

/// Brings the schema up to [`SCHEMA_VERSION`]; returns the version it found.
pub fn migrate(conn: &mut Connection) -> Result<u32, MigrationError> {
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(MigrationError::ReadVersion)?;
    if found > SCHEMA_VERSION {
        return Err(MigrationError::TooNew { found });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as u32 + 1;
        let apply = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        apply(conn).map_err(|source| MigrationError::Apply { version, source })?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_once() -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        assert_eq!(migrate(&mut conn)?, 0);
        assert_eq!(migrate(&mut conn)?, SCHEMA_VERSION);
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )?;
        assert_eq!(tables, 6);
        Ok(())
    }

    #[test]
    fn folding_moves_logged_heartbeats_into_nodes() -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        conn.execute_batch(
            "INSERT INTO nodes (id, uuid, state, heartbeats, last_heartbeat, created_at, updated_at)
                 VALUES (1, 'a', 'enrolled', 2, 100, 0, 0), (2, 'b', 'enrolled', 0, NULL, 0, 0);
             INSERT INTO heartbeat_log (node_id, time) VALUES (1, 150), (1, 120), (2, 90), (9, 5);",
        )?;
        assert_eq!(fold_heartbeats(&conn)?, 2);
        let rows: Vec<(i64, Option<i64>)> = conn
            .prepare("SELECT heartbeats, last_heartbeat FROM nodes ORDER BY id")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        assert_eq!(rows, vec![(4, Some(150)), (1, Some(90))]);
        let left: i64 =
            conn.query_row("SELECT count(*) FROM heartbeat_log", [], |row| row.get(0))?;
        assert_eq!(left, 0);
        Ok(())
    }

    #[test]
    fn refuses_a_newer_schema() -> Result<(), Box<dyn std::error::Error>> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        let error = migrate(&mut conn).expect_err("a newer schema must be refused");
        assert!(error.to_string().contains("newer"), "{error}");
        Ok(())
    }
}
