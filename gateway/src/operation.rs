//! Typed storage operations: what is forwarded ([`Operation`]), what storaged answers
//! ([`Reply`]), what policy decides on ([`Target`]), and the one table of operation labels
//! ([`Kind`]) that metrics and logs use.

use photondb_proto::names::{Key, Name, TableRef};
use photondb_proto::v1 as pb;

use crate::json::Document;

/// A version precondition from `If-Match: "<version>"` or `If-None-Match: *` (REST), or a
/// protobuf `Precondition` (gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    IfVersion(u64),
    IfAbsent,
}

impl Precondition {
    /// A protobuf precondition as the typed one (an empty `oneof` means none).
    pub fn from_pb(p: Option<pb::Precondition>) -> Option<Self> {
        use pb::precondition::Condition;
        match p?.condition? {
            Condition::IfVersion(v) => Some(Self::IfVersion(v)),
            Condition::IfAbsent(true) => Some(Self::IfAbsent),
            Condition::IfAbsent(false) => None,
        }
    }

    /// The protobuf form storaged receives.
    pub fn to_pb(p: Option<Self>) -> Option<pb::Precondition> {
        use pb::precondition::Condition;
        let condition = match p? {
            Self::IfVersion(v) => Condition::IfVersion(v),
            Self::IfAbsent => Condition::IfAbsent(true),
        };
        Some(pb::Precondition {
            condition: Some(condition),
        })
    }
}

/// What a request does, for metrics and logs: the one table of operation labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    PublicHealth,
    Health,
    PublicGet,
    ListDatabases,
    CreateDatabase,
    DropDatabase,
    ListTables,
    CreateTable,
    DropTable,
    Get,
    Put,
    Delete,
    Scan,
    Batch,
    Verify,
}

impl Kind {
    /// The stable label (`route` in request metrics, `op` in upstream metrics).
    pub fn label(self) -> &'static str {
        match self {
            Self::PublicHealth => "public_health",
            Self::Health => "health",
            Self::PublicGet => "public_get",
            Self::ListDatabases => "list_databases",
            Self::CreateDatabase => "create_database",
            Self::DropDatabase => "drop_database",
            Self::ListTables => "list_tables",
            Self::CreateTable => "create_table",
            Self::DropTable => "drop_table",
            Self::Get => "get",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::Scan => "scan",
            Self::Batch => "batch",
            Self::Verify => "verify",
        }
    }
}

/// storaged's answer, one variant per operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    ListDatabases(pb::ListDatabasesResponse),
    CreateDatabase(pb::CreateDatabaseResponse),
    DropDatabase(pb::DropDatabaseResponse),
    ListTables(pb::ListTablesResponse),
    CreateTable(pb::CreateTableResponse),
    DropTable(pb::DropTableResponse),
    Get(pb::GetResponse),
    Put(pb::PutResponse),
    Delete(pb::DeleteResponse),
    Scan(pb::ScanResponse),
    Batch(pb::BatchResponse),
    Verify(pb::VerifyResponse),
}

/// Which page of a list of names: those after `after` (`None`: from the first), at most
/// `limit` (0: storaged's default, its largest page, `limits::MAX_LIST_LIMIT`, which also caps
/// any larger limit). Paged like a scan; the answer's `next_start_after` names the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub after: Option<Name>,
    pub limit: u32,
}

/// A storage operation whose every field has been checked: the only thing forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    ListDatabases(ListPage),
    CreateDatabase(Name),
    DropDatabase(Name),
    ListTables(Name, ListPage),
    CreateTable(TableRef),
    DropTable(TableRef),
    Get {
        table: TableRef,
        key: Key,
    },
    Put {
        table: TableRef,
        key: Key,
        value: Document,
        precondition: Option<Precondition>,
    },
    Delete {
        table: TableRef,
        key: Key,
        precondition: Option<Precondition>,
    },
    Scan {
        table: TableRef,
        prefix: String,
        after: String,
        limit: u32,
    },
    Batch {
        table: TableRef,
        ops: Vec<BatchOp>,
    },
    Verify,
}

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        key: Key,
        value: Document,
        precondition: Option<Precondition>,
    },
    Delete {
        key: Key,
        precondition: Option<Precondition>,
    },
}

