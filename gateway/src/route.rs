//! Pipeline step 4: method + path (+ query) → a typed route (DESIGN §5). Paths not in normal
//! form are refused, never normalised; unknown paths are 404 and wrong methods 405.

use http::Method;
use photondb_proto::signing::{path, query};

use photondb_proto::names::{Key, MAX_KEY_BYTES, Name, NameError, TableRef};

use crate::errors::Refusal;
use crate::operation::{Kind, ListPage, Precondition};

/// `GET .../docs?prefix=&after=&limit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanQuery {
    pub prefix: String,
    pub after: String,
    /// 0: the server default.
    pub limit: u32,
}

/// A REST request, typed. Bodies (documents, batches) are read and checked later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    PublicHealth,
    V1Health,
    PublicGetDoc {
        table: TableRef,
        key: Key,
    },
    /// `GET /v1/dbs?after=&limit=`.
    ListDbs(ListPage),
    CreateDb(Name),
    DropDb(Name),
    /// `GET /v1/dbs/{db}/tables?after=&limit=`.
    ListTables(Name, ListPage),
    CreateTable(TableRef),
    DropTable(TableRef),
    GetDoc {
        table: TableRef,
        key: Key,
    },
    PutDoc {
        table: TableRef,
        key: Key,
        precondition: Option<Precondition>,
    },
    DeleteDoc {
        table: TableRef,
        key: Key,
        precondition: Option<Precondition>,
    },
    Scan {
        table: TableRef,
        query: ScanQuery,
    },
    Batch(TableRef),
    Verify,
}

/// Why routing refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed(&'static str),
    PathNotNormal,
    BadQuery,
    Name(NameError),
    BadPrecondition,
}

impl From<NameError> for RouteError {
    fn from(e: NameError) -> Self {
        Self::Name(e)
    }
}

impl From<RouteError> for Refusal {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => Self::NotFound,
            RouteError::MethodNotAllowed(allow) => Self::MethodNotAllowed(allow),
            RouteError::PathNotNormal => Self::PathNotNormal,
            RouteError::BadQuery => Self::BadQuery,
            RouteError::Name(n) => n.into(),
            RouteError::BadPrecondition => Self::BadPrecondition,
        }
    }
}

impl Route {
    /// What the route does (its label).
    pub fn kind(&self) -> Kind {
        match self {
            Self::PublicHealth => Kind::PublicHealth,
            Self::V1Health => Kind::Health,
            Self::PublicGetDoc { .. } => Kind::PublicGet,
            Self::ListDbs(_) => Kind::ListDatabases,
            Self::CreateDb(_) => Kind::CreateDatabase,
            Self::DropDb(_) => Kind::DropDatabase,
            Self::ListTables(..) => Kind::ListTables,
            Self::CreateTable(_) => Kind::CreateTable,
            Self::DropTable(_) => Kind::DropTable,
            Self::GetDoc { .. } => Kind::Get,
            Self::PutDoc { .. } => Kind::Put,
            Self::DeleteDoc { .. } => Kind::Delete,
            Self::Scan { .. } => Kind::Scan,
            Self::Batch(_) => Kind::Batch,
            Self::Verify => Kind::Verify,
        }
    }
}

/// The request line and the headers routing reads.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
}

/// The path's decoded segments, or 400 when the path is not in normal form (DESIGN §3.3).
/// `%2F` and `%5C` decode inside their segment, so they never change the route; a name that
/// holds one is then refused by [`Name::parse`], so only a key can.
pub fn segments(path: &str) -> Result<Vec<String>, RouteError> {
    path::decode_normal(path).map_err(|_| RouteError::PathNotNormal)
}

/// Routes a REST request.
pub fn route(input: &RouteInput<'_>) -> Result<Route, RouteError> {
    let segs = segments(input.path)?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let shape = shape(&segs)?;
    shape.check_method(input.method)?;
    if !matches!(shape, Shape::Dbs | Shape::Tables | Shape::Docs) {
        no_query(input.query)?;
    }
    build(shape, &segs, input)
}

/// Which resource a path names, before the method is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    PublicHealth,
    PublicDoc,
    Dbs,
    Db,
    Tables,
    Table,
    Docs,
    Doc,
    Batch,
    Verify,
    Health,
}

