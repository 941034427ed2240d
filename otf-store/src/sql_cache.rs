//! The SQL text of a statement, written once per shape.
//!
//! sea-query writes a statement's text anew for every execution, quoting
//! every column of every row it selects, updates or inserts; on the dispatch
//! path that was a fifth of otfd's CPU. The text only depends on the
//! statement's shape (where it is built, the entity, which columns are set,
//! the backend), so it is built once per shape and kept; each execution
//! brings its own values.
//!
//! Two ways in, both falling back to building every time (and remembering
//! to) when the text turns out not to be reusable:
//!
//! * [`with_args`]: the statement's variable parts are a fixed number of
//!   values. The first build passes unique markers for them and notes where
//!   they land among the statement's values; later executions put the real
//!   values there.
//! * [`with_values`]: the caller lists the statement's values itself (the
//!   columns of a row in the entity's column order, then the key). The
//!   first build checks that list against sea-query's; only an exact match
//!   keeps the text.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use sea_orm::{DbBackend, Statement, Value, Values};

/// What a shape is known by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// Where the statement is built (a repository function's name).
    site: &'static str,
    /// The entity (`std::any::type_name`), so a generic site has a shape per
    /// entity.
    entity: &'static str,
    /// Which of the entity's columns carry a value (inserts and updates).
    columns: u64,
    postgres: bool,
}

impl Key {
    pub(crate) fn new<E>(site: &'static str, columns: u64, backend: DbBackend) -> Key {
        Key {
            site,
            entity: std::any::type_name::<E>(),
            columns,
            postgres: backend == DbBackend::Postgres,
        }
    }
}

enum Shape {
    /// The text, the values as first built, and for each of them the
    /// argument that replaces it (`None`: a constant of the shape, such as
    /// `LIMIT 1`).
    Args {
        sql: String,
        values: Vec<Value>,
        slots: Vec<Option<usize>>,
    },
    /// The text; the caller brings all values.
    Text(String),
    /// Not reusable: built every time.
    Build,
}

static SHAPES: LazyLock<RwLock<HashMap<Key, Shape>>> = LazyLock::new(Default::default);

fn shapes_read() -> std::sync::RwLockReadGuard<'static, HashMap<Key, Shape>> {
    // A panic while holding the lock leaves at worst a missing entry.
    SHAPES.read().unwrap_or_else(|p| p.into_inner())
}

fn remember(key: Key, shape: Shape) {
    SHAPES
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert(shape);
}

/// A value no caller passes: marks argument `i` in the first build.
fn marker(i: usize) -> Value {
    Value::String(Some(Box::new(format!(
        "\u{0}otf-sql-cache-argument-{i}\u{0}"
    ))))
}

/// The statement `build` makes of `args`, its text written once per `key`.
pub(crate) fn with_args<const N: usize>(
    key: Key,
    backend: DbBackend,
    args: [Value; N],
    build: impl Fn([Value; N]) -> Statement,
) -> Statement {
    if let Some(shape) = shapes_read().get(&key) {
        match shape {
            Shape::Args { sql, values, slots } => {
                #[cfg(debug_assertions)]
                let given = args.clone();
                let mut args = args.map(Some);
                let values = values
                    .iter()
                    .zip(slots)
                    .map(|(v, slot)| match slot {
                        Some(i) => args[*i].take().unwrap_or_else(|| v.clone()),
                        None => v.clone(),
                    })
                    .collect();
                let kept = statement(backend, sql.clone(), values);
                #[cfg(debug_assertions)]
                same_as_built(&key, &kept, || build(given));
                return kept;
            }
            Shape::Text(_) | Shape::Build => return build(args),
        }
    }
    let probe = build(std::array::from_fn(marker));
    let markers: [Value; N] = std::array::from_fn(marker);
    let values = probe.values.map(|v| v.0).unwrap_or_default();
    let slots: Vec<Option<usize>> = values
        .iter()
        .map(|v| markers.iter().position(|m| m == v))
        .collect();
    // Each argument lands exactly once, or the text is not reusable.
    let reusable = (0..N).all(|i| slots.iter().filter(|s| **s == Some(i)).count() == 1);
    if reusable {
        remember(
            key,
            Shape::Args {
                sql: probe.sql,
                values,
                slots,
            },
        );
    } else {
        remember(key, Shape::Build);
    }
    build(args)
}

/// A statement of `values` built by `build`, its text written once per
/// `key` if `values` are exactly the values sea-query puts in it.
pub(crate) fn with_values(
    key: Key,
    backend: DbBackend,
    values: Vec<Value>,
    build: impl FnOnce() -> Statement,
) -> Statement {
    if let Some(shape) = shapes_read().get(&key) {
        match shape {
            Shape::Text(sql) => {
                let kept = statement(backend, sql.clone(), values);
                #[cfg(debug_assertions)]
                same_as_built(&key, &kept, build);
                return kept;
            }
            Shape::Args { .. } | Shape::Build => return build(),
        }
    }
    let built = build();
    let same = built.values.as_ref().map(|v| &v.0) == Some(&values);
    remember(
        key,
        if same {
            Shape::Text(built.sql.clone())
        } else {
            Shape::Build
        },
    );
    built
}