impl Operation {
    /// Reads are retried upstream and still served in read-only mode.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Self::ListDatabases(_)
                | Self::ListTables(..)
                | Self::Get { .. }
                | Self::Scan { .. }
                | Self::Verify
        )
    }

    /// An admin call (`Verify`): it writes nothing (so read-only mode allows it), but it is
    /// long and storaged runs one at a time, so it is never retried.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Verify)
    }

    /// Whether a failed call may be sent again: reads only, not admin calls.
    pub fn is_retryable(&self) -> bool {
        self.is_read() && !self.is_admin()
    }

    /// What the operation does (its label).
    pub fn kind(&self) -> Kind {
        match self {
            Self::ListDatabases(_) => Kind::ListDatabases,
            Self::CreateDatabase(_) => Kind::CreateDatabase,
            Self::DropDatabase(_) => Kind::DropDatabase,
            Self::ListTables(..) => Kind::ListTables,
            Self::CreateTable(_) => Kind::CreateTable,
            Self::DropTable(_) => Kind::DropTable,
            Self::Get { .. } => Kind::Get,
            Self::Put { .. } => Kind::Put,
            Self::Delete { .. } => Kind::Delete,
            Self::Scan { .. } => Kind::Scan,
            Self::Batch { .. } => Kind::Batch,
            Self::Verify => Kind::Verify,
        }
    }

    /// The action and resource policy decides on.
    pub fn target(&self) -> Target {
        use Action::*;
        match self {
            Self::ListDatabases(_) => Target::all(DbList),
            Self::CreateDatabase(db) => Target::db(DbCreate, db),
            Self::DropDatabase(db) => Target::db(DbDelete, db),
            Self::ListTables(db, _) => Target::db(DbList, db),
            Self::CreateTable(t) => Target::table(TableCreate, t),
            Self::DropTable(t) => Target::table(TableDelete, t),
            Self::Get { table, .. } | Self::Scan { table, .. } => Target::table(TableRead, table),
            Self::Put { table, .. } | Self::Delete { table, .. } | Self::Batch { table, .. } => {
                Target::table(TableWrite, table)
            }
            Self::Verify => Target::all(StorageInspect),
        }
    }
}

/// Permissions of DESIGN §4 that the edge asks policy about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TableRead,
    TableWrite,
    TableCreate,
    TableDelete,
    DbCreate,
    DbDelete,
    DbList,
    StorageInspect,
    HealthRead,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TableRead => "table.read",
            Self::TableWrite => "table.write",
            Self::TableCreate => "table.create",
            Self::TableDelete => "table.delete",
            Self::DbCreate => "db.create",
            Self::DbDelete => "db.delete",
            Self::DbList => "db.list",
            Self::StorageInspect => "storage.inspect",
            Self::HealthRead => "health.read",
        }
    }
}

/// A policy resource: `*`, `db:<db>`, `db:<db>/table:<table>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    All,
    Db(Name),
    Table(TableRef),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Db(db) => write!(f, "db:{db}"),
            Self::Table(t) => write!(f, "db:{}/table:{}", t.db, t.table),
        }
    }
}

/// What policy decides on: an action on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub action: Action,
    pub resource: Resource,
}

impl Target {
    pub fn all(action: Action) -> Self {
        Self {
            action,
            resource: Resource::All,
        }
    }

    pub fn db(action: Action, db: &Name) -> Self {
        Self {
            action,
            resource: Resource::Db(db.clone()),
        }
    }

    pub fn table(action: Action, t: &TableRef) -> Self {
        Self {
            action,
            resource: Resource::Table(t.clone()),
        }
    }
}