fn shape(segs: &[&str]) -> Result<Shape, RouteError> {
    Ok(match segs {
        ["public", "health"] => Shape::PublicHealth,
        ["public", "v1", "dbs", _, "tables", _, "docs", _] => Shape::PublicDoc,
        ["v1", "dbs"] => Shape::Dbs,
        ["v1", "dbs", _] => Shape::Db,
        ["v1", "dbs", _, "tables"] => Shape::Tables,
        ["v1", "dbs", _, "tables", _] => Shape::Table,
        ["v1", "dbs", _, "tables", _, "docs"] => Shape::Docs,
        ["v1", "dbs", _, "tables", _, "docs", _] => Shape::Doc,
        ["v1", "dbs", _, "tables", _, "batch"] => Shape::Batch,
        ["v1", "storage", "verify"] => Shape::Verify,
        ["v1", "health"] => Shape::Health,
        _ => return Err(RouteError::NotFound),
    })
}

impl Shape {
    /// The `Allow` header value for this resource.
    fn allow(self) -> &'static str {
        match self {
            Self::Db | Self::Table => "PUT, DELETE",
            Self::Doc => "GET, PUT, DELETE",
            Self::Batch => "POST",
            _ => "GET",
        }
    }

    fn check_method(self, method: &Method) -> Result<(), RouteError> {
        let allowed = self.allow().split(", ").any(|m| m == method.as_str());
        allowed
            .then_some(())
            .ok_or(RouteError::MethodNotAllowed(self.allow()))
    }
}

fn build(shape: Shape, segs: &[&str], input: &RouteInput<'_>) -> Result<Route, RouteError> {
    let m = input.method;
    Ok(match shape {
        Shape::PublicHealth => Route::PublicHealth,
        Shape::Health => Route::V1Health,
        Shape::Verify => Route::Verify,
        Shape::Dbs => Route::ListDbs(list_query(input.query)?),
        Shape::PublicDoc => Route::PublicGetDoc {
            table: TableRef::parse(segs[3], segs[5])?,
            key: Key::parse(segs[7])?,
        },
        Shape::Db if m == Method::PUT => Route::CreateDb(Name::parse(segs[2])?),
        Shape::Db => Route::DropDb(Name::parse(segs[2])?),
        Shape::Tables => Route::ListTables(Name::parse(segs[2])?, list_query(input.query)?),
        Shape::Table if m == Method::PUT => Route::CreateTable(TableRef::parse(segs[2], segs[4])?),
        Shape::Table => Route::DropTable(TableRef::parse(segs[2], segs[4])?),
        Shape::Docs => Route::Scan {
            table: TableRef::parse(segs[2], segs[4])?,
            query: scan_query(input.query)?,
        },
        Shape::Batch => Route::Batch(TableRef::parse(segs[2], segs[4])?),
        Shape::Doc => doc_route(segs, input)?,
    })
}

fn doc_route(segs: &[&str], input: &RouteInput<'_>) -> Result<Route, RouteError> {
    let table = TableRef::parse(segs[2], segs[4])?;
    let key = Key::parse(segs[6])?;
    let precondition = precondition(input.if_match, input.if_none_match)?;
    Ok(match *input.method {
        Method::GET if precondition.is_none() => Route::GetDoc { table, key },
        Method::GET => return Err(RouteError::BadPrecondition),
        Method::PUT => Route::PutDoc {
            table,
            key,
            precondition,
        },
        _ => Route::DeleteDoc {
            table,
            key,
            precondition,
        },
    })
}

fn no_query(raw: Option<&str>) -> Result<(), RouteError> {
    match raw {
        None | Some("") => Ok(()),
        Some(_) => Err(RouteError::BadQuery),
    }
}

/// The decoded pairs of a paged route's query (scans and lists alike).
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, RouteError> {
    query::decode_pairs(raw.unwrap_or("")).map_err(|_| RouteError::BadQuery)
}

/// A page's `limit`: decimal digits that fit a `u32` (0: the server's default).
fn page_limit(value: &str) -> Result<u32, RouteError> {
    value.parse().map_err(|_| RouteError::BadQuery)
}

