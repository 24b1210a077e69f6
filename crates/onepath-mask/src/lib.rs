//! onepath-mask (stub)
