//! onepath-ref (stub)
