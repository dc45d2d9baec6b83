//! Durable state of the nightly run: the file ledger, runs, the current enrollment of each group
//! (for full-file compare), changes, the transaction log, holds and our control-number counters.
//!
//! [`Store`] is the one narrow interface the run and the lifecycle commands use; [`SqliteStore`]
//! is the embedded default (bundled SQLite, rollback journal, schema versioned by `PRAGMA user_version`
//! and upgraded by [`MIGRATIONS`]). A PostgreSQL backend implements the same trait.
//!
//! Transactions are explicit: a caller brackets everything one unit of work writes between
//! [`Store::begin`] and [`Store::commit`], so a crash leaves either all of it or none of it.
//! This module knows nothing of files, folders or X12: it stores values.

use crate::changes::ChangeRecord;
use crate::enrollment::{MemberData, Relationship};
use crate::lifecycle::TransactionStatus;
use chrono::NaiveDate;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state store: bad stored value: {0}")]
    Json(#[from] serde_json::Error),
    #[error("state store: schema version {found} is newer than this eligo ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("{change_id}: cannot move from {from} to {to}")]
    Transition {
        change_id: String,
        from: TransactionStatus,
        to: TransactionStatus,
    },
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: a rejected change, whose record is not kept (the run's reject CSV lists it)")]
    NotKept(String),
    #[error("{change_id}: its record, at byte {offset} of {file}, cannot be read: {why}")]
    BatchRecord {
        change_id: String,
        file: String,
        offset: i64,
        why: String,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Schema migrations, in order; `PRAGMA user_version` says how many have been applied.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    as_of TEXT NOT NULL,
    status TEXT NOT NULL,            -- open | committed | done
    counts TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,              -- x12 | portal
    sender TEXT,
    isa13 TEXT,
    isa13_base INTEGER NOT NULL,
    gs06_base INTEGER NOT NULL,
    duplicate_of INTEGER,
    status TEXT NOT NULL,            -- registered | processed | duplicate | held | quarantined
    changes INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX files_sha ON files(sha256);
CREATE INDEX files_interchange ON files(sender, isa13);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE enrollment (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    relationship TEXT NOT NULL,
    active INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE TABLE holds (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    run_id INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    active INTEGER NOT NULL,
    terminations INTEGER NOT NULL,
    status TEXT NOT NULL,            -- held | released | rejected
    decided TEXT
);
CREATE TABLE changes (
    change_id TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    file_id INTEGER,
    hold_id INTEGER,
    kind TEXT NOT NULL,
    group_id TEXT,
    member_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE transactions (
    change_id TEXT PRIMARY KEY,
    group_id TEXT,
    member_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    transaction_date TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    batch_run_id INTEGER
);
CREATE INDEX transactions_status ON transactions(status);
CREATE TABLE transaction_log (
    id INTEGER PRIMARY KEY,
    change_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL
);
"#,
    // 2: `changes` and `transactions` lose their `change_id TEXT PRIMARY KEY`. Each such key is
    // an index ordered by a hash, so every row inserted went to a random page of it: once the
    // index outgrew the page cache (about 1 GB of input per run), each insert read a page back
    // and the run's cost grew faster than its input. The rows are now appended in rowid order
    // only, and each table's ids live in a key table (`change_keys`, `transaction_keys`) that
    // the store fills from the rows of a transaction sorted by id, in one pass, before any
    // lookup by id and at commit (see `SqliteStore::flush_keys`). Rowids are kept, so every
    // `ORDER BY rowid` answers as before.
    r#"
CREATE TABLE changes_v2 (
    change_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    file_id INTEGER,
    hold_id INTEGER,
    kind TEXT NOT NULL,
    group_id TEXT,
    member_id TEXT NOT NULL,
    record TEXT NOT NULL
);
INSERT INTO changes_v2 (rowid, change_id, run_id, file_id, hold_id, kind, group_id, member_id, record)
    SELECT rowid, change_id, run_id, file_id, hold_id, kind, group_id, member_id, record FROM changes ORDER BY rowid;
DROP TABLE changes;
ALTER TABLE changes_v2 RENAME TO changes;
CREATE TABLE change_keys (change_id TEXT PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO change_keys (change_id, row) SELECT change_id, rowid FROM changes ORDER BY change_id;
CREATE TABLE transactions_v2 (
    change_id TEXT NOT NULL,
    group_id TEXT,
    member_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    transaction_date TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    batch_run_id INTEGER
);
INSERT INTO transactions_v2 (rowid, change_id, group_id, member_id, kind, status, transaction_date, run_id, batch_run_id)
    SELECT rowid, change_id, group_id, member_id, kind, status, transaction_date, run_id, batch_run_id FROM transactions ORDER BY rowid;
DROP TABLE transactions;
ALTER TABLE transactions_v2 RENAME TO transactions;
CREATE INDEX transactions_status ON transactions(status);
CREATE TABLE transaction_keys (change_id TEXT PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO transaction_keys (change_id, row) SELECT change_id, rowid FROM transactions ORDER BY change_id;
"#,
    // 3: the store keeps a change's JSON only while a later run may need it. The JSON was
    // 73 % of the store (5.7 times the input after a 300 MB run), and read back only for
    // changes that wait (held, PendingFhs, Incomplete, released later), to be submitted by a
    // later run. A change submitted in the run it arrives keeps
    // an empty `record` and says where the record is: at byte `batch_offset` of its run's
    // batch (`runs.batch_file`, the JSON Lines file as published). A rejected change (no
    // transaction, never submitted) keeps an empty `record` and no offset: the run's reject
    // CSV lists it by change id with the input's control numbers and segment positions.
    // `record` stays NOT NULL (SQLite cannot relax it in place, and a rebuild would copy every
    // old record for nothing).
    r#"
ALTER TABLE changes ADD COLUMN batch_offset INTEGER;
ALTER TABLE runs ADD COLUMN batch_file TEXT;
"#,
    // 4: a change id that is a SHA-256 in lowercase hex (every id eligo makes) is stored as its
    // 32 bytes, a BLOB, instead of 64 characters of TEXT, in the five tables that hold ids.
    // Each change wrote its id five times (its row, its transaction, two log rows and two
    // key tables): about 160 bytes a change fewer, and the key tables' B-trees, sorted by id
    // at every commit, half as deep in bytes. Any other id (none is expected) stays TEXT, as
    // it was: a BLOB never equals a TEXT, so the two cannot collide, and the store reads both
    // back as the same string ([`StoredId`]). The key tables are rebuilt in id order; the
    // other tables keep their rows and rowids.
    r#"
UPDATE changes SET change_id = unhex(change_id)
    WHERE length(change_id) = 64 AND change_id NOT GLOB '*[^0-9a-f]*';
UPDATE transactions SET change_id = unhex(change_id)
    WHERE length(change_id) = 64 AND change_id NOT GLOB '*[^0-9a-f]*';
UPDATE transaction_log SET change_id = unhex(change_id)
    WHERE length(change_id) = 64 AND change_id NOT GLOB '*[^0-9a-f]*';
CREATE TABLE change_keys_v4 (change_id BLOB PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO change_keys_v4 (change_id, row) SELECT change_id, rowid FROM changes ORDER BY change_id;
DROP TABLE change_keys;
ALTER TABLE change_keys_v4 RENAME TO change_keys;
CREATE TABLE transaction_keys_v4 (change_id BLOB PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO transaction_keys_v4 (change_id, row) SELECT change_id, rowid FROM transactions ORDER BY change_id;
DROP TABLE transaction_keys;
ALTER TABLE transaction_keys_v4 RENAME TO transaction_keys;
"#,
    // 5: two B-trees fewer to write per submitted change. `enrollment` keeps its rows in its
    // primary key's B-tree (`WITHOUT ROWID`): as a rowid table, every upsert sought the key in
    // the key's own index and then wrote (or read) the row in the table, two B-trees for a row
    // of about 100 bytes that is only ever found by its key. `transactions_status` becomes
    // `transactions_unbatched`, the same index on `status` holding only the rows that are not
    // yet in a batch (`batch_run_id IS NULL`): the one query that uses it
    // ([`Store::unbatched`]) asks for exactly those, and a change submitted as it is recorded,
    // most of a run's, goes into a batch at once, so its row no longer writes an index entry
    // that nothing reads. Rows, their values and every query's answer are unchanged.
    r#"
ALTER TABLE enrollment RENAME TO enrollment_v4;
CREATE TABLE enrollment (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    relationship TEXT NOT NULL,
    active INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
INSERT INTO enrollment (group_id, member_id, subscriber_id, relationship, active, data)
    SELECT group_id, member_id, subscriber_id, relationship, active, data FROM enrollment_v4 ORDER BY group_id, member_id;
DROP TABLE enrollment_v4;
DROP INDEX transactions_status;
CREATE INDEX transactions_unbatched ON transactions(status) WHERE batch_run_id IS NULL;
"#,
];

/// A change id as the store keeps it (migration 4): the 32 bytes of a lowercase hex SHA-256,
/// or the text of any other id. Bound as a parameter without allocating.
enum IdParam<'a> {
    Sha([u8; 32]),
    Text(&'a str),
}

impl<'a> IdParam<'a> {
    fn new(id: &'a str) -> IdParam<'a> {
        let mut out = [0u8; 32];
        let hex = id.as_bytes();
        if hex.len() != 64 {
            return IdParam::Text(id);
        }
        // Any byte that is not a lowercase hex digit sets the high bit of `bad`.
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let (h, l) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
            bad |= h | l;
            *o = h << 4 | (l & 15);
        }
        if bad & 0x80 != 0 {
            return IdParam::Text(id);
        }
        IdParam::Sha(out)
    }
}

/// Each byte's value as a lowercase hex digit, or 0xFF. Upper case is not the form eligo
/// writes, so such an id stays text and reads back as written.
const NIBBLE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

impl rusqlite::ToSql for IdParam<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            IdParam::Sha(b) => ValueRef::Blob(b),
            IdParam::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

/// A change id read back: a stored BLOB in lowercase hex, a TEXT as it is.
struct StoredId(String);

impl rusqlite::types::FromSql for StoredId {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Blob(b) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut s = String::with_capacity(b.len() * 2);
                for &x in b {
                    s.push(HEX[usize::from(x >> 4)] as char);
                    s.push(HEX[usize::from(x & 15)] as char);
                }
                Ok(StoredId(s))
            }
            _ => String::column_result(v).map(StoredId),
        }
    }
}

/// One run as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub started: String,
    pub as_of: NaiveDate,
    pub status: String,
    pub counts: serde_json::Value,
}

/// One input file in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: i64,
    pub run_id: i64,
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub kind: String,
    pub sender: Option<String>,
    pub isa13: Option<String>,
    /// Our first ISA13 and GS06 for this input's acknowledgements, reserved when it was
    /// recorded, so a rerun writes the same acknowledgement.
    pub isa13_base: u32,
    pub gs06_base: u32,
    pub duplicate_of: Option<i64>,
    pub status: String,
    pub changes: i64,
    pub archived: bool,
}

/// A member of a group as the administrative system has it (what batches have submitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub group_id: String,
    pub member_id: String,
    pub subscriber_id: String,
    pub relationship: Relationship,
    pub active: bool,
    pub data: MemberData,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HoldRow {
    pub id: i64,
    pub file_id: i64,
    pub file_name: String,
    pub run_id: i64,
    pub group_id: String,
    pub active: i64,
    pub terminations: i64,
    pub status: String,
    pub decided: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransactionRow {
    pub change_id: String,
    pub group_id: Option<String>,
    pub member_id: String,
    pub kind: String,
    pub status: TransactionStatus,
    pub transaction_date: NaiveDate,
    pub run_id: i64,
    pub batch_run_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub group: Option<String>,
    pub status: Option<TransactionStatus>,
    pub member: Option<String>,
}

/// The narrow interface of the state store.
pub trait Store {
    fn begin(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self) -> Result<()>;

    // Runs.
    fn create_run(&mut self, started: &str, as_of: NaiveDate) -> Result<i64>;
    /// The run that was started and not committed (a crash), if any.
    fn open_run(&mut self) -> Result<Option<RunRow>>;
    fn set_run(&mut self, id: i64, status: &str, counts: &serde_json::Value) -> Result<()>;
    fn runs(&mut self) -> Result<Vec<RunRow>>;

    // File ledger.
    fn insert_file(&mut self, f: &FileRow) -> Result<i64>;
    fn file_by_sha(&mut self, sha256: &str) -> Result<Option<FileRow>>;
    fn file_by_interchange(&mut self, sender: &str, isa13: &str) -> Result<Option<FileRow>>;
    fn run_files(&mut self, run_id: i64) -> Result<Vec<FileRow>>;
    fn set_file_status(&mut self, id: i64, status: &str, changes: i64) -> Result<()>;
    /// Files of committed runs not yet moved out of the inbound folder.
    fn unarchived_files(&mut self) -> Result<Vec<FileRow>>;
    fn set_archived(&mut self, id: i64) -> Result<()>;

    /// Reserves `n` consecutive values of a counter (our ISA13 or GS06); returns the first.
    fn reserve(&mut self, counter: &str, n: u32) -> Result<u32>;

    // Enrollment.
    fn enrollment(&mut self, group_id: &str) -> Result<Vec<Enrolled>>;
    /// The ids of a group's active members, sorted: what a full file is checked against
    /// without loading the members' data (a few dozen bytes a member instead of kilobytes).
    fn active_members(&mut self, group_id: &str) -> Result<Vec<String>>;
    fn member(&mut self, group_id: &str, member_id: &str) -> Result<Option<Enrolled>>;
    fn put_member(&mut self, e: &Enrolled) -> Result<()>;
    /// Writes a member's row as [`crate::fullfile::apply`] leaves it after a change whose
    /// update is [`crate::fullfile::Update::Set`], without reading it first: a member not yet
    /// stored becomes `new`; a stored one keeps its subscriber id and relationship, takes
    /// `new.active`, and takes `new.data` only when `replace_data` (otherwise it keeps its own
    /// data, and `new.data` is what a new member starts with). Most submitted changes are
    /// such changes, and reading the row meant decoding its data for nothing.
    fn set_member(&mut self, new: &Enrolled, replace_data: bool) -> Result<()> {
        let e = match self.member(&new.group_id, &new.member_id)? {
            Some(mut cur) => {
                cur.active = new.active;
                if replace_data {
                    cur.data = new.data.clone();
                }
                cur
            }
            None => new.clone(),
        };
        self.put_member(&e)
    }

    // Changes and the transaction lifecycle.
    fn insert_change(
        &mut self,
        r: &ChangeRecord,
        run_id: i64,
        file_id: Option<i64>,
        hold_id: Option<i64>,
    ) -> Result<()> {
        let json = serde_json::to_string(r)?;
        self.insert_change_json(r, &json, run_id, file_id, hold_id)
    }
    /// [`Store::insert_change`] with the record already encoded: `json` must be
    /// `serde_json::to_string(r)` (the run writes the same text to its batch).
    fn insert_change_json(
        &mut self,
        r: &ChangeRecord,
        json: &str,
        run_id: i64,
        file_id: Option<i64>,
        hold_id: Option<i64>,
    ) -> Result<()>;
    /// Records a change without its JSON, which no run reads again: the row of
    /// [`Store::insert_change`] and, for a change written to its run's batch, the byte
    /// `batch_offset` where its line starts in the JSON Lines file (see
    /// [`Store::set_run_batch`]), from which [`Store::change`] reads it. `None`: a rejected
    /// change, in no batch, whose record is not kept.
    fn insert_change_unstored(
        &mut self,
        r: &ChangeRecord,
        run_id: i64,
        file_id: Option<i64>,
        batch_offset: Option<u64>,
    ) -> Result<()>;
    /// Where run `run_id` publishes its JSON Lines batch (an absolute path), for the changes
    /// recorded with [`Store::insert_change_unstored`].
    fn set_run_batch(&mut self, run_id: i64, path: &str) -> Result<()>;
    /// A recorded change: its stored JSON, or the line of its run's batch it was written to.
    fn change(&mut self, change_id: &str) -> Result<Option<ChangeRecord>>;
    fn held_changes(&mut self, hold_id: i64) -> Result<Vec<ChangeRecord>>;
    /// Starts a transaction's log with `status`.
    fn insert_transaction(
        &mut self,
        r: &ChangeRecord,
        status: TransactionStatus,
        date: NaiveDate,
        run_id: i64,
        reason: &str,
    ) -> Result<()>;
    /// Moves a transaction along an allowed edge of the lifecycle, and logs it.
    fn set_status(
        &mut self,
        change_id: &str,
        to: TransactionStatus,
        at: &str,
        reason: &str,
    ) -> Result<()>;
    fn set_batch(&mut self, change_id: &str, run_id: i64) -> Result<()>;
    /// Records a change that arrives Pending and is written to batch `run_id` at once: the
    /// same rows and log as [`Store::insert_transaction`] (Pending, `received`), then
    /// [`Store::set_status`] (Submitted, `at`, `reason`) and [`Store::set_batch`], in that
    /// order. Backends may do it in fewer statements: the run calls it for most changes.
    #[allow(clippy::too_many_arguments)]
    fn insert_submitted(
        &mut self,
        r: &ChangeRecord,
        date: NaiveDate,
        run_id: i64,
        received: &str,
        at: &str,
        reason: &str,
    ) -> Result<()> {
        self.insert_transaction(r, TransactionStatus::Pending, date, run_id, received)?;
        self.set_status(&r.change_id, TransactionStatus::Submitted, at, reason)?;
        self.set_batch(&r.change_id, run_id)
    }
    fn transactions(&mut self, filter: &TransactionFilter) -> Result<Vec<TransactionRow>>;
    /// Transactions in `status` and in no batch yet, oldest first.
    fn unbatched(&mut self, status: TransactionStatus) -> Result<Vec<TransactionRow>>;
    /// Deletes transactions (their log and changes) dated before `before`, and changes that
    /// never became a transaction (rejected, or in a rejected hold) received by a run before
    /// it; returns how many of both.
    fn purge(&mut self, before: NaiveDate) -> Result<u64>;

    // Holds.
    fn insert_hold(
        &mut self,
        file_id: i64,
        run_id: i64,
        group_id: &str,
        active: i64,
        terminations: i64,
    ) -> Result<i64>;
    fn holds(&mut self) -> Result<Vec<HoldRow>>;
    fn hold(&mut self, id: i64) -> Result<Option<HoldRow>>;
    fn set_hold(&mut self, id: i64, status: &str, at: &str) -> Result<()>;
}

/// The embedded SQLite store.
pub struct SqliteStore {
    conn: Connection,
    /// Rows of `changes` and of `transactions` written in the open transaction whose ids are
    /// not yet in the key tables: the first such rowid of each (see [`SqliteStore::flush_keys`]).
    unkeyed: [Option<i64>; 2],
}

/// The tables whose ids are kept in a key table, with the statement that moves the ids of rows
/// from a rowid on into it, in id order.
///
/// Sorted by the id's first 8 bytes as an integer ([`ID_ORDER`]), then by the id: the same order
/// as by the id alone (a BLOB's bytes, a TEXT id's bytes, compared byte by byte; only a store
/// mixing both kinds would interleave them, which changes the order rows go in, not the rows),
/// but SQLite's sorter compares a first key that is an INTEGER without parsing a record or
/// calling `memcmp`, where a BLOB goes through its generic record comparison and a TEXT
/// through `memcmp` (storeperf2 took `CAST(substr(change_id, 1, 8) AS TEXT)`, which also cost
/// two SQL functions a row). Eight bytes, not the whole id: the sorter's records, which spill
/// to temporary files beyond the cache limit in a large run, grow by 9 bytes rather than 33.
const KEYED: [&str; 2] = [
    "INSERT OR FAIL INTO change_keys (change_id, row) SELECT change_id, rowid FROM changes WHERE rowid >= ?1 ORDER BY eligo_id_order(change_id), change_id",
    "INSERT OR FAIL INTO transaction_keys (change_id, row) SELECT change_id, rowid FROM transactions WHERE rowid >= ?1 ORDER BY eligo_id_order(change_id), change_id",
];

/// The SQL function of [`KEYED`]'s sort, registered on every connection the store opens
/// ([`register_functions`]).
const ID_ORDER: &str = "eligo_id_order";

/// An id's sort key for [`KEYED`]: its first 8 bytes (zeros after a shorter id) read as a
/// big-endian number, with the top bit flipped so that signed order is the bytes' order. Ids
/// that share their first 8 bytes get equal keys and are ordered by the id itself. A value
/// that is neither a BLOB nor a TEXT (none is stored: the column is NOT NULL and every writer
/// binds an id) sorts first.
fn id_order(id: rusqlite::types::ValueRef<'_>) -> i64 {
    use rusqlite::types::ValueRef;
    let bytes = match id {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => &[],
    };
    let mut key = [0u8; 8];
    let n = bytes.len().min(8);
    key[..n].copy_from_slice(&bytes[..n]);
    (u64::from_be_bytes(key) ^ (1 << 63)) as i64
}

/// Registers the store's SQL functions ([`ID_ORDER`]) on `conn`.
fn register_functions(conn: &Connection) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        ID_ORDER,
        1,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_DIRECTONLY,
        |ctx| Ok(id_order(ctx.get_raw(0))),
    )?;
    Ok(())
}

const CHANGES: usize = 0;
const TRANSACTIONS: usize = 1;

/// The statements a [`Writer`] holds, by index (the constants below).
///
/// The statuses of [`Writer::insert_submitted`]'s row and log rows are written in its SQL
/// (`'Pending'`, `'Submitted'`: [`TransactionStatus::as_str`], which a test checks) rather than
/// bound: SQLite copies every text bound, four times per submitted change.
const HELD: [&str; 10] = [
    "INSERT INTO changes (change_id, run_id, file_id, hold_id, kind, group_id, member_id, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    "INSERT INTO changes (change_id, run_id, file_id, kind, group_id, member_id, record, batch_offset) VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7)",
    "INSERT INTO transactions (change_id, group_id, member_id, kind, status, transaction_date, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    "INSERT INTO transactions (change_id, group_id, member_id, kind, status, transaction_date, run_id, batch_run_id) VALUES (?1, ?2, ?3, ?4, 'Submitted', ?5, ?6, ?6)",
    "INSERT INTO transaction_log (change_id, from_status, to_status, at, reason) VALUES (?1, NULL, ?2, ?3, ?4)",
    // A submitted change's two log rows (first Pending, then the move to Submitted), in that
    // order, in one statement. `OR FAIL`: a statement writing several rows that may abort
    // (the default conflict action of its NOT NULL columns) makes SQLite keep a statement
    // journal, which copied the log's last page for every change (storeperf2); with `FAIL` a
    // refused row ends the statement without undoing the rows before it, and the run's
    // transaction, which then fails, is rolled back whole.
    "INSERT OR FAIL INTO transaction_log (change_id, from_status, to_status, at, reason) VALUES (?1, NULL, 'Pending', ?2, ?3), (?1, 'Pending', 'Submitted', ?4, ?5)",
    "SELECT subscriber_id, relationship, active, data FROM enrollment WHERE group_id = ?1 AND member_id = ?2",
    // The enrollment upserts of [`Writer::upsert_member`]: the whole row; the member's state
    // (active and data; the subscriber and relationship of an enrolled member stay); `active`
    // alone.
    "INSERT INTO enrollment (group_id, member_id, subscriber_id, relationship, active, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT(group_id, member_id) DO UPDATE SET subscriber_id = excluded.subscriber_id, relationship = excluded.relationship, active = excluded.active, data = excluded.data",
    "INSERT INTO enrollment (group_id, member_id, subscriber_id, relationship, active, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT(group_id, member_id) DO UPDATE SET active = excluded.active, data = excluded.data",
    "INSERT INTO enrollment (group_id, member_id, subscriber_id, relationship, active, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT(group_id, member_id) DO UPDATE SET active = excluded.active",
];
const INSERT_CHANGE_JSON: usize = 0;
const INSERT_CHANGE_UNSTORED: usize = 1;
const INSERT_TRANSACTION: usize = 2;
const INSERT_SUBMITTED: usize = 3;
const LOG_FIRST: usize = 4;
/// Both log rows of a change submitted as it is recorded: Pending, then the move to Submitted.
const LOG_SUBMITTED: usize = 5;
const SELECT_MEMBER: usize = 6;
const UPSERT_MEMBER: usize = 7;
const UPSERT_MEMBER_STATE: usize = 8;
const UPSERT_MEMBER_ACTIVE: usize = 9;

/// The JSON of an empty [`MemberData`] (every field is left out when empty), the data of a row
/// that [`Writer::set_member_of`] writes without data. A test checks it against serde_json.
const EMPTY_DATA: &str = "{}";

fn relationship_from(s: &str) -> Relationship {
    Relationship::from_label(s).unwrap_or(Relationship::SelfSubscriber)
}

fn date_from(s: &str) -> rusqlite::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn status_from(s: &str) -> rusqlite::Result<TransactionStatus> {
    TransactionStatus::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown status {s}").into(),
        )
    })
}

