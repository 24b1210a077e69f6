//! onepath-weights (stub)
