//! The index database: one SQLite file in WAL mode holding, per image, its path, size, modification time,
//! content hash, EXIF facts and L2-normalised embedding, and, once per index, the model that made them.
//! Every change is a transaction, so a killed or powered-off run leaves the file valid and a re-run continues
//! from the last committed batch. `generation` counts committed changes; the files derived from the table
//! (the vector matrix, the HNSW graph) carry the generation they reflect, so a stale one is never used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::{Result, SearchError};

/// Bumped when the tables change shape; an index of another version is refused, not misread.
const SCHEMA_VERSION: &str = "1";
/// The value of `meta.format`, telling a clip index from any other SQLite file.
const FORMAT: &str = "clip-search-index";
/// How long a reader waits for a writer's lock before reporting it (WAL readers rarely wait at all).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    taken TEXT,
    camera TEXT,
    date TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_hash ON images(hash);
CREATE INDEX IF NOT EXISTS images_date ON images(date);
";

/// A SHA-256 of a file's bytes.
pub type ContentHash = [u8; 32];

/// One image as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// Absolute path.
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: ContentHash,
    pub width: u32,
    pub height: u32,
    /// EXIF DateTimeOriginal as `YYYY-MM-DDTHH:MM:SS` (camera local time), when present.
    pub taken: Option<String>,
    /// EXIF make and model, when present.
    pub camera: Option<String>,
    /// `taken`, else the modification time in UTC: what date filters compare.
    pub date: String,
    /// L2-normalised.
    pub embedding: Vec<f32>,
}

/// What a walk compares a file with to decide whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub id: i64,
    pub size: u64,
    pub mtime_ns: i64,
}

/// The model an index was built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    /// The `--model` text it was loaded from (searches load it again from there by default).
    pub spec: String,
    /// SHA-256 over the model's files (config and weights), in order.
    pub weights_sha256: String,
    pub dtype: String,
    pub dim: usize,
}

/// Filters applied before ranking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only images under this directory (absolute).
    pub under: Option<PathBuf>,
    /// Only images whose date is on or after this (`YYYY-MM-DD[THH:MM:SS]`).
    pub after: Option<String>,
    /// Only images whose date is before this.
    pub before: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.under.is_none() && self.after.is_none() && self.before.is_none()
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

pub(crate) fn path_bytes(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().as_bytes().to_vec()
    }
}

pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        PathBuf::from(std::ffi::OsString::from_vec(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn embedding_bytes(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn embedding_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

impl Store {
    /// Opens the index at `path` for writing, creating it when absent.
    pub fn open_or_create(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| db_error(path, e))?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        store.check_or_init_format()?;
        Ok(store)
    }

    /// Opens an existing index for reading (searches never write).
    pub fn open_read_only(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(SearchError::NoIndex {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| db_error(path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| db_error(path, e))?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.check_format()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<()> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.error(e))?;
        // WAL: searches read while an index run writes. FULL: a committed batch survives power loss.
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.error(e))?;
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    fn check_or_init_format(&self) -> Result<()> {
        let tables: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.not_an_index(e))?;
        if tables == 0 {
            self.conn.execute_batch(SCHEMA).map_err(|e| self.error(e))?;
            self.set_meta("format", FORMAT)?;
            self.set_meta("schema_version", SCHEMA_VERSION)?;
            self.set_meta("generation", "0")?;
            return Ok(());
        }
        self.check_format()
    }

    fn check_format(&self) -> Result<()> {
        let format = self.meta("format").map_err(|e| match e {
            SearchError::Database { source, .. } => self.not_an_index(source),
            other => other,
        })?;
        if format.as_deref() != Some(FORMAT) {
            return Err(SearchError::NotAnIndex {
                path: self.path.clone(),
                reason: "it is a SQLite database of another program".into(),
            });
        }
        let version = self.meta("schema_version")?;
        if version.as_deref() != Some(SCHEMA_VERSION) {
            return Err(SearchError::NotAnIndex {
                path: self.path.clone(),
                reason: format!(
                    "schema version {} (this clip reads version {SCHEMA_VERSION})",
                    version.unwrap_or_default()
                ),
            });
        }
        Ok(())
    }

    fn error(&self, source: rusqlite::Error) -> SearchError {
        db_error(&self.path, source)
    }

    fn not_an_index(&self, source: rusqlite::Error) -> SearchError {
        match source {
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase => {
                SearchError::NotAnIndex {
                    path: self.path.clone(),
                    reason: "not a SQLite database".into(),
                }
            }
            other => self.error(other),
        }
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.error(e))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// How many committed changes the image table has seen.
    pub fn generation(&self) -> Result<u64> {
        Ok(self
            .meta("generation")?
            .and_then(|g| g.parse().ok())
            .unwrap_or(0))
    }

    pub fn model(&self) -> Result<Option<StoredModel>> {
        let (Some(spec), Some(weights_sha256), Some(dtype), Some(dim)) = (
            self.meta("model_spec")?,
            self.meta("model_weights_sha256")?,
            self.meta("model_dtype")?,
            self.meta("model_dim")?,
        ) else {
            return Ok(None);
        };
        let dim = dim.parse().map_err(|_| SearchError::NotAnIndex {
            path: self.path.clone(),
            reason: format!("embedding size {dim:?} is not a number"),
        })?;
        Ok(Some(StoredModel {
            spec,
            weights_sha256,
            dtype,
            dim,
        }))
    }

    pub fn set_model(&mut self, model: &StoredModel) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error(&self.path, e))?;
        for (key, value) in [
            ("model_spec", model.spec.clone()),
            ("model_weights_sha256", model.weights_sha256.clone()),
            ("model_dtype", model.dtype.clone()),
            ("model_dim", model.dim.to_string()),
        ] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(|e| db_error(&self.path, e))?;
        }
        tx.commit().map_err(|e| db_error(&self.path, e))
    }

    /// A cached hash of a model file, valid while its size and modification time are unchanged.
    pub fn cached_file_hash(
        &self,
        file: &Path,
        size: u64,
        mtime_ns: i64,
    ) -> Result<Option<String>> {
        let key = format!("file_sha256:{}:{size}:{mtime_ns}", file.display());
        self.meta(&key)
    }

    pub fn cache_file_hash(&self, file: &Path, size: u64, mtime_ns: i64, hash: &str) -> Result<()> {
        let key = format!("file_sha256:{}:{size}:{mtime_ns}", file.display());
        self.set_meta(&key, hash)
    }

    pub fn count(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM images", [], |r| r.get(0))
            .map_err(|e| self.error(e))?;
        Ok(n as usize)
    }

    /// Path -> (id, size, mtime) of every stored image.
    pub fn file_states(&self) -> Result<HashMap<PathBuf, FileState>> {
        let mut statement = self
            .conn
            .prepare("SELECT id, path, size, mtime_ns FROM images")
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |r| {
                Ok((
                    path_from_bytes(r.get(1)?),
                    FileState {
                        id: r.get(0)?,
                        size: r.get::<_, i64>(2)? as u64,
                        mtime_ns: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.error(e))
    }

    /// Every stored content hash.
    pub fn hashes(&self) -> Result<std::collections::HashSet<ContentHash>> {
        let mut statement = self
            .conn
            .prepare("SELECT DISTINCT hash FROM images")
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.error(e))?;
        let mut hashes = std::collections::HashSet::new();
        for row in rows {
            if let Ok(hash) = ContentHash::try_from(row.map_err(|e| self.error(e))?.as_slice()) {
                hashes.insert(hash);
            }
        }
        Ok(hashes)
    }

    /// Some stored image with this content, if any (a renamed or copied file reuses its embedding).
    pub fn twin_of(&self, hash: &ContentHash) -> Result<Option<ImageRecord>> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM images WHERE hash = ?1 ORDER BY id LIMIT 1",
                [hash.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        let Some(id) = id else { return Ok(None) };
        Ok(self.records(&[id])?.into_iter().next().map(|(_, r)| r))
    }

    /// Inserts or replaces `records` (by path) and deletes `removed` paths in one transaction.
    pub fn commit(&mut self, records: &[ImageRecord], removed: &[PathBuf]) -> Result<()> {
        if records.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| db_error(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    // REPLACE gives a changed file a new id (AUTOINCREMENT never reuses one), so anything
                    // derived from (id, embedding) pairs sees the change as a removal and an insertion.
                    "INSERT OR REPLACE INTO images \
                     (path, size, mtime_ns, hash, width, height, taken, camera, date, embedding) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(err)?;
            for r in records {
                upsert
                    .execute(params![
                        path_bytes(&r.path),
                        r.size as i64,
                        r.mtime_ns,
                        r.hash.as_slice(),
                        r.width,
                        r.height,
                        r.taken,
                        r.camera,
                        r.date,
                        embedding_bytes(&r.embedding),
                    ])
                    .map_err(err)?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM images WHERE path = ?1")
                .map_err(err)?;
            for p in removed {
                delete.execute([path_bytes(p)]).map_err(err)?;
            }
            tx.execute(
                "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'",
                [],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Calls `visit(id, embedding)` for every image, in id order.
    pub fn for_each_embedding(&self, mut visit: impl FnMut(i64, &[f32])) -> Result<()> {
        let mut statement = self
            .conn
            .prepare("SELECT id, embedding FROM images ORDER BY id")
            .map_err(|e| self.error(e))?;
        let mut rows = statement.query([]).map_err(|e| self.error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let id: i64 = row.get(0).map_err(|e| self.error(e))?;
            let bytes = row.get_ref(1).map_err(|e| self.error(e))?;
            let bytes = bytes.as_blob().map_err(|e| self.error(e.into()))?;
            visit(id, &embedding_from_bytes(bytes));
        }
        Ok(())
    }

    /// Ids of the images that pass `filter`, ascending.
    pub fn ids_matching(&self, filter: &Filter) -> Result<Vec<i64>> {
        let mut sql = String::from("SELECT id FROM images WHERE 1");
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(dir) = &filter.under {
            let mut prefix = path_bytes(dir);
            if prefix.last() != Some(&b'/') {
                prefix.push(b'/');
            }
            sql.push_str(" AND substr(path, 1, ?) = ?");
            values.push((prefix.len() as i64).into());
            values.push(prefix.into());
        }
        if let Some(after) = &filter.after {
            sql.push_str(" AND date >= ?");
            values.push(after.clone().into());
        }
        if let Some(before) = &filter.before {
            sql.push_str(" AND date < ?");
            values.push(before.clone().into());
        }
        sql.push_str(" ORDER BY id");
        let mut statement = self.conn.prepare(&sql).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |r| r.get(0))
            .map_err(|e| self.error(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.error(e))
    }

    /// The stored records of `ids` (missing ids are skipped), in the order given.
    pub fn records(&self, ids: &[i64]) -> Result<Vec<(i64, ImageRecord)>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT path, size, mtime_ns, hash, width, height, taken, camera, date, embedding \
                 FROM images WHERE id = ?1",
            )
            .map_err(|e| self.error(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let record = statement
                .query_row([id], |r| {
                    let hash: Vec<u8> = r.get(3)?;
                    Ok(ImageRecord {
                        path: path_from_bytes(r.get(0)?),
                        size: r.get::<_, i64>(1)? as u64,
                        mtime_ns: r.get(2)?,
                        hash: ContentHash::try_from(hash.as_slice()).unwrap_or([0; 32]),
                        width: r.get(4)?,
                        height: r.get(5)?,
                        taken: r.get(6)?,
                        camera: r.get(7)?,
                        date: r.get(8)?,
                        embedding: embedding_from_bytes(&r.get::<_, Vec<u8>>(9)?),
                    })
                })
                .optional()
                .map_err(|e| self.error(e))?;
            if let Some(record) = record {
                out.push((id, record));
            }
        }
        Ok(out)
    }

    /// The id of the image stored at `path`, if any.
    pub fn id_of(&self, path: &Path) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM images WHERE path = ?1",
                [path_bytes(path)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// SQLite's own consistency check: `ok`, or the problems it found.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.error(e))
    }
}

fn db_error(path: &Path, source: rusqlite::Error) -> SearchError {
    SearchError::Database {
        path: path.to_path_buf(),
        source,
    }
}
