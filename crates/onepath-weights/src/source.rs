//! Where a shard's bytes live: an owned buffer (wasm, tests) or a memory map (native).

use std::ops::Deref;

/// The bytes of one safetensors file. Parsing only ever sees `&[u8]`, so the same code path
/// serves memory-mapped files on native targets and fetched buffers on wasm.
pub enum ByteSource {
    /// Bytes owned in memory (e.g. fetched in the browser).
    Owned(Vec<u8>),
    /// A read-only memory map of a file (native only).
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
}

impl Deref for ByteSource {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ByteSource::Owned(v) => v,
            #[cfg(not(target_arch = "wasm32"))]
            ByteSource::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for ByteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ByteSource::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            #[cfg(not(target_arch = "wasm32"))]
            ByteSource::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
        }
    }
}

impl From<Vec<u8>> for ByteSource {
    fn from(v: Vec<u8>) -> Self {
        ByteSource::Owned(v)
    }
}

/// Memory-maps `path` read-only.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn map_file(path: &std::path::Path) -> crate::Result<ByteSource> {
    let io = |source| crate::WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        // mmap of an empty file fails on some platforms; an empty buffer parses to a clear error.
        return Ok(ByteSource::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only and the checkpoint files are not expected to be modified
    // while loaded; like every mmap-based safetensors loader we accept that a concurrent
    // truncation by another process is outside our control.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(ByteSource::Mapped(map))
}
