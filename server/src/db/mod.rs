//! The embedded SQLite database: one writer thread that commits in groups, and a pool of
//! read-only connections.
//!
//! Durability: the database runs in WAL mode with `synchronous=FULL`, so a transaction is
//! on disk (the WAL fsynced) when COMMIT returns, and every handler answers 2xx only after
//! the commit that holds its change. An acknowledged report therefore survives `kill -9` and
//! also a power loss (with `NORMAL` it would survive `kill -9`, but a power loss could take
//! the last transactions, which agents had already dropped from their buffers).
//!
//! Throughput: one fsync per transaction would cap heartbeats at the disk's fsync rate, so
//! all writes go through [`Writer`]: a dedicated thread that takes every job queued while the
//! previous commit was in flight and runs them in one transaction (group commit). Each job
//! runs inside a savepoint, so a failing job rolls back alone and the others still commit.

pub mod migrations;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 4096;
/// Jobs waiting for the writer before callers wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 65_536;
/// How often the writer folds the heartbeat log into `nodes`: each fold rewrites the rows of every
/// node that heartbeated, so less often is cheaper; readers count the log meanwhile.
const FOLD_INTERVAL: Duration = Duration::from_secs(5);
/// How long a connection waits for a lock held by another process (a second server on the
/// same file, or the `sqlite3` shell) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection: more than the code has (rusqlite's default is
/// 16; the server has over 30 distinct cached statements).
const STATEMENT_CACHE: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening the database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("setting up the database {}: {source}", path.display())]
    Pragma {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {}: journal mode is {mode:?}, not WAL", path.display())]
    NotWal { path: PathBuf, mode: String },
    #[error("database {}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        source: migrations::MigrationError,
    },
    #[error("starting the database writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Milliseconds since the Unix epoch: how the database stores times.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The database: the writer and the readers of one file.
#[derive(Clone)]
pub struct Database {
    writer: Writer,
    readers: Arc<ReadPool>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.readers.path)
            .finish()
    }
}

impl Database {
    /// Opens (creating if needed) the database at `path`, migrates its schema and starts
    /// the writer thread.
    pub fn open(path: &Path) -> Result<Database, DbError> {
        let mut conn = Connection::open(path).map_err(|source| DbError::Open {
            path: path.to_owned(),
            source,
        })?;
        configure_writer(&conn, path)?;
        migrations::migrate(&mut conn).map_err(|source| DbError::Migrate {
            path: path.to_owned(),
            source,
        })?;
        fold(&conn).map_err(|source| DbError::Pragma {
            path: path.to_owned(),
            source,
        })?;
        let writer = Writer::start(conn)?;
        Ok(Database {
            writer,
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `job` in the writer's next transaction; returns its result once that
    /// transaction has committed. A job that fails is rolled back alone.
    pub async fn write<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.writer.write(job).await
    }

    /// Runs `query` on a read-only connection on the blocking thread pool. It sees every
    /// write whose `write` has returned.
    pub async fn read<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = query(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|error| ApiError::internal(format!("database reader task: {error}")))?
    }
}

fn pragma_error(path: &Path) -> impl Fn(rusqlite::Error) -> DbError + '_ {
    move |source| DbError::Pragma {
        path: path.to_owned(),
        source,
    }
}

fn configure_writer(conn: &Connection, path: &Path) -> Result<(), DbError> {
    let error = pragma_error(path);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&error)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(&error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::NotWal {
            path: path.to_owned(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(&error)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(&error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Idle read-only connections, opened on demand.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn take(&self) -> Result<Connection, ApiError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|error| {
            ApiError::internal(format!(
                "opening a reader of {}: {error}",
                self.path.display()
            ))
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
    }
}

/// What a job hands back after running: called with the outcome of the commit.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// The single writer: a thread that owns the read-write connection.
#[derive(Clone)]
struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    fn start(conn: Connection) -> Result<Writer, DbError> {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer_loop(conn, jobs))
            .map_err(DbError::Thread)?;
        Ok(Writer { queue })
    }

    async fn write<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, job);
            Box::new(move |commit: Result<(), String>| {
                let outcome = match commit {
                    Ok(()) => result,
                    Err(error) => Err(ApiError::unavailable(error)),
                };
                // The caller may have gone (client disconnected); the write stands.
                let _ = reply.send(outcome);
            })
        });
        self.queue
            .send(job)
            .await
            .map_err(|_| ApiError::unavailable("the database writer has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::unavailable("the database writer dropped the job"))?
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    job: impl FnOnce(&Connection) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    // Cached statements: parsing these three per job was a measurable part of a heartbeat.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = job(conn);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    result
}

/// Folds the heartbeat log in its own transaction.
fn fold(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match migrations::fold_heartbeats(conn) {
        Ok(_) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn writer_loop(conn: Connection, mut jobs: mpsc::Receiver<Job>) {
    let mut last_fold = std::time::Instant::now();
    loop {
        // Unfolded heartbeats are counted by readers too, so folding may wait for the next
        // job after an idle spell.
        if last_fold.elapsed() >= FOLD_INTERVAL {
            if let Err(error) = fold(&conn) {
                tracing::error!("folding the heartbeat log: {error}");
            }
            last_fold = std::time::Instant::now();
        }
        let first = jobs.blocking_recv();
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!("starting a transaction: {error}");
            // Dropping the jobs unrun answers their callers with 503: nothing was stored.
            drop(batch);
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(&conn)).collect();
        let commit = conn
            .execute_batch("COMMIT")
            .map_err(|error| format!("committing: {error}"));
        if let Err(error) = &commit {
            tracing::error!(jobs = completions.len(), "{error}");
            if let Err(error) = conn.execute_batch("ROLLBACK") {
                tracing::error!("rolling back after a failed commit: {error}");
            }
        }
        for complete in completions {
            complete(commit.clone());
        }
    }
    tracing::info!("database writer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_job_rolls_back_alone() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Database::open(&dir.path().join("t.db"))?;
        let insert = |name: &'static str, fail: bool| {
            let db = db.clone();
            async move {
                db.write(move |conn| {
                    conn.execute(
                        "INSERT INTO operator_tokens (name, token_sha256, created_at) VALUES (?1, ?1, 0)",
                        [name],
                    )?;
                    if fail {
                        return Err(ApiError::bad_request("no"));
                    }
                    Ok(())
                })
                .await
            }
        };
        let (a, b, c) = tokio::join!(insert("a", false), insert("b", true), insert("c", false));
        assert!(a.is_ok() && c.is_ok());
        assert_eq!(b, Err(ApiError::bad_request("no")));
        let names = db
            .read(|conn| {
                let mut statement =
                    conn.prepare("SELECT name FROM operator_tokens ORDER BY name")?;
                let names = statement
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(names)
            })
            .await?;
        assert_eq!(names, vec!["a", "c"]);
        Ok(())
    }

    #[test]
    fn opens_in_wal_mode_with_full_sync() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.db");
        let _db = Database::open(&path)?;
        let conn = Connection::open(&path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        assert_eq!(mode, "wal");
        let version: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        assert_eq!(version, migrations::SCHEMA_VERSION);
        Ok(())
    }
}
