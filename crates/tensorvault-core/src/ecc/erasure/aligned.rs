//! Shard buffers aligned to 64 bytes (a cache line): the SIMD kernels load 32 bytes at a time, and a
//! buffer at the allocator's usual 16-byte offset makes every other load straddle two cache lines,
//! which costs up to half the kernel's throughput.

/// Alignment of [`AlignedBuf`] data.
pub const ALIGN: usize = 64;

/// A zero-initialised byte buffer whose data starts on a 64-byte boundary.
#[derive(Debug, Clone)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes, 64-byte aligned.
    #[must_use]
    pub fn zeroed(len: usize) -> Self {
        let raw = vec![0u8; len + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self { raw, off, len }
    }

    /// The bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        self.raw
            .get(self.off..self.off + self.len)
            .unwrap_or_default()
    }

    /// The bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.raw
            .get_mut(self.off..self.off + self.len)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_sized() {
        for len in [0usize, 1, 63, 64, 4096, 100_001] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.as_slice().len(), len);
            assert_eq!(b.as_mut_slice().as_ptr() as usize % ALIGN, 0);
            assert!(b.as_slice().iter().all(|&x| x == 0));
        }
    }
}
