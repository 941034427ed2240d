//! The one place where driver errors become [`StoreError`]s.

use std::fmt::Display;

use otf_core::store::{Cause, StoreError};
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Classify a sea-orm error: constraint violations, serialisation failures,
/// deadlocks and a busy SQLite file are conflicts (retrying may help);
/// everything else means the database is unavailable.
pub(crate) fn db_err(e: DbErr) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(m)) => {
            return StoreError::Conflict(Cause::saying(m, e))
        }
        Some(SqlErr::ForeignKeyConstraintViolation(m)) => {
            return StoreError::Conflict(Cause::saying(m, e))
        }
        _ => {}
    }
    // A driver error says what it is without sea-orm's wrapping.
    let (conflict, message) = match &e {
        DbErr::Exec(RuntimeErr::SqlxError(s))
        | DbErr::Query(RuntimeErr::SqlxError(s))
        | DbErr::Conn(RuntimeErr::SqlxError(s)) => (conflict_of(s), s.to_string()),
        _ => (None, e.to_string()),
    };
    match conflict {
        Some(m) => StoreError::Conflict(Cause::saying(m, e)),
        None => StoreError::Unavailable(Cause::saying(message, e)),
    }
}

/// Classify an sqlx error (the event bus and the leader lock use sqlx
/// directly); the error is kept as the source of an unavailable store.
pub(crate) fn sqlx_err(e: sqlx::Error) -> StoreError {
    match conflict_of(&e) {
        Some(m) => StoreError::Conflict(Cause::saying(m, e)),
        None => StoreError::Unavailable(Cause::of(e)),
    }
}

/// The message of an sqlx error that is a conflict (retrying may help).
fn conflict_of(e: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    let code = d.code().unwrap_or_default();
    // PostgreSQL: serialization_failure, deadlock_detected, unique_violation,
    // foreign_key_violation. SQLite: BUSY, LOCKED and their extended codes,
    // CONSTRAINT_UNIQUE / _PRIMARYKEY / _FOREIGNKEY.
    matches!(
        code.as_ref(),
        "40001"
            | "40P01"
            | "23505"
            | "23503"
            | "5"
            | "6"
            | "517"
            | "261"
            | "262"
            | "1555"
            | "2067"
            | "787"
    )
    .then(|| d.message().to_string())
}

/// A row holds something the core cannot accept (a corrupt or foreign
/// database); never a panic.
pub(crate) fn invalid(what: &str, e: impl Display) -> StoreError {
    StoreError::unavailable(format!("the database holds an invalid {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_database_keeps_the_drivers_error_as_its_source() {
        let e = db_err(DbErr::Custom("the disk is on fire".into()));
        assert!(matches!(e, StoreError::Unavailable(_)));
        assert_eq!(
            e.to_string(),
            "the database is unavailable: Custom Error: the disk is on fire"
        );
        let cause = std::error::Error::source(&e).expect("the cause");
        let driver = cause.source().expect("the driver's error");
        assert!(driver.downcast_ref::<DbErr>().is_some(), "{driver}");
    }
}