fn scan_query(raw: Option<&str>) -> Result<ScanQuery, RouteError> {
    let mut q = ScanQuery::default();
    for (name, value) in query_pairs(raw)? {
        match name.as_str() {
            "prefix" => q.prefix = value,
            "after" => q.after = value,
            "limit" => q.limit = page_limit(&value)?,
            _ => return Err(RouteError::BadQuery),
        }
    }
    let too_long = q.prefix.len() > MAX_KEY_BYTES || q.after.len() > MAX_KEY_BYTES;
    if too_long {
        Err(RouteError::BadQuery)
    } else {
        Ok(q)
    }
}

/// `GET /v1/dbs?after=&limit=` and `.../tables?after=&limit=`: `after` is empty or a name
/// (every `next_after` is one), as the scan query's is a key.
fn list_query(raw: Option<&str>) -> Result<ListPage, RouteError> {
    let mut q = ListPage::default();
    for (name, value) in query_pairs(raw)? {
        match name.as_str() {
            "after" if value.is_empty() => q.after = None,
            "after" => q.after = Some(Name::parse(&value).map_err(|_| RouteError::BadQuery)?),
            "limit" => q.limit = page_limit(&value)?,
            _ => return Err(RouteError::BadQuery),
        }
    }
    Ok(q)
}

/// `If-Match: "7"` (or `7`) → version 7; `If-None-Match: *` → must not exist. Both: 400.
pub fn precondition(
    if_match: Option<&str>,
    if_none_match: Option<&str>,
) -> Result<Option<Precondition>, RouteError> {
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (Some(v), None) => parse_version(v).map(|v| Some(Precondition::IfVersion(v))),
        (None, Some("*")) => Ok(Some(Precondition::IfAbsent)),
        _ => Err(RouteError::BadPrecondition),
    }
}

