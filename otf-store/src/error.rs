//! The one place where driver errors become [`StoreError`]s.

use std::fmt::Display;

use otf_core::store::StoreError;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Classify a sea-orm error: constraint violations, serialisation failures,
/// deadlocks and a busy SQLite file are conflicts (retrying may help);
/// everything else means the database is unavailable.
pub(crate) fn db_err(e: DbErr) -> StoreError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(m)) => return StoreError::Conflict(m),
        Some(SqlErr::ForeignKeyConstraintViolation(m)) => return StoreError::Conflict(m),
        _ => {}
    }
    match &e {
        DbErr::Exec(RuntimeErr::SqlxError(s))
        | DbErr::Query(RuntimeErr::SqlxError(s))
        | DbErr::Conn(RuntimeErr::SqlxError(s)) => sqlx_err(s),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Classify an sqlx error (the event bus and the leader lock use sqlx
/// directly).
pub(crate) fn sqlx_err(e: &sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = e {
        let code = d.code().unwrap_or_default();
        // PostgreSQL: serialization_failure, deadlock_detected,
        // unique_violation, foreign_key_violation. SQLite: BUSY, LOCKED and
        // their extended codes, CONSTRAINT_UNIQUE / _PRIMARYKEY / _FOREIGNKEY.
        if matches!(
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
        ) {
            return StoreError::Conflict(d.message().to_string());
        }
    }
    StoreError::Unavailable(e.to_string())
}

/// A row holds something the core cannot accept (a corrupt or foreign
/// database); never a panic.
pub(crate) fn invalid(what: &str, e: impl Display) -> StoreError {
    StoreError::Unavailable(format!("the database holds an invalid {what}: {e}"))
}
