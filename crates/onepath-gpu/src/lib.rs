//! onepath-gpu (stub)