const FILE_COLS: &str = "id, run_id, name, path, sha256, kind, sender, isa13, isa13_base, gs06_base, duplicate_of, status, changes, archived";

fn file_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        name: r.get(2)?,
        path: r.get(3)?,
        sha256: r.get(4)?,
        kind: r.get(5)?,
        sender: r.get(6)?,
        isa13: r.get(7)?,
        isa13_base: r.get(8)?,
        gs06_base: r.get(9)?,
        duplicate_of: r.get(10)?,
        status: r.get(11)?,
        changes: r.get(12)?,
        archived: r.get(13)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let counts: String = r.get(4)?;
    Ok(RunRow {
        id: r.get(0)?,
        started: r.get(1)?,
        as_of: date_from(&r.get::<_, String>(2)?)?,
        status: r.get(3)?,
        counts: serde_json::from_str(&counts).unwrap_or_default(),
    })
}

fn tx_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TransactionRow> {
    Ok(TransactionRow {
        change_id: r.get::<_, StoredId>(0)?.0,
        group_id: r.get(1)?,
        member_id: r.get(2)?,
        kind: r.get(3)?,
        status: status_from(&r.get::<_, String>(4)?)?,
        transaction_date: date_from(&r.get::<_, String>(5)?)?,
        run_id: r.get(6)?,
        batch_run_id: r.get(7)?,
    })
}

