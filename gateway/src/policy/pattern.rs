//! Resource patterns of bindings (`*`, `db:<db>`, `db:<db>/table:<table>`, each segment a
//! name or the whole-segment `*`) and the resources requests name: parsing, display, matching.
//!
//! Coverage, exactly:
//! - `*` covers every resource, including [`Resource::All`] (list databases, verify, health);
//!   nothing else covers `All`.
//! - `db:<d>` covers `Db(d)` and every table of `d`; `db:*` covers every database and table.
//! - `db:<d>/table:<t>` covers only that table; `*` in either segment matches any name there,
//!   but a table pattern never covers a `Db(_)`.

use std::fmt;

use photondb_proto::names::{Name, TableRef, is_name};

use crate::operation::Resource;
use crate::policy::model::{ResourcePattern, Segment};

const DB: &str = "db:";
const TABLE: &str = "/table:";

/// Parses a binding's resource pattern. `db:a*` is refused: a segment is a name
/// (`[a-z0-9_-]{1,64}`) or exactly `*`.
pub fn parse_pattern(text: &str) -> Result<ResourcePattern, String> {
    if text == "*" {
        return Ok(ResourcePattern::All);
    }
    let Some(rest) = text.strip_prefix(DB) else {
        return Err(shape_error(text));
    };
    match rest.split_once(TABLE) {
        None => Ok(ResourcePattern::Db(segment(rest)?)),
        Some((db, table)) => Ok(ResourcePattern::Table(segment(db)?, segment(table)?)),
    }
}

/// Parses a concrete resource in the same syntax (`*`, `db:shop`, `db:shop/table:orders`),
/// as `photonctl policy explain` takes it; only the whole-resource `*` is allowed.
pub fn parse_resource(text: &str) -> Result<Resource, String> {
    let concrete = |s: &Segment| match s {
        Segment::Name(n) => Name::parse(n).map_err(|e| e.to_string()),
        Segment::Any => Err(format!(
            "`{text}`: a resource names one database or table; only `*` alone means all"
        )),
    };
    match parse_pattern(text)? {
        ResourcePattern::All => Ok(Resource::All),
        ResourcePattern::Db(db) => Ok(Resource::Db(concrete(&db)?)),
        ResourcePattern::Table(db, table) => Ok(Resource::Table(TableRef {
            db: concrete(&db)?,
            table: concrete(&table)?,
        })),
    }
}

/// Whether `pattern` covers `resource` (the rules in this module's doc).
pub fn covers(pattern: &ResourcePattern, resource: &Resource) -> bool {
    match (pattern, resource) {
        (ResourcePattern::All, _) => true,
        (ResourcePattern::Db(db), Resource::Db(d)) => db.matches(d),
        (ResourcePattern::Db(db), Resource::Table(t)) => db.matches(&t.db),
        (ResourcePattern::Table(db, table), Resource::Table(t)) => {
            db.matches(&t.db) && table.matches(&t.table)
        }
        _ => false,
    }
}

impl Segment {
    fn matches(&self, name: &Name) -> bool {
        match self {
            Self::Any => true,
            Self::Name(n) => n.as_str() == name.as_str(),
        }
    }
}

fn segment(text: &str) -> Result<Segment, String> {
    if text == "*" {
        Ok(Segment::Any)
    } else if is_name(text) {
        Ok(Segment::Name(text.to_owned()))
    } else {
        Err(format!(
            "`{text}` is neither a name ([a-z0-9_-]{{1,64}}) nor the whole-segment wildcard `*`"
        ))
    }
}

fn shape_error(text: &str) -> String {
    format!("bad resource `{text}`: expected `*`, `db:<db>` or `db:<db>/table:<table>`")
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Db(db) => write!(f, "{DB}{db}"),
            Self::Table(db, table) => write!(f, "{DB}{db}{TABLE}{table}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Segment {
        Segment::Name(s.into())
    }

    fn table(db: &str, t: &str) -> Resource {
        Resource::Table(TableRef::parse(db, t).unwrap())
    }

    fn db(d: &str) -> Resource {
        Resource::Db(Name::parse(d).unwrap())
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(parse_pattern("*"), Ok(ResourcePattern::All));
        assert_eq!(
            parse_pattern("db:shop"),
            Ok(ResourcePattern::Db(name("shop")))
        );
        assert_eq!(parse_pattern("db:*"), Ok(ResourcePattern::Db(Segment::Any)));
        assert_eq!(
            parse_pattern("db:shop/table:orders"),
            Ok(ResourcePattern::Table(name("shop"), name("orders")))
        );
        assert_eq!(
            parse_pattern("db:*/table:*"),
            Ok(ResourcePattern::Table(Segment::Any, Segment::Any))
        );
    }

    #[test]
    fn refuses_partial_wildcards_and_bad_shapes() {
        for bad in [
            "db:a*",
            "db:*a",
            "db:shop/table:o*",
            "db:",
            "db:shop/table:",
            "db:Shop",
            "table:x",
            "**",
            "",
            "db:shop/tables:x",
            "db:shop/table:x/table:y",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad} parsed");
        }
        assert_eq!(
            parse_pattern("db:a*"),
            Err(
                "`a*` is neither a name ([a-z0-9_-]{1,64}) nor the whole-segment wildcard `*`"
                    .to_owned()
            )
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "*",
            "db:shop",
            "db:*",
            "db:shop/table:orders",
            "db:*/table:*",
        ] {
            assert_eq!(parse_pattern(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn concrete_resources() {
        assert_eq!(parse_resource("*"), Ok(Resource::All));
        assert_eq!(parse_resource("db:shop"), Ok(db("shop")));
        assert_eq!(
            parse_resource("db:shop/table:orders"),
            Ok(table("shop", "orders"))
        );
        assert!(parse_resource("db:*").is_err());
        assert!(parse_resource("db:shop/table:*").is_err());
    }

    #[test]
    fn coverage_follows_the_rules() {
        let p = |s: &str| parse_pattern(s).unwrap();
        let resources = [
            Resource::All,
            db("shop"),
            db("other"),
            table("shop", "t"),
            table("other", "t"),
        ];
        // Which of `resources` each pattern covers, in order.
        let cases: [(&str, [bool; 5]); 7] = [
            ("*", [true, true, true, true, true]),
            ("db:shop", [false, true, false, true, false]),
            ("db:*", [false, true, true, true, true]),
            ("db:shop/table:t", [false, false, false, true, false]),
            ("db:shop/table:*", [false, false, false, true, false]),
            ("db:*/table:t", [false, false, false, true, true]),
            ("db:*/table:*", [false, false, false, true, true]),
        ];
        for (pattern, expected) in cases {
            let got: Vec<bool> = resources.iter().map(|r| covers(&p(pattern), r)).collect();
            assert_eq!(got, expected, "{pattern}");
        }
    }
}