fn parse_version(v: &str) -> Result<u64, RouteError> {
    let v = v.trim();
    let digits = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    let ok = !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
    let parsed = ok.then(|| digits.parse::<u64>().ok()).flatten();
    parsed.ok_or(RouteError::BadPrecondition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str, query: Option<&str>) -> Result<Route, RouteError> {
        route(&RouteInput {
            method: &method,
            path,
            query,
            if_match: None,
            if_none_match: None,
        })
    }

    fn table() -> TableRef {
        TableRef::parse("db1", "t1").unwrap()
    }

    #[test]
    fn routes_every_documented_path() {
        assert_eq!(
            r(Method::GET, "/public/health", None),
            Ok(Route::PublicHealth)
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs", None),
            Ok(Route::ListDbs(ListPage::default()))
        );
        assert_eq!(
            r(Method::PUT, "/v1/dbs/db1", None),
            Ok(Route::CreateDb(Name::parse("db1").unwrap()))
        );
        assert_eq!(
            r(Method::DELETE, "/v1/dbs/db1/tables/t1", None),
            Ok(Route::DropTable(table()))
        );
        assert_eq!(
            r(Method::POST, "/v1/dbs/db1/tables/t1/batch", None),
            Ok(Route::Batch(table()))
        );
        assert_eq!(
            r(Method::GET, "/v1/storage/verify", None),
            Ok(Route::Verify)
        );
        let key = Key::parse("a b").unwrap();
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables/t1/docs/a%20b", None),
            Ok(Route::GetDoc {
                table: table(),
                key
            })
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(r(Method::GET, "/v2/x", None), Err(RouteError::NotFound));
        assert_eq!(
            r(Method::POST, "/v1/dbs", None),
            Err(RouteError::MethodNotAllowed("GET"))
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/../dbs", None),
            Err(RouteError::PathNotNormal)
        );
        assert_eq!(
            r(Method::GET, "/v1//dbs", None),
            Err(RouteError::PathNotNormal)
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/a%2fb/tables", None),
            Err(RouteError::PathNotNormal)
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables/t1/docs/a%2fb", None),
            Err(RouteError::PathNotNormal)
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables/t1/docs/a\\b", None),
            Err(RouteError::PathNotNormal)
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables/t1/docs/.%2E", None),
            Err(RouteError::PathNotNormal)
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/Bad/tables", None),
            Err(RouteError::Name(NameError::BadName))
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs", Some("x=1")),
            Err(RouteError::BadQuery)
        );
        assert_eq!(
            r(Method::PUT, "/v1/dbs/db1", Some("limit=1")),
            Err(RouteError::BadQuery)
        );
    }

    #[test]
    fn list_queries_page_like_scans() {
        let page = |after: &str, limit| ListPage {
            after: Some(Name::parse(after).unwrap()),
            limit,
        };
        assert_eq!(
            r(Method::GET, "/v1/dbs", Some("after=db1&limit=10")),
            Ok(Route::ListDbs(page("db1", 10)))
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs", Some("after=")),
            Ok(Route::ListDbs(ListPage::default()))
        );
        let db = Name::parse("db1").unwrap();
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables", Some("limit=5&after=t1")),
            Ok(Route::ListTables(db, page("t1", 5)))
        );
        for bad in [
            "after=Bad",
            "after=a%2Fb",
            "limit=-1",
            "limit=x",
            "prefix=a",
        ] {
            assert_eq!(
                r(Method::GET, "/v1/dbs", Some(bad)),
                Err(RouteError::BadQuery),
                "{bad}"
            );
            assert_eq!(
                r(Method::GET, "/v1/dbs/db1/tables", Some(bad)),
                Err(RouteError::BadQuery),
                "{bad}"
            );
        }
    }

    #[test]
    fn escaped_slash_and_backslash_belong_to_the_key() {
        for (path, key) in [
            ("/v1/dbs/db1/tables/t1/docs/a%2Fb", "a/b"),
            ("/v1/dbs/db1/tables/t1/docs/x%2Fy%5Cz", "x/y\\z"),
            ("/v1/dbs/db1/tables/t1/docs/%2Fdocs%2Fk", "/docs/k"),
            ("/v1/dbs/db1/tables/t1/docs/..%2F..", "../.."),
        ] {
            let key = Key::parse(key).unwrap();
            assert_eq!(
                r(Method::GET, path, None),
                Ok(Route::GetDoc {
                    table: table(),
                    key
                }),
                "{path}"
            );
        }
    }

    #[test]
    fn escaped_slash_in_a_name_is_a_bad_name_not_another_route() {
        for path in [
            "/v1/dbs/a%2Fb",
            "/v1/dbs/a%5Cb",
            "/v1/dbs/db1/tables/a%2Fb",
            // Not CreateTable of db1.t1: the escaped slashes stay in the database name.
            "/v1/dbs/db1%2Ftables%2Ft1",
        ] {
            assert_eq!(
                r(Method::PUT, path, None),
                Err(RouteError::Name(NameError::BadName)),
                "{path}"
            );
        }
        assert_eq!(
            r(Method::GET, "/v1/dbs/a%2Fb/tables/t1/docs/k", None),
            Err(RouteError::Name(NameError::BadName))
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables%2Ft1/docs/k", None),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn scan_query_and_preconditions() {
        let got = r(
            Method::GET,
            "/v1/dbs/db1/tables/t1/docs",
            Some("limit=10&prefix=a%20"),
        )
        .unwrap();
        let query = ScanQuery {
            prefix: "a ".into(),
            after: String::new(),
            limit: 10,
        };
        assert_eq!(
            got,
            Route::Scan {
                table: table(),
                query
            }
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables/t1/docs", Some("limit=x")),
            Err(RouteError::BadQuery)
        );
        assert_eq!(
            r(Method::GET, "/v1/dbs/db1/tables/t1/docs", Some("zzz=1")),
            Err(RouteError::BadQuery)
        );
        assert_eq!(
            precondition(Some("\"42\""), None),
            Ok(Some(Precondition::IfVersion(42)))
        );
        assert_eq!(
            precondition(None, Some("*")),
            Ok(Some(Precondition::IfAbsent))
        );
        assert_eq!(
            precondition(Some("W/\"1\""), None),
            Err(RouteError::BadPrecondition)
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Routing never panics, and whatever it accepts was already in normal form.
        #[test]
        fn arbitrary_paths(path in "/[a-zA-Z0-9%./_~-]{0,40}", q in proptest::option::of("[a-z=&%0-9]{0,20}")) {
            let input = RouteInput {
                method: &Method::GET,
                path: &path,
                query: q.as_deref(),
                if_match: None,
                if_none_match: None,
            };
            if route(&input).is_ok() {
                prop_assert!(!path.contains("//") && !path.contains("/./") && !path.contains("/../"));
                prop_assert!(!path.ends_with('/'));
            }
        }
    }
}
