//! Secret bytes: RES, CK, IK (TS 33.102 §6.3) and a software SIM's K and OPc.
//!
//! A [`Secret`] never shows its bytes through `Debug` (it prints `<redacted N bytes>`), has no
//! `Display`, and overwrites its bytes with zeros when dropped (`zeroize`). Reading the bytes
//! takes an explicit [`Secret::expose`], so every place that handles one can be found with a
//! search.

use std::fmt;
use zeroize::Zeroizing;

/// Bytes that must never reach a log, an error message or a `Debug` print.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Take ownership of `bytes` (they are zeroized when the secret is dropped).
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// Copy `bytes` into a new secret; the caller zeroizes its own copy if it must.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Secret::new(bytes.to_vec())
    }

    /// The secret bytes. Callers must not log or format them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A 128-bit key (K, OPc) that is zeroized on drop and redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Key128(Zeroizing<[u8; 16]>);

impl Key128 {
    /// Take the 16 key bytes.
    pub fn new(bytes: [u8; 16]) -> Self {
        Key128(Zeroizing::new(bytes))
    }

    /// The key bytes. Callers must not log or format them.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for Key128 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted 16 bytes>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from_slice(&[0xAB; 8]);
        assert_eq!(format!("{s:?}"), "<redacted 8 bytes>");
        assert_eq!(s.len(), 8);
        let k = Key128::new([0xCD; 16]);
        assert_eq!(format!("{k:?}"), "<redacted 16 bytes>");
        let shown = format!("{k:?}{s:?}{:?}", Some(&s)).to_lowercase();
        assert!(!shown.contains("abab") && !shown.contains("cdcd") && !shown.contains("171"));
    }
}
