//! The error every state machine returns for a refused transition.

/// A state machine refused an event in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} {entity} {id}: it is {from}{hint}")]
pub struct TransitionRefused {
    pub entity: &'static str,
    pub id: String,
    pub from: &'static str,
    pub event: &'static str,
    /// What the user may do instead, starting with `; `, or empty.
    pub hint: &'static str,
}