/// Debug builds (the tests) build every kept statement anyway and compare:
/// two call sites that share a key but build different statements would
/// otherwise only show as wrong SQL.
#[cfg(debug_assertions)]
fn same_as_built(key: &Key, kept: &Statement, build: impl FnOnce() -> Statement) {
    let built = build();
    assert!(
        built.sql == kept.sql && built.values == kept.values,
        "the SQL kept for {key:?} is not what its call site builds:\nkept:  {kept:?}\nbuilt: {built:?}"
    );
}

fn statement(backend: DbBackend, sql: String, values: Vec<Value>) -> Statement {
    Statement {
        sql,
        values: Some(Values(values)),
        db_backend: backend,
    }
}

/// The statement shapes whose text could not be kept and is written for
/// every execution (`site` of `entity`, backend). Empty unless a repository
/// builds a statement this cache cannot reuse; the conformance suite checks
/// it after every check, since such a shape is correct but only shows
/// itself as lost speed.
pub fn texts_built_each_time() -> Vec<String> {
    let mut out: Vec<String> = shapes_read()
        .iter()
        .filter(|(_, shape)| matches!(shape, Shape::Build))
        .map(|(k, _)| {
            let backend = if k.postgres { "PostgreSQL" } else { "SQLite" };
            format!("{} of {} ({backend})", k.site, k.entity)
        })
        .collect();
    out.sort();
    out
}

/// Whether `key`'s text is kept.
#[cfg(test)]
pub(crate) fn is_reused(key: &Key) -> bool {
    matches!(
        shapes_read().get(key),
        Some(Shape::Args { .. } | Shape::Text(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::sea_query::{Alias, Expr, Query, SqliteQueryBuilder};

    fn select(args: [Value; 2]) -> Statement {
        let [a, b] = args;
        let (sql, values) = Query::select()
            .column(Alias::new("x"))
            .from(Alias::new("t"))
            .and_where(Expr::col(Alias::new("a")).eq(a))
            .and_where(Expr::col(Alias::new("c")).eq(7))
            .and_where(Expr::col(Alias::new("b")).eq(b))
            .limit(1)
            .build(SqliteQueryBuilder);
        statement(DbBackend::Sqlite, sql, values.0)
    }

    #[test]
    fn arguments_land_where_the_first_build_put_them() {
        let key = Key::new::<u8>("test.select", 0, DbBackend::Sqlite);
        let first = with_args(key, DbBackend::Sqlite, ["p".into(), 5i64.into()], select);
        assert!(is_reused(&key));
        let second = with_args(key, DbBackend::Sqlite, ["q".into(), 6i64.into()], select);
        assert_eq!(first, select(["p".into(), 5i64.into()]));
        assert_eq!(second, select(["q".into(), 6i64.into()]));
    }

    #[test]
    fn an_argument_used_twice_is_built_every_time() {
        let twice = |args: [Value; 2]| {
            let [a, _] = args;
            select([a.clone(), a])
        };
        let key = Key::new::<u8>("test.twice", 0, DbBackend::Sqlite);
        let first = with_args(key, DbBackend::Sqlite, ["p".into(), 1i64.into()], twice);
        assert!(!is_reused(&key));
        assert_eq!(first, select(["p".into(), "p".into()]));
        let second = with_args(key, DbBackend::Sqlite, ["q".into(), 1i64.into()], twice);
        assert_eq!(second, select(["q".into(), "q".into()]));
    }

    #[test]
    fn listed_values_keep_the_text_only_when_they_match() {
        let build = |a: &str, b: i64| select([a.into(), b.into()]);
        let key = Key::new::<u8>("test.values", 0, DbBackend::Sqlite);
        let listed = vec!["p".into(), 7i32.into(), 5i64.into(), 1u64.into()];
        let first = with_values(key, DbBackend::Sqlite, listed.clone(), || build("p", 5));
        assert!(is_reused(&key), "{first:?} vs {listed:?}");
        let second = with_values(
            key,
            DbBackend::Sqlite,
            vec!["q".into(), 7i32.into(), 6i64.into(), 1u64.into()],
            || build("q", 6),
        );
        assert_eq!(second, build("q", 6));

        let wrong = Key::new::<u8>("test.values.wrong", 0, DbBackend::Sqlite);
        let built = with_values(wrong, DbBackend::Sqlite, vec!["p".into()], || build("p", 5));
        assert!(!is_reused(&wrong));
        assert_eq!(built, build("p", 5));
    }
}