const TX_COLS: &str =
    "change_id, group_id, member_id, kind, status, transaction_date, run_id, batch_run_id";

/// A change's row as [`Store::change`] reads it (`c`: changes, `u`: its run).
const CHANGE_COLS: &str = "c.change_id, c.record, c.batch_offset, u.batch_file";

/// A change's stored JSON, or where in its run's batch it is.
struct StoredChange {
    change_id: String,
    record: String,
    batch_offset: Option<i64>,
    batch_file: Option<String>,
}

fn stored_change(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredChange> {
    Ok(StoredChange {
        change_id: r.get::<_, StoredId>(0)?.0,
        record: r.get(1)?,
        batch_offset: r.get(2)?,
        batch_file: r.get(3)?,
    })
}

impl StoredChange {
    /// The record, read from the batch line when the row does not hold it. The line must be
    /// the record of this change: a batch file edited or replaced since is an error, not
    /// another change.
    fn record(self) -> Result<ChangeRecord> {
        let Some(offset) = self.batch_offset else {
            if self.record.is_empty() {
                return Err(StoreError::NotKept(self.change_id));
            }
            return Ok(serde_json::from_str(&self.record)?);
        };
        let file = self.batch_file.unwrap_or_default();
        let fail = |why: String| StoreError::BatchRecord {
            change_id: self.change_id.clone(),
            file: file.clone(),
            offset,
            why,
        };
        let start = u64::try_from(offset).map_err(|_| fail("negative offset".into()))?;
        // A change's line is a few kilobytes; a batch file replaced by something without line
        // breaks must not be read into memory whole.
        const MAX_LINE: u64 = 16 << 20;
        let read = || -> std::io::Result<Vec<u8>> {
            use std::io::{BufRead, Read, Seek};
            let mut f = std::fs::File::open(&file)?;
            f.seek(std::io::SeekFrom::Start(start))?;
            let mut line = Vec::new();
            std::io::BufReader::new(f.take(MAX_LINE)).read_until(b'\n', &mut line)?;
            Ok(line)
        };
        let line = read().map_err(|e| fail(e.to_string()))?;
        let r: ChangeRecord = serde_json::from_slice(&line).map_err(|e| fail(e.to_string()))?;
        if r.change_id != self.change_id {
            return Err(fail("another change's record is there".into()));
        }
        Ok(r)
    }
}

const HOLD_SELECT: &str = "SELECT h.id, h.file_id, f.name, h.run_id, h.group_id, h.active, h.terminations, h.status, h.decided FROM holds h JOIN files f ON f.id = h.file_id";

fn hold_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok(HoldRow {
        id: r.get(0)?,
        file_id: r.get(1)?,
        file_name: r.get(2)?,
        run_id: r.get(3)?,
        group_id: r.get(4)?,
        active: r.get(5)?,
        terminations: r.get(6)?,
        status: r.get(7)?,
        decided: r.get(8)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // Only a new, empty database takes a page size (an existing one keeps its own). 16 KiB
        // pages halve the B-tree work and the WAL frames of a large run: `eligo run` on a
        // 100 MB file spent about a fifth less CPU than with SQLite's default 4 KiB
        // (docs/performance.md); 64 KiB gained nothing more.
        conn.pragma_update(None, "page_size", 16384)?;
        // A rollback journal, not WAL. A run is one long transaction that mostly appends
        // pages: a rollback journal saves only the pages that existed before it, and every new
        // page is written once, where WAL wrote every page twice (to the WAL, then to the
        // database at the checkpoint). On a 100 MB change file the store's writes halve (about
        // 290 MB less) and the run's system time with them (docs/performance.md, runstore).
        // Every command takes the run lock before it opens the store (`run --demo`'s copy of
        // the samples excepted), so WAL's readers beside a writer were not used.
        // TRUNCATE rather than DELETE: with `synchronous=FULL` a commit is the journal truncated
        // and synced, durable without relying on the directory being synced after an unlink.
        // An existing WAL database is converted when opened (under the run lock, alone).
        conn.pragma_update(None, "journal_mode", "TRUNCATE")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        register_functions(&conn)?;
        let mut s = SqliteStore {
            conn,
            unkeyed: [None; 2],
        };
        s.migrate()?;
        Ok(s)
    }

    /// Sets the page cache's size limit (SQLite's default is 2 MB). The same limit bounds the
    /// memory of SQLite's sorter when [`SqliteStore::flush_keys`] sorts a transaction's ids (it
    /// spills sorted runs to temporary files beyond it), so the store's memory is at most about
    /// twice this, whatever the size of the run. Durability is unchanged (rollback journal,
    /// `synchronous=FULL`).
    pub fn set_cache_limit(&mut self, bytes: u64) -> Result<()> {
        // A negative cache_size is a limit in KiB.
        let kib = i64::try_from(bytes / 1024).unwrap_or(i64::MAX);
        self.conn.pragma_update(None, "cache_size", -kib)?;
        Ok(())
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory()?;
        register_functions(&conn)?;
        let mut s = SqliteStore {
            conn,
            unkeyed: [None; 2],
        };
        s.migrate()?;
        Ok(s)
    }

    /// The schema version (number of migrations applied).
    pub fn version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// A [`Writer`] on this store: the per-change writes with their statements held for as
    /// long as it lives. The store's own methods for those writes take one per call.
    pub fn writer(&mut self) -> Writer<'_> {
        Writer {
            conn: &self.conn,
            unkeyed: &mut self.unkeyed,
            held: Default::default(),
            submitted: None,
            unstored: None,
        }
    }

    fn flush_keys(&mut self) -> Result<()> {
        flush_keys(&self.conn, &mut self.unkeyed)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = MIGRATIONS.len() as i64;
        let found = self.version()?;
        if found > known {
            return Err(StoreError::TooNew { found, known });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// Files the ids of the rows written since the last flush (`unkeyed`, see [`SqliteStore`]) into
/// the key tables, sorted, in one statement per table. Called before every lookup by change id
/// and at commit.
///
/// Why: an id is a SHA-256, so ids arrive in random order, and inserting each one as its row is
/// written touches a random page of a B-tree that grows with the store. Sorted, a transaction's
/// ids go in as one ordered pass over that tree (SQLite's sorter holds at most the page cache's
/// size in memory and spills the rest to temporary files), so a run costs time in proportion
/// to what it writes. SQLite gives a new row the largest rowid plus one, so "rowid >= the first
/// unkeyed" is exactly the unkeyed rows. An id recorded twice is refused here, by the key's
/// uniqueness, with the same constraint error an insert used to raise; the transaction then
/// fails to commit.
///
/// `OR FAIL`, not the default `ABORT`: the error is the same, but an `ABORT` statement that
/// writes many rows needs SQLite's statement journal (to undo its own rows), which copies every
/// page of the key tables it changes that existed before it, at each commit of a run on a
/// filled store. A refused id fails the run's transaction anyway, which the caller rolls back
/// whole, so the rows a failed statement leaves are never committed.
fn flush_keys(conn: &Connection, unkeyed: &mut [Option<i64>; 2]) -> Result<()> {
    for (table, sql) in KEYED.iter().enumerate() {
        if let Some(from) = unkeyed[table] {
            conn.prepare_cached(sql)?.execute([from])?;
            unkeyed[table] = None;
        }
    }
    Ok(())
}

/// Rolls back the open transaction, if any, and forgets its unkeyed rows.
fn rollback(conn: &Connection, unkeyed: &mut [Option<i64>; 2]) -> Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    *unkeyed = [None; 2];
    Ok(())
}

/// The store's writes of each change (its row, its transaction and log, its member's
/// enrollment row), with their prepared statements held: [`SqliteStore::writer`]. Each method
/// writes what the [`Store`] method of the same name writes, with the same statements; the
/// store's methods are these, on a writer of their own.
///
/// Why: rusqlite's `prepare_cached` finds a statement by hashing its SQL text, copies the text
/// into a new key, and hashes it again to put the statement back when it is dropped: several
/// times per change, about 2 % of a run's instructions. The run takes one writer per chunk of
/// changes it records, so each statement is looked up once per chunk.
pub struct Writer<'s> {
    conn: &'s Connection,
    unkeyed: &'s mut [Option<i64>; 2],
    /// The statements of [`HELD`], each prepared when first used.
    held: [Option<CachedStatement<'s>>; HELD.len()],
    /// The values bound last to the parameters of [`Writer::insert_submitted`]'s statements
    /// that are the same for every change of a run, if they are still bound.
    submitted: Option<SubmittedFixed>,
    /// Likewise for [`Writer::insert_change_unstored`]'s: the run and the file.
    unstored: Option<(i64, Option<i64>)>,
}

/// What a run's submitted changes share in their rows: the day, the run, the log's reasons.
///
/// Why: each is bound once per writer (a chunk of changes) and stays bound from row to row
/// (SQLite keeps a statement's bindings when it is reset; rusqlite clears them only when the
/// statement goes back to its cache), instead of once per change: SQLite copies every text
/// bound, and the day was formatted anew for each change.
struct SubmittedFixed {
    date: NaiveDate,
    run_id: i64,
    received: String,
    at: String,
    reason: String,
}

impl SubmittedFixed {
    fn is(&self, date: NaiveDate, run_id: i64, received: &str, at: &str, reason: &str) -> bool {
        self.date == date
            && self.run_id == run_id
            && self.received == received
            && self.at == at
            && self.reason == reason
    }
}

impl<'s> Writer<'s> {
    /// Statement `i` of [`HELD`].
    fn stmt(&mut self, i: usize) -> Result<&mut CachedStatement<'s>> {
        let st = match self.held[i].take() {
            Some(st) => st,
            None => self.conn.prepare_cached(HELD[i])?,
        };
        Ok(self.held[i].insert(st))
    }

    /// Runs statement `insert`, one row into `table` (`CHANGES` or `TRANSACTIONS`), and notes
    /// the row as not yet in the table's key table. Outside an explicit transaction the row and
    /// its key are written in one transaction of their own, so that no row is ever committed
    /// without its key and a repeated id leaves nothing behind, as the old unique key did.
    fn insert_keyed(
        &mut self,
        table: usize,
        insert: usize,
        params: impl rusqlite::Params,
    ) -> Result<()> {
        self.insert_keyed_with(table, insert, |st| st.execute(params))
    }

    /// [`Writer::insert_keyed`], the statement run by `exec` (its parameters bound by hand).
    fn insert_keyed_with(
        &mut self,
        table: usize,
        insert: usize,
        exec: impl FnOnce(&mut CachedStatement<'s>) -> rusqlite::Result<usize>,
    ) -> Result<()> {
        let own = self.conn.is_autocommit();
        if own {
            self.conn.execute_batch("BEGIN")?;
        }
        let done = self.insert_keyed_in(table, insert, exec, own);
        if done.is_err() && own {
            rollback(self.conn, self.unkeyed)?;
        }
        done
    }

    fn insert_keyed_in(
        &mut self,
        table: usize,
        insert: usize,
        exec: impl FnOnce(&mut CachedStatement<'s>) -> rusqlite::Result<usize>,
        own: bool,
    ) -> Result<()> {
        exec(self.stmt(insert)?)?;
        if self.unkeyed[table].is_none() {
            self.unkeyed[table] = Some(self.conn.last_insert_rowid());
        }
        if own {
            flush_keys(self.conn, self.unkeyed)?;
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    /// Writes member `e`'s enrollment row with one of the `UPSERT_MEMBER*` statements, which
    /// differ only in what they update when the member already has a row.
    fn upsert_member(&mut self, e: &Enrolled, upsert: usize) -> Result<()> {
        let data = serde_json::to_string(&e.data)?;
        self.stmt(upsert)?.execute(params![
            e.group_id,
            e.member_id,
            e.subscriber_id,
            e.relationship.label(),
            e.active,
            data
        ])?;
        Ok(())
    }

    /// [`Store::member`].
    pub fn member(&mut self, group_id: &str, member_id: &str) -> Result<Option<Enrolled>> {
        let row = self
            .stmt(SELECT_MEMBER)?
            .query_row([group_id, member_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()?;
        match row {
            None => Ok(None),
            Some((s, rel, active, data)) => Ok(Some(Enrolled {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
                subscriber_id: s,
                relationship: relationship_from(&rel),
                active,
                data: serde_json::from_str(&data)?,
            })),
        }
    }

    /// [`Store::put_member`].
    pub fn put_member(&mut self, e: &Enrolled) -> Result<()> {
        self.upsert_member(e, UPSERT_MEMBER)
    }

    /// [`Store::set_member`].
    pub fn set_member(&mut self, new: &Enrolled, replace_data: bool) -> Result<()> {
        // One upsert; the conflict branch updates only what the change moves.
        let upsert = if replace_data {
            UPSERT_MEMBER_STATE
        } else {
            UPSERT_MEMBER_ACTIVE
        };
        self.upsert_member(new, upsert)
    }

    /// [`Writer::set_member`] of the row [`crate::fullfile::apply`] gives change `r` of group
    /// `group_id` when the store has none and the change sets the member's state
    /// ([`crate::fullfile::Update::Set`]): `active`, and `data`, the JSON of `r.new` (as
    /// serde_json writes it), when the change replaces the member's data.
    ///
    /// Why: the run has the record's JSON already, `new` within it; building the row cloned
    /// the member's data only to serialize it again (about a tenth of the upsert's cost).
    pub fn set_member_of(
        &mut self,
        group_id: &str,
        r: &ChangeRecord,
        active: bool,
        data: Option<&str>,
    ) -> Result<()> {
        let upsert = if data.is_some() {
            UPSERT_MEMBER_STATE
        } else {
            UPSERT_MEMBER_ACTIVE
        };
        self.stmt(upsert)?.execute(params![
            group_id,
            r.member_id,
            r.subscriber_id,
            r.relationship.label(),
            active,
            data.unwrap_or(EMPTY_DATA)
        ])?;
        Ok(())
    }

    /// [`Store::insert_change_json`].
    pub fn insert_change_json(
        &mut self,
        r: &ChangeRecord,
        json: &str,
        run_id: i64,
        file_id: Option<i64>,
        hold_id: Option<i64>,
    ) -> Result<()> {
        self.insert_keyed(
            CHANGES,
            INSERT_CHANGE_JSON,
            params![
                IdParam::new(&r.change_id),
                run_id,
                file_id,
                hold_id,
                r.kind.label(),
                r.group_id,
                r.member_id,
                json
            ],
        )
    }

    /// [`Store::insert_change_unstored`].
    pub fn insert_change_unstored(
        &mut self,
        r: &ChangeRecord,
        run_id: i64,
        file_id: Option<i64>,
        batch_offset: Option<u64>,
    ) -> Result<()> {
        let offset = batch_offset
            .map(|o| {
                i64::try_from(o).map_err(|_| StoreError::BatchRecord {
                    change_id: r.change_id.clone(),
                    file: format!("run {run_id}'s batch"),
                    offset: i64::MAX,
                    why: "offset out of range".into(),
                })
            })
            .transpose()?;
        // The run and the file stay bound from row to row (see `SubmittedFixed`).
        if self.unstored != Some((run_id, file_id)) {
            self.unstored = None;
            let st = self.stmt(INSERT_CHANGE_UNSTORED)?;
            st.raw_bind_parameter(2, run_id)?;
            st.raw_bind_parameter(3, file_id)?;
            self.unstored = Some((run_id, file_id));
        }
        self.insert_keyed_with(CHANGES, INSERT_CHANGE_UNSTORED, |st| {
            st.raw_bind_parameter(1, IdParam::new(&r.change_id))?;
            st.raw_bind_parameter(4, r.kind.label())?;
            st.raw_bind_parameter(5, &r.group_id)?;
            st.raw_bind_parameter(6, &r.member_id)?;
            st.raw_bind_parameter(7, offset)?;
            st.raw_execute()
        })
    }

    /// [`Store::insert_transaction`].
    pub fn insert_transaction(
        &mut self,
        r: &ChangeRecord,
        status: TransactionStatus,
        date: NaiveDate,
        run_id: i64,
        reason: &str,
    ) -> Result<()> {
        let id = IdParam::new(&r.change_id);
        let date = date.to_string();
        self.insert_keyed(
            TRANSACTIONS,
            INSERT_TRANSACTION,
            params![
                id,
                r.group_id,
                r.member_id,
                r.kind.label(),
                status.as_str(),
                date,
                run_id
            ],
        )?;
        self.stmt(LOG_FIRST)?
            .execute(params![id, status.as_str(), date, reason])?;
        Ok(())
    }

    /// [`Store::insert_submitted`].
    pub fn insert_submitted(
        &mut self,
        r: &ChangeRecord,
        date: NaiveDate,
        run_id: i64,
        received: &str,
        at: &str,
        reason: &str,
    ) -> Result<()> {
        // The row as insert_transaction, set_status and set_batch leave it, written once;
        // then the log's two moves, in the order (so with the rowids) those calls give them,
        // in one statement (`LOG_SUBMITTED`). What every change of the run shares stays bound
        // from change to change (`SubmittedFixed`).
        if !self
            .submitted
            .as_ref()
            .is_some_and(|f| f.is(date, run_id, received, at, reason))
        {
            self.submitted = None;
            let day = date.to_string();
            let st = self.stmt(INSERT_SUBMITTED)?;
            st.raw_bind_parameter(5, &day)?;
            st.raw_bind_parameter(6, run_id)?;
            let log = self.stmt(LOG_SUBMITTED)?;
            log.raw_bind_parameter(2, &day)?;
            log.raw_bind_parameter(3, received)?;
            log.raw_bind_parameter(4, at)?;
            log.raw_bind_parameter(5, reason)?;
            self.submitted = Some(SubmittedFixed {
                date,
                run_id,
                received: received.to_string(),
                at: at.to_string(),
                reason: reason.to_string(),
            });
        }
        let id = IdParam::new(&r.change_id);
        self.insert_keyed_with(TRANSACTIONS, INSERT_SUBMITTED, |st| {
            st.raw_bind_parameter(1, &id)?;
            st.raw_bind_parameter(2, &r.group_id)?;
            st.raw_bind_parameter(3, &r.member_id)?;
            st.raw_bind_parameter(4, r.kind.label())?;
            st.raw_execute()
        })?;
        let log = self.stmt(LOG_SUBMITTED)?;
        log.raw_bind_parameter(1, &id)?;
        log.raw_execute()?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<()> {
        Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?)
    }
    fn commit(&mut self) -> Result<()> {
        self.flush_keys()?;
        Ok(self.conn.execute_batch("COMMIT")?)
    }
    fn rollback(&mut self) -> Result<()> {
        rollback(&self.conn, &mut self.unkeyed)
    }

    fn create_run(&mut self, started: &str, as_of: NaiveDate) -> Result<i64> {
        self.conn
            .prepare_cached("INSERT INTO runs (started, as_of, status) VALUES (?1, ?2, 'open')")?
            .execute(params![started, as_of.to_string()])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn open_run(&mut self) -> Result<Option<RunRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, started, as_of, status, counts FROM runs WHERE status = 'open' ORDER BY id LIMIT 1",
                [],
                run_row,
            )
            .optional()?)
    }

    fn set_run(&mut self, id: i64, status: &str, counts: &serde_json::Value) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE runs SET status = ?2, counts = ?3 WHERE id = ?1")?
            .execute(params![id, status, counts.to_string()])?;
        Ok(())
    }

    fn runs(&mut self) -> Result<Vec<RunRow>> {
        let mut st = self
            .conn
            .prepare("SELECT id, started, as_of, status, counts FROM runs ORDER BY id")?;
        let rows = st
            .query_map([], run_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn insert_file(&mut self, f: &FileRow) -> Result<i64> {
        self.conn.prepare_cached("INSERT INTO files (run_id, name, path, sha256, kind, sender, isa13, isa13_base, gs06_base, duplicate_of, status, changes, archived)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")?.execute(
            params![
                f.run_id, f.name, f.path, f.sha256, f.kind, f.sender, f.isa13, f.isa13_base,
                f.gs06_base, f.duplicate_of, f.status, f.changes, f.archived
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn file_by_sha(&mut self, sha256: &str) -> Result<Option<FileRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {FILE_COLS} FROM files WHERE sha256 = ?1 AND duplicate_of IS NULL ORDER BY id LIMIT 1"),
                [sha256],
                file_row,
            )
            .optional()?)
    }

    fn file_by_interchange(&mut self, sender: &str, isa13: &str) -> Result<Option<FileRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {FILE_COLS} FROM files WHERE sender = ?1 AND isa13 = ?2 AND duplicate_of IS NULL ORDER BY id LIMIT 1"),
                [sender, isa13],
                file_row,
            )
            .optional()?)
    }

    fn run_files(&mut self, run_id: i64) -> Result<Vec<FileRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {FILE_COLS} FROM files WHERE run_id = ?1 ORDER BY id"
        ))?;
        let rows = st
            .query_map([run_id], file_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn set_file_status(&mut self, id: i64, status: &str, changes: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE files SET status = ?2, changes = ?3 WHERE id = ?1")?
            .execute(params![id, status, changes])?;
        Ok(())
    }

    fn unarchived_files(&mut self) -> Result<Vec<FileRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {FILE_COLS} FROM files WHERE archived = 0 AND run_id IN (SELECT id FROM runs WHERE status <> 'open') ORDER BY id"
        ))?;
        let rows = st
            .query_map([], file_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn set_archived(&mut self, id: i64) -> Result<()> {
        self.conn
            .execute("UPDATE files SET archived = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    fn reserve(&mut self, counter: &str, n: u32) -> Result<u32> {
        let cur: Option<u32> = self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                [counter],
                |r| r.get(0),
            )
            .optional()?;
        let first = cur.unwrap_or(1);
        let mut next = first.wrapping_add(n);
        if next >= 1_000_000_000 {
            next = 1;
        }
        self.conn.prepare_cached("INSERT INTO counters (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value")?.execute(
            params![counter, next],
        )?;
        Ok(first)
    }

    fn enrollment(&mut self, group_id: &str) -> Result<Vec<Enrolled>> {
        let mut st = self.conn.prepare(
            "SELECT group_id, member_id, subscriber_id, relationship, active, data FROM enrollment WHERE group_id = ?1 ORDER BY member_id",
        )?;
        let rows = st
            .query_map([group_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(g, m, s, rel, active, data)| {
                Ok(Enrolled {
                    group_id: g,
                    member_id: m,
                    subscriber_id: s,
                    relationship: relationship_from(&rel),
                    active,
                    data: serde_json::from_str(&data)?,
                })
            })
            .collect()
    }

    fn active_members(&mut self, group_id: &str) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT member_id FROM enrollment WHERE group_id = ?1 AND active ORDER BY member_id",
        )?;
        let ids = st
            .query_map([group_id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ids)
    }

    fn member(&mut self, group_id: &str, member_id: &str) -> Result<Option<Enrolled>> {
        self.writer().member(group_id, member_id)
    }

    fn put_member(&mut self, e: &Enrolled) -> Result<()> {
        self.writer().put_member(e)
    }

    fn set_member(&mut self, new: &Enrolled, replace_data: bool) -> Result<()> {
        self.writer().set_member(new, replace_data)
    }

    fn insert_change_json(
        &mut self,
        r: &ChangeRecord,
        json: &str,
        run_id: i64,
        file_id: Option<i64>,
        hold_id: Option<i64>,
    ) -> Result<()> {
        self.writer()
            .insert_change_json(r, json, run_id, file_id, hold_id)
    }

    fn insert_change_unstored(
        &mut self,
        r: &ChangeRecord,
        run_id: i64,
        file_id: Option<i64>,
        batch_offset: Option<u64>,
    ) -> Result<()> {
        self.writer()
            .insert_change_unstored(r, run_id, file_id, batch_offset)
    }

    fn set_run_batch(&mut self, run_id: i64, path: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE runs SET batch_file = ?2 WHERE id = ?1")?
            .execute(params![run_id, path])?;
        Ok(())
    }

    fn change(&mut self, change_id: &str) -> Result<Option<ChangeRecord>> {
        self.flush_keys()?;
        let row = self
            .conn
            .prepare_cached(&format!("SELECT {CHANGE_COLS} FROM change_keys k JOIN changes c ON c.rowid = k.row LEFT JOIN runs u ON u.id = c.run_id WHERE k.change_id = ?1"))?
            .query_row([IdParam::new(change_id)], stored_change)
            .optional()?;
        row.map(StoredChange::record).transpose()
    }

    fn held_changes(&mut self, hold_id: i64) -> Result<Vec<ChangeRecord>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {CHANGE_COLS} FROM changes c LEFT JOIN runs u ON u.id = c.run_id WHERE c.hold_id = ?1 ORDER BY c.rowid"
        ))?;
        let rows = st
            .query_map([hold_id], stored_change)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(StoredChange::record).collect()
    }

    fn insert_transaction(
        &mut self,
        r: &ChangeRecord,
        status: TransactionStatus,
        date: NaiveDate,
        run_id: i64,
        reason: &str,
    ) -> Result<()> {
        self.writer()
            .insert_transaction(r, status, date, run_id, reason)
    }

    fn set_status(
        &mut self,
        change_id: &str,
        to: TransactionStatus,
        at: &str,
        reason: &str,
    ) -> Result<()> {
        self.flush_keys()?;
        let id = IdParam::new(change_id);
        let found: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT t.rowid, t.status FROM transaction_keys k JOIN transactions t ON t.rowid = k.row WHERE k.change_id = ?1")?
            .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (row, from) = match found {
            Some((row, f)) => (row, status_from(&f)?),
            None => return Err(StoreError::NotFound(change_id.to_string())),
        };
        if !from.can_become(to) {
            return Err(StoreError::Transition {
                change_id: change_id.to_string(),
                from,
                to,
            });
        }
        self.conn
            .prepare_cached("UPDATE transactions SET status = ?2 WHERE rowid = ?1")?
            .execute(params![row, to.as_str()])?;
        self.conn.prepare_cached("INSERT INTO transaction_log (change_id, from_status, to_status, at, reason) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(
            params![id, from.as_str(), to.as_str(), at, reason],
        )?;
        Ok(())
    }

    fn set_batch(&mut self, change_id: &str, run_id: i64) -> Result<()> {
        self.flush_keys()?;
        self.conn
            .prepare_cached("UPDATE transactions SET batch_run_id = ?2 WHERE rowid = (SELECT row FROM transaction_keys WHERE change_id = ?1)")?
            .execute(params![IdParam::new(change_id), run_id])?;
        Ok(())
    }

    fn insert_submitted(
        &mut self,
        r: &ChangeRecord,
        date: NaiveDate,
        run_id: i64,
        received: &str,
        at: &str,
        reason: &str,
    ) -> Result<()> {
        self.writer()
            .insert_submitted(r, date, run_id, received, at, reason)
    }

    fn transactions(&mut self, f: &TransactionFilter) -> Result<Vec<TransactionRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {TX_COLS} FROM transactions WHERE (?1 IS NULL OR group_id = ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR member_id = ?3) ORDER BY transaction_date, rowid"
        ))?;
        let rows = st
            .query_map(
                params![f.group, f.status.map(|s| s.as_str()), f.member],
                tx_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn unbatched(&mut self, status: TransactionStatus) -> Result<Vec<TransactionRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {TX_COLS} FROM transactions WHERE status = ?1 AND batch_run_id IS NULL ORDER BY transaction_date, rowid"
        ))?;
        let rows = st
            .query_map([status.as_str()], tx_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn purge(&mut self, before: NaiveDate) -> Result<u64> {
        self.flush_keys()?;
        let b = before.to_string();
        // Changes that never became a transaction (rejected by the rules, or in a hold that was
        // rejected) have no transaction date: they go by the day of the run that received
        // them. A change in a hold still undecided stays, whatever its age.
        // One pass over `changes` (the runs' set first: no index on `run_id` is needed), and a
        // key lookup only for the rows of old runs.
        const NEVER_SUBMITTED: &str = "FROM changes c
            WHERE c.run_id IN (SELECT id FROM runs WHERE as_of < ?1)
              AND NOT EXISTS (SELECT 1 FROM transaction_keys k WHERE k.change_id = c.change_id)
              AND (c.hold_id IS NULL OR c.hold_id IN (SELECT id FROM holds WHERE status <> 'held'))";
        self.conn
            .prepare_cached(&format!(
                "DELETE FROM change_keys WHERE change_id IN (SELECT c.change_id {NEVER_SUBMITTED})"
            ))?
            .execute([&b])?;
        let never = self
            .conn
            .prepare_cached(&format!(
                "DELETE FROM changes WHERE rowid IN (SELECT c.rowid {NEVER_SUBMITTED})"
            ))?
            .execute([&b])?;
        self.conn.prepare_cached("DELETE FROM transaction_log WHERE change_id IN (SELECT change_id FROM transactions WHERE transaction_date < ?1)")?.execute(
            [&b],
        )?;
        self.conn.prepare_cached("DELETE FROM changes WHERE rowid IN (SELECT row FROM change_keys WHERE change_id IN (SELECT change_id FROM transactions WHERE transaction_date < ?1))")?.execute(
            [&b],
        )?;
        self.conn.prepare_cached("DELETE FROM change_keys WHERE change_id IN (SELECT change_id FROM transactions WHERE transaction_date < ?1)")?.execute(
            [&b],
        )?;
        self.conn.prepare_cached("DELETE FROM transaction_keys WHERE change_id IN (SELECT change_id FROM transactions WHERE transaction_date < ?1)")?.execute(
            [&b],
        )?;
        let n = self
            .conn
            .prepare_cached("DELETE FROM transactions WHERE transaction_date < ?1")?
            .execute([&b])?;
        Ok((n + never) as u64)
    }

    fn insert_hold(
        &mut self,
        file_id: i64,
        run_id: i64,
        group_id: &str,
        active: i64,
        terminations: i64,
    ) -> Result<i64> {
        self.conn.prepare_cached("INSERT INTO holds (file_id, run_id, group_id, active, terminations, status) VALUES (?1, ?2, ?3, ?4, ?5, 'held')")?.execute(
            params![file_id, run_id, group_id, active, terminations],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn holds(&mut self) -> Result<Vec<HoldRow>> {
        let mut st = self.conn.prepare(&format!("{HOLD_SELECT} ORDER BY h.id"))?;
        let rows = st
            .query_map([], hold_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn hold(&mut self, id: i64) -> Result<Option<HoldRow>> {
        Ok(self
            .conn
            .query_row(&format!("{HOLD_SELECT} WHERE h.id = ?1"), [id], hold_row)
            .optional()?)
    }

    fn set_hold(&mut self, id: i64, status: &str, at: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE holds SET status = ?2, decided = ?3 WHERE id = ?1")?
            .execute(params![id, status, at])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::{ChangeKind, SourceTrace, SCHEMA_VERSION};
    use TransactionStatus::*;

    fn rec(member: &str) -> ChangeRecord {
        ChangeRecord {
            schema: SCHEMA_VERSION.into(),
            change_id: String::new(),
            kind: ChangeKind::AddSubscriber,
            effective_date: None,
            group_id: Some("G1".into()),
            division: None,
            subscriber_id: member.into(),
            member_id: member.into(),
            relationship: Relationship::SelfSubscriber,
            reason: None,
            new: MemberData::default(),
            old: None,
            source: SourceTrace::X12 {
                file: "f".into(),
                isa13: "1".into(),
                gs06: "1".into(),
                st02: "1".into(),
                first_segment: 1,
                last_segment: 2,
            },
            broker_license: None,
            status: None,
            invoice_period: None,
        }
        .seal()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn statuses_written_in_the_sql_are_the_labels() {
        // `HELD`'s statements for submitted changes write these labels as SQL literals.
        assert_eq!(Pending.as_str(), "Pending");
        assert_eq!(Submitted.as_str(), "Submitted");
        assert!(HELD[INSERT_SUBMITTED].contains("'Submitted'"));
        assert!(HELD[LOG_SUBMITTED]
            .contains("(?1, NULL, 'Pending', ?2, ?3), (?1, 'Pending', 'Submitted', ?4, ?5)"));
    }

    #[test]
    fn the_empty_data_written_is_what_serde_json_writes() {
        assert_eq!(
            serde_json::to_string(&crate::enrollment::MemberData::default()).unwrap(),
            EMPTY_DATA
        );
    }

    #[test]
    fn migrations_set_the_schema_version_and_reopen_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
    }

    /// A store left in WAL mode by an older eligo opens in rollback-journal mode, its rows
    /// (and those still only in its WAL) kept.
    #[test]
    fn a_wal_store_is_converted_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute(
            "INSERT INTO runs (started, as_of, status) VALUES ('t', '2025-01-10', 'done')",
            [],
        )
        .unwrap();
        // What a killed process leaves: the database and its WAL, copied while still open.
        let q = dir.path().join("copy.db");
        std::fs::copy(&p, &q).unwrap();
        std::fs::copy(dir.path().join("s.db-wal"), dir.path().join("copy.db-wal")).unwrap();
        drop(c);
        let mut s = SqliteStore::open(&q).unwrap();
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "truncate");
        assert_eq!(s.runs().unwrap().len(), 1);
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        drop(SqliteStore::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(
            SqliteStore::open(&p),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    #[test]
    fn counters_reserve_consecutive_blocks() {
        let mut s = SqliteStore::in_memory().unwrap();
        assert_eq!(s.reserve("isa13", 3).unwrap(), 1);
        assert_eq!(s.reserve("isa13", 2).unwrap(), 4);
        assert_eq!(s.reserve("gs06", 1).unwrap(), 1);
    }

    #[test]
    fn rollback_leaves_nothing() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.begin().unwrap();
        s.create_run("t", d("2025-01-10")).unwrap();
        s.rollback().unwrap();
        assert!(s.runs().unwrap().is_empty());
    }

    #[test]
    fn every_lifecycle_transition_is_logged_and_wrong_ones_refused() {
        let mut s = SqliteStore::in_memory().unwrap();
        let run = s.create_run("t", d("2025-01-10")).unwrap();
        let cases = [
            (Pending, Submitted),
            (Submitted, Completed),
            (Incomplete, Pending),
            (PendingFhs, Pending),
            (PendingFhs, Withdrawn),
        ];
        for (i, (from, to)) in cases.iter().enumerate() {
            let r = rec(&format!("M{i}"));
            s.insert_change(&r, run, None, None).unwrap();
            s.insert_transaction(&r, *from, d("2025-01-10"), run, "test")
                .unwrap();
            s.set_status(&r.change_id, *to, "2025-01-11", "test")
                .unwrap();
            let f = TransactionFilter {
                member: Some(format!("M{i}")),
                ..Default::default()
            };
            assert_eq!(s.transactions(&f).unwrap()[0].status, *to);
        }
        let r = rec("X");
        s.insert_transaction(&r, Completed, d("2025-01-10"), run, "test")
            .unwrap();
        assert!(matches!(
            s.set_status(&r.change_id, Pending, "x", "test"),
            Err(StoreError::Transition { .. })
        ));
        let log: i64 = s
            .conn
            .query_row("SELECT count(*) FROM transaction_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(log, 11);
    }

    /// Every row of the transaction tables, in rowid order.
    fn tx_tables(s: &SqliteStore) -> Vec<String> {
        let mut out = table_rows(&s.conn, "SELECT rowid, change_id, group_id, member_id, kind, status, transaction_date, run_id, batch_run_id FROM transactions ORDER BY rowid");
        out.extend(table_rows(&s.conn, "SELECT rowid, id, change_id, from_status, to_status, at, reason FROM transaction_log ORDER BY rowid"));
        out
    }

    /// The rows `sql` selects, each its values (debug-printed) joined by `|`.
    fn table_rows(c: &Connection, sql: &str) -> Vec<String> {
        let mut st = c.prepare(sql).unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        rows.map(|r| r.unwrap().join("|")).collect()
    }

    /// A store file at schema version `version` (its first migrations applied by hand, as an
    /// older eligo left it), not yet opened by the store: for the migration tests.
    fn store_at(version: usize) -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let c = Connection::open(&p).unwrap();
        for m in &MIGRATIONS[..version] {
            c.execute_batch(m).unwrap();
        }
        c.pragma_update(None, "user_version", version as i64)
            .unwrap();
        (dir, p, c)
    }

    /// The run's one-step "received and submitted" leaves exactly the rows of the three steps.
    #[test]
    fn insert_submitted_equals_insert_then_submit() {
        let mut fast = SqliteStore::in_memory().unwrap();
        let mut slow = SqliteStore::in_memory().unwrap();
        for s in [&mut fast, &mut slow] {
            let run = s.create_run("t", d("2025-01-10")).unwrap();
            let waiting = rec("W");
            s.insert_transaction(&waiting, PendingFhs, d("2025-01-10"), run, "received")
                .unwrap();
        }
        for m in ["A", "B"] {
            let r = rec(m);
            fast.insert_submitted(
                &r,
                d("2025-01-10"),
                1,
                "received",
                "2025-01-11T06:30:00",
                "batch run-000001",
            )
            .unwrap();
            slow.insert_transaction(&r, Pending, d("2025-01-10"), 1, "received")
                .unwrap();
            slow.set_status(
                &r.change_id,
                Submitted,
                "2025-01-11T06:30:00",
                "batch run-000001",
            )
            .unwrap();
            slow.set_batch(&r.change_id, 1).unwrap();
        }
        assert_eq!(tx_tables(&fast), tx_tables(&slow));
        assert_eq!(tx_tables(&fast).len(), 3 + 5);
    }

    /// A store written by the first schema (ids as `TEXT PRIMARY KEY`) upgrades in place: the
    /// same rows under the same rowids, and found by id.
    #[test]
    fn migration_2_keeps_rows_and_rowids_and_finds_them_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        let (a, b) = (rec("A"), rec("B"));
        for (rowid, r) in [(7, &a), (3, &b)] {
            c.execute(
                "INSERT INTO changes (rowid, change_id, run_id, kind, member_id, record) VALUES (?1, ?2, 1, 'k', ?3, ?4)",
                params![rowid, r.change_id, r.member_id, serde_json::to_string(r).unwrap()],
            )
            .unwrap();
            c.execute(
                "INSERT INTO transactions (rowid, change_id, member_id, kind, status, transaction_date, run_id) VALUES (?1, ?2, ?3, 'k', 'Pending', '2025-01-10', 1)",
                params![rowid, r.change_id, r.member_id],
            )
            .unwrap();
        }
        drop(c);
        let mut s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.change(&a.change_id).unwrap(), Some(a.clone()));
        assert_eq!(s.change(&b.change_id).unwrap(), Some(b.clone()));
        s.set_status(&b.change_id, Submitted, "x", "t").unwrap();
        let rows: Vec<(i64, String, String)> = s
            .conn
            .prepare("SELECT rowid, member_id, status FROM transactions ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            rows,
            [
                (3, "B".to_string(), "Submitted".to_string()),
                (7, "A".to_string(), "Pending".to_string())
            ]
        );
    }

    /// A store written at version 3 (ids as 64-character hex TEXT) upgrades in place: its ids
    /// become 32-byte BLOBs, except one that is not lowercase hex, which stays as it was; every
    /// change, transaction and log row reads back as before, found by id; a repeated id is
    /// still refused.
    #[test]
    fn migration_4_stores_hex_ids_as_blobs_and_reads_everything_back() {
        let (dir, p, c) = store_at(3);
        let (kept, in_batch, rejected) = (rec("KEPT"), rec("BATCH"), rec("REJ"));
        let odd = ChangeRecord {
            change_id: "LEGACY-Id".into(),
            ..rec("ODD")
        };
        let line = serde_json::to_string(&in_batch).unwrap();
        let batch = dir.path().join("run-000001.changes.jsonl");
        std::fs::write(&batch, format!("{line}\n")).unwrap();
        c.execute(
            "INSERT INTO runs (started, as_of, status, batch_file) VALUES ('t', '2025-01-10', 'done', ?1)",
            [batch.to_string_lossy()],
        )
        .unwrap();
        // The rows version 3 wrote: a waiting change with its JSON, one in the batch, a
        // rejected one, and one under an id that is not a SHA-256.
        let rows: [(&ChangeRecord, String, Option<i64>); 4] = [
            (&kept, serde_json::to_string(&kept).unwrap(), None),
            (&in_batch, String::new(), Some(0)),
            (&rejected, String::new(), None),
            (&odd, serde_json::to_string(&odd).unwrap(), None),
        ];
        for (r, record, offset) in &rows {
            c.execute(
                "INSERT INTO changes (change_id, run_id, kind, group_id, member_id, record, batch_offset) VALUES (?1, 1, 'add_subscriber', 'G1', ?2, ?3, ?4)",
                params![r.change_id, r.member_id, record, offset],
            )
            .unwrap();
        }
        for (r, status) in [(&kept, PendingFhs), (&in_batch, Submitted), (&odd, Pending)] {
            let status = status.as_str();
            c.execute(
                "INSERT INTO transactions (change_id, group_id, member_id, kind, status, transaction_date, run_id) VALUES (?1, 'G1', ?2, 'add_subscriber', ?3, '2025-01-10', 1)",
                params![r.change_id, r.member_id, status],
            )
            .unwrap();
            c.execute(
                "INSERT INTO transaction_log (change_id, from_status, to_status, at, reason) VALUES (?1, NULL, ?2, '2025-01-10', 'received')",
                params![r.change_id, status],
            )
            .unwrap();
        }
        c.execute_batch(
            "INSERT INTO change_keys SELECT change_id, rowid FROM changes ORDER BY change_id;
             INSERT INTO transaction_keys SELECT change_id, rowid FROM transactions ORDER BY change_id;",
        )
        .unwrap();
        let before = tx_tables(&SqliteStore {
            conn: c,
            unkeyed: [None; 2],
        });

        let mut s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        let types: Vec<String> = s
            .conn
            .prepare("SELECT typeof(change_id) FROM change_keys ORDER BY change_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(types, ["text", "blob", "blob", "blob"]);
        // The rows of the old store, under the same rowids, each id now its bytes.
        let as_text = |row: &String| {
            [&kept, &in_batch, &odd].iter().fold(row.clone(), |row, r| {
                let IdParam::Sha(b) = IdParam::new(&r.change_id) else {
                    return row;
                };
                row.replace(
                    &format!("{:?}", rusqlite::types::Value::Blob(b.to_vec())),
                    &format!("{:?}", rusqlite::types::Value::Text(r.change_id.clone())),
                )
            })
        };
        let after: Vec<String> = tx_tables(&s).iter().map(as_text).collect();
        assert_eq!(after, before);
        assert_ne!(tx_tables(&s), before);
        // The same rows, ids read back as the hex they were.
        let shown = |s: &SqliteStore| -> Vec<String> {
            let mut st = s
                .conn
                .prepare("SELECT change_id FROM transaction_log ORDER BY rowid")
                .unwrap();
            st.query_map([], |r| r.get::<_, StoredId>(0).map(|i| i.0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(
            shown(&s),
            [kept.change_id.as_str(), &in_batch.change_id, &odd.change_id]
        );
        let ids: Vec<String> = s
            .transactions(&TransactionFilter::default())
            .unwrap()
            .into_iter()
            .map(|t| t.change_id)
            .collect();
        assert_eq!(
            ids,
            [kept.change_id.as_str(), &in_batch.change_id, &odd.change_id]
        );
        assert_eq!(
            s.unbatched(PendingFhs).unwrap()[0].change_id,
            kept.change_id
        );
        assert_eq!(s.change(&kept.change_id).unwrap(), Some(kept.clone()));
        assert_eq!(
            s.change(&in_batch.change_id).unwrap(),
            Some(in_batch.clone())
        );
        assert_eq!(s.change(&odd.change_id).unwrap(), Some(odd.clone()));
        assert!(matches!(
            s.change(&rejected.change_id),
            Err(StoreError::NotKept(_))
        ));
        // Found by id for a move, and the old rows are not found under their hex text.
        s.set_status(&kept.change_id, Pending, "x", "fhs").unwrap();
        s.set_status(&odd.change_id, Submitted, "x", "t").unwrap();
        s.set_batch(&odd.change_id, 1).unwrap();
        let text: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM changes WHERE change_id = ?1",
                [&kept.change_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(text, 0);
        assert!(s.insert_change(&kept, 2, None, None).is_err());
        assert!(s.insert_change(&odd, 2, None, None).is_err());
        assert!(s
            .insert_transaction(&in_batch, Pending, d("2025-01-11"), 2, "t")
            .is_err());
        assert_eq!(tx_tables(&s).len(), before.len() + 2);
        // The three transactions, and the rejected change (never a transaction) by its run's day.
        assert_eq!(s.purge(d("2025-02-01")).unwrap(), 4);
        assert!(matches!(s.change(&rejected.change_id), Ok(None)));
        assert!(s
            .transactions(&TransactionFilter::default())
            .unwrap()
            .is_empty());
    }

    /// Ids written in an open transaction are found before it commits, and an id recorded
    /// twice is refused: at commit inside a transaction, at once outside one, leaving nothing.
    #[test]
    fn ids_are_found_before_commit_and_a_repeated_id_is_refused() {
        let mut s = SqliteStore::in_memory().unwrap();
        let (a, b) = (rec("A"), rec("B"));
        s.begin().unwrap();
        s.insert_change(&a, 1, None, None).unwrap();
        s.insert_transaction(&a, Pending, d("2025-01-10"), 1, "t")
            .unwrap();
        assert_eq!(s.change(&a.change_id).unwrap(), Some(a.clone()));
        s.insert_change(&b, 1, None, None).unwrap();
        s.insert_submitted(&b, d("2025-01-10"), 1, "r", "x", "t")
            .unwrap();
        s.set_status(&a.change_id, Submitted, "x", "t").unwrap();
        s.set_batch(&a.change_id, 1).unwrap();
        s.commit().unwrap();
        let all = s.transactions(&TransactionFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|t| t.status == Submitted));
        assert_eq!(all[0].batch_run_id, Some(1));

        assert!(s.insert_change(&a, 2, None, None).is_err());
        assert!(s
            .insert_transaction(&b, Pending, d("2025-01-11"), 2, "t")
            .is_err());
        let count = |s: &SqliteStore, t: &str| -> i64 {
            s.conn
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((count(&s, "changes"), count(&s, "change_keys")), (2, 2));
        assert_eq!(
            (count(&s, "transactions"), count(&s, "transaction_keys")),
            (2, 2)
        );

        s.begin().unwrap();
        s.insert_change(&a, 2, None, None).unwrap();
        assert!(s.commit().is_err());
        s.rollback().unwrap();
        assert_eq!(count(&s, "changes"), 2);
        s.begin().unwrap();
        s.insert_change(&rec("C"), 2, None, None).unwrap();
        s.commit().unwrap();
        assert_eq!((count(&s, "changes"), count(&s, "change_keys")), (3, 3));
    }

    /// A change recorded in its batch is read from the batch line, and only if that line is
    /// its record.
    #[test]
    fn a_change_in_a_batch_is_read_from_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (rec("A"), rec("B"));
        let (ja, jb) = (
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap(),
        );
        let file = dir.path().join("run-000001.changes.jsonl");
        std::fs::write(&file, format!("{ja}\n{jb}\n")).unwrap();
        let mut s = SqliteStore::in_memory().unwrap();
        let run = s.create_run("t", d("2025-01-10")).unwrap();
        s.set_run_batch(run, &file.to_string_lossy()).unwrap();
        s.insert_change_unstored(&a, run, None, Some(0)).unwrap();
        s.insert_change_unstored(&b, run, None, Some(ja.len() as u64 + 1))
            .unwrap();
        assert_eq!(s.change(&a.change_id).unwrap(), Some(a.clone()));
        assert_eq!(s.change(&b.change_id).unwrap(), Some(b.clone()));
        let stored: String = s
            .conn
            .query_row("SELECT group_concat(record, '') FROM changes", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, "");
        let rejected = rec("R");
        s.insert_change_unstored(&rejected, run, None, None)
            .unwrap();
        assert!(matches!(
            s.change(&rejected.change_id),
            Err(StoreError::NotKept(_))
        ));
        std::fs::write(&file, format!("{jb}\n{ja}\n")).unwrap();
        assert!(matches!(
            s.change(&a.change_id),
            Err(StoreError::BatchRecord { .. })
        ));
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(
            s.change(&b.change_id),
            Err(StoreError::BatchRecord { .. })
        ));
    }

    #[test]
    fn purge_removes_changes_never_submitted_by_their_run_day_except_in_an_open_hold() {
        let mut s = SqliteStore::in_memory().unwrap();
        let old_run = s.create_run("t", d("2022-01-10")).unwrap();
        let new_run = s.create_run("t", d("2025-01-10")).unwrap();
        let file = s
            .insert_file(&FileRow {
                id: 0,
                run_id: old_run,
                name: "f".into(),
                path: "f".into(),
                sha256: "00".into(),
                kind: "x12".into(),
                sender: None,
                isa13: None,
                isa13_base: 1,
                gs06_base: 1,
                duplicate_of: None,
                status: "held".into(),
                changes: 0,
                archived: false,
            })
            .unwrap();
        let open_hold = s.insert_hold(file, old_run, "G1", 10, 5).unwrap();
        let rejected_hold = s.insert_hold(file, old_run, "G1", 10, 5).unwrap();
        s.set_hold(rejected_hold, "rejected", "t").unwrap();
        let rejected_old = rec("REJECTED-OLD");
        let rejected_new = rec("REJECTED-NEW");
        let in_open_hold = rec("HELD");
        let in_rejected_hold = rec("HOLD-REJECTED");
        let submitted_old = rec("SUBMITTED-OLD");
        s.insert_change_unstored(&rejected_old, old_run, Some(file), None)
            .unwrap();
        s.insert_change_unstored(&rejected_new, new_run, Some(file), None)
            .unwrap();
        s.insert_change(&in_open_hold, old_run, Some(file), Some(open_hold))
            .unwrap();
        s.insert_change(&in_rejected_hold, old_run, Some(file), Some(rejected_hold))
            .unwrap();
        // Received long ago, but its transaction is recent (released late): it stays.
        s.insert_change(&submitted_old, old_run, Some(file), None)
            .unwrap();
        s.insert_transaction(&submitted_old, Submitted, d("2025-01-01"), old_run, "t")
            .unwrap();
        assert_eq!(s.purge(d("2023-01-10")).unwrap(), 2);
        let kept =
            |s: &mut SqliteStore, r: &ChangeRecord| !matches!(s.change(&r.change_id), Ok(None));
        assert!(!kept(&mut s, &rejected_old));
        assert!(!kept(&mut s, &in_rejected_hold));
        assert!(kept(&mut s, &rejected_new));
        assert!(kept(&mut s, &in_open_hold));
        assert!(kept(&mut s, &submitted_old));
        assert_eq!(
            s.held_changes(open_hold).unwrap(),
            vec![in_open_hold.clone()]
        );
        let rows: i64 = s
            .conn
            .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
            .unwrap();
        let keys: i64 = s
            .conn
            .query_row("SELECT count(*) FROM change_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!((rows, keys), (3, 3));
    }

    #[test]
    fn purge_removes_old_transactions_only() {
        let mut s = SqliteStore::in_memory().unwrap();
        let run = s.create_run("t", d("2025-01-10")).unwrap();
        let old = rec("OLD");
        let new = rec("NEW");
        s.insert_transaction(&old, Submitted, d("2022-01-01"), run, "t")
            .unwrap();
        s.insert_transaction(&new, Submitted, d("2025-01-01"), run, "t")
            .unwrap();
        s.insert_change(&old, run, None, None).unwrap();
        s.insert_change(&new, run, None, None).unwrap();
        assert_eq!(s.purge(d("2023-01-10")).unwrap(), 1);
        let all = s.transactions(&TransactionFilter::default()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].member_id, "NEW");
        assert_eq!(s.change(&old.change_id).unwrap(), None);
        assert_eq!(s.change(&new.change_id).unwrap(), Some(new.clone()));
        assert!(matches!(
            s.set_status(&old.change_id, Completed, "x", "t"),
            Err(StoreError::NotFound(_))
        ));
    }

    /// `set_member` leaves the row that reading it, `fullfile::apply` and `put_member` leave,
    /// for every change that updates without the row, on a stored member and on a new one.
    #[test]
    fn set_member_writes_what_apply_then_put_member_writes() {
        use crate::enrollment::PersonName;
        use crate::fullfile::{apply, update, Update};
        let named = |last: &str| MemberData {
            ssn: Some(last.into()),
            name: Some(PersonName {
                last: last.into(),
                first: None,
                middle: None,
                prefix: None,
                suffix: None,
            }),
            ..MemberData::default()
        };
        let (mut fast, mut slow) = (
            SqliteStore::in_memory().unwrap(),
            SqliteStore::in_memory().unwrap(),
        );
        let stored = Enrolled {
            group_id: "G1".into(),
            member_id: "M".into(),
            subscriber_id: "S".into(),
            relationship: Relationship::Spouse,
            active: true,
            data: named("STORED"),
        };
        for s in [&mut fast, &mut slow] {
            s.put_member(&stored).unwrap();
        }
        let kinds = [
            ChangeKind::TerminateMember,
            ChangeKind::AddSubscriber,
            ChangeKind::Reinstate,
            ChangeKind::Cancel,
            ChangeKind::MemberChange,
            ChangeKind::AddDependent,
            ChangeKind::Audit,
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            for member in ["M", &format!("NEW{i}")] {
                let r = ChangeRecord {
                    kind,
                    new: named(&format!("NEW{i}")),
                    ..rec(member)
                };
                let Update::Set { data, .. } = update(&r) else {
                    panic!("{kind:?} updates without the row");
                };
                fast.set_member(&apply(None, &r).unwrap(), data.is_some())
                    .unwrap();
                let cur = slow.member("G1", member).unwrap();
                slow.put_member(&apply(cur, &r).unwrap()).unwrap();
                assert_eq!(
                    fast.enrollment("G1").unwrap(),
                    slow.enrollment("G1").unwrap()
                );
            }
        }
        let m = fast.member("G1", "M").unwrap().unwrap();
        assert_eq!(
            (m.subscriber_id.as_str(), m.relationship),
            ("S", Relationship::Spouse)
        );
        assert_eq!(fast.enrollment("G1").unwrap().len(), 1 + kinds.len());
    }

    #[test]
    fn enrollment_round_trips() {
        let mut s = SqliteStore::in_memory().unwrap();
        let e = Enrolled {
            group_id: "G".into(),
            member_id: "M".into(),
            subscriber_id: "M".into(),
            relationship: Relationship::SelfSubscriber,
            active: true,
            data: MemberData::default(),
        };
        s.put_member(&e).unwrap();
        assert_eq!(s.member("G", "M").unwrap(), Some(e.clone()));
        let other = Enrolled {
            member_id: "A".into(),
            ..e.clone()
        };
        s.put_member(&other).unwrap();
        assert_eq!(s.active_members("G").unwrap(), vec!["A", "M"]);
        let mut off = e.clone();
        off.active = false;
        s.put_member(&off).unwrap();
        assert_eq!(s.enrollment("G").unwrap(), vec![other, off]);
        assert_eq!(s.active_members("G").unwrap(), vec!["A"]);
        assert!(s.active_members("H").unwrap().is_empty());
    }

    /// [`id_order`] orders ids as their bytes do (ties only between ids that share their first
    /// 8 bytes, which the sort then orders by the id), BLOB and TEXT alike.
    #[test]
    fn id_order_keys_follow_the_ids_bytes() {
        use rusqlite::types::ValueRef;
        let ids: [&[u8]; 10] = [
            b"",
            b"\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x7f\xff\xff\xff\xff\xff\xff\xff",
            b"\x80",
            b"\x80\x00\x00\x00\x00\x00\x00\x00\x05",
            b"LEGACY-Id",
            b"ab",
            b"abcdefgh",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        // An id's first 8 bytes, zeros after a shorter one: ids differing there differ in key.
        let padded = |id: &[u8]| {
            let mut k = [0u8; 8];
            let n = id.len().min(8);
            k[..n].copy_from_slice(&id[..n]);
            k
        };
        for a in ids {
            for b in ids {
                for (ka, kb) in [
                    (id_order(ValueRef::Blob(a)), id_order(ValueRef::Blob(b))),
                    (id_order(ValueRef::Text(a)), id_order(ValueRef::Text(b))),
                ] {
                    if a < b {
                        assert!(ka <= kb, "{a:?} {b:?}");
                    }
                    if padded(a) < padded(b) {
                        assert!(ka < kb, "{a:?} {b:?}");
                    }
                }
            }
        }
        // The key sort gives the id order, in SQL too.
        let s = SqliteStore::in_memory().unwrap();
        let sorted: Vec<Vec<u8>> = s
            .conn
            .prepare(
                "SELECT x FROM (SELECT x'80' AS x UNION ALL SELECT x'7fffffffffffffffff' UNION ALL SELECT x'00' UNION ALL SELECT x'8000000000000000' UNION ALL SELECT x'800000000000000001') ORDER BY eligo_id_order(x), x",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let mut want = sorted.clone();
        want.sort();
        assert_eq!(sorted, want);
    }

    /// Migration 5: a version-4 store keeps its enrollment rows (now `WITHOUT ROWID`) and its
    /// transactions, whose status index now holds only the unbatched ones, and answers as before.
    #[test]
    fn migration_5_keeps_enrollment_and_unbatched_transactions() {
        let (_dir, p, c) = store_at(4);
        // Rows out of key order, in two groups.
        for (g, m, sub, active, data) in [
            ("G2", "B", "A", 1, r#"{"name":{"last":"X"}}"#),
            ("G1", "Z", "Z", 0, "{}"),
            ("G2", "A", "A", 1, "{}"),
            ("G1", "C", "Z", 1, "{}"),
        ] {
            c.execute(
                "INSERT INTO enrollment (group_id, member_id, subscriber_id, relationship, active, data) VALUES (?1, ?2, ?3, 'self', ?4, ?5)",
                params![g, m, sub, active, data],
            )
            .unwrap();
        }
        let (held, waiting, sent) = (rec("HELD"), rec("WAIT"), rec("SENT"));
        for (r, status, batch) in [
            (&held, Pending, None),
            (&waiting, PendingFhs, None),
            (&sent, Submitted, Some(1)),
        ] {
            c.execute(
                "INSERT INTO transactions (change_id, group_id, member_id, kind, status, transaction_date, run_id, batch_run_id) VALUES (?1, 'G1', ?2, 'add_subscriber', ?3, '2025-01-10', 1, ?4)",
                params![IdParam::new(&r.change_id), r.member_id, status.as_str(), batch],
            )
            .unwrap();
        }
        c.execute_batch(
            "INSERT INTO transaction_keys SELECT change_id, rowid FROM transactions ORDER BY change_id;",
        )
        .unwrap();
        let rows =
            |c: &Connection| table_rows(c, "SELECT * FROM enrollment ORDER BY group_id, member_id");
        let before = rows(&c);
        let before_tx = tx_tables(&SqliteStore {
            conn: c,
            unkeyed: [None; 2],
        });

        let mut s = SqliteStore::open(&p).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(rows(&s.conn), before);
        assert_eq!(tx_tables(&s), before_tx);
        let schema: Vec<String> = s
            .conn
            .prepare("SELECT name || ':' || sql FROM sqlite_master WHERE tbl_name IN ('enrollment', 'transactions') ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(schema.len(), 3, "{schema:?}");
        assert!(schema[0].starts_with("enrollment:") && schema[0].ends_with("WITHOUT ROWID"));
        assert!(schema[1].starts_with("transactions:"));
        assert!(schema[2].ends_with("ON transactions(status) WHERE batch_run_id IS NULL"));
        // The unbatched rows are found through the new index, by status.
        let plan: String = s
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT rowid FROM transactions WHERE status = ?1 AND batch_run_id IS NULL ORDER BY transaction_date, rowid",
                ["Pending"],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("transactions_unbatched"), "{plan}");
        let ids = |rows: Vec<TransactionRow>| -> Vec<String> {
            rows.into_iter().map(|t| t.change_id).collect()
        };
        assert_eq!(
            ids(s.unbatched(Pending).unwrap()),
            [held.change_id.as_str()]
        );
        assert_eq!(
            ids(s.unbatched(PendingFhs).unwrap()),
            [waiting.change_id.as_str()]
        );
        assert!(s.unbatched(Submitted).unwrap().is_empty());
        s.set_batch(&held.change_id, 2).unwrap();
        assert!(s.unbatched(Pending).unwrap().is_empty());
        s.set_status(&waiting.change_id, Pending, "x", "fhs")
            .unwrap();
        assert_eq!(
            ids(s.unbatched(Pending).unwrap()),
            [waiting.change_id.as_str()]
        );
        // Enrollment: read, listed and upserted by its key as before.
        assert_eq!(s.active_members("G1").unwrap(), vec!["C"]);
        assert_eq!(s.active_members("G2").unwrap(), vec!["A", "B"]);
        let b = s.member("G2", "B").unwrap().unwrap();
        assert_eq!(b.subscriber_id, "A");
        let flipped = Enrolled {
            active: false,
            ..b.clone()
        };
        s.set_member(&flipped, false).unwrap();
        assert_eq!(s.member("G2", "B").unwrap(), Some(flipped));
        assert_eq!(s.enrollment("G2").unwrap().len(), 2);
    }
}
