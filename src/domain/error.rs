use std::fmt;

/// A client-supplied value that cannot be accepted. `field` is the JSON field
/// or query parameter it came from, so the client knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Rejects strings PostgreSQL `text` cannot store (NUL) before they reach it.
pub(crate) fn reject_nul(s: &str) -> Result<(), String> {
    if s.contains('\0') { Err("must not contain NUL characters".into()) } else { Ok(()) }
}
