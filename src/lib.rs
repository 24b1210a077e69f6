//! onepath: one computation path per (sequence, position).
pub use onepath_gpu as gpu;
pub use onepath_mask as mask;
pub use onepath_ops as ops;
pub use onepath_ref as reference;
