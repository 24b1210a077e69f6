//! onepath-ops (stub)
