//! Stable hashes of normalised specs: a pod is replaced only when its hash changes.

use sha2::{Digest, Sha256};

/// Short hex digest (10 chars) of the canonical JSON of `value`.
///
/// serde_json writes struct fields in declaration order and `BTreeMap`s sorted,
/// so equal specs always give equal hashes.
pub fn spec_hash<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&json);
    hex::encode(&digest[..5])
}

/// Kubernetes-style short suffix (lowercase consonants and digits) derived from a seed.
pub fn name_suffix(seed: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = Sha256::digest(seed.as_bytes());
    digest
        .iter()
        .take(len)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_equal_hashes() {
        assert_eq!(spec_hash(&vec![1, 2]), spec_hash(&vec![1, 2]));
        assert_ne!(spec_hash(&vec![1, 2]), spec_hash(&vec![2, 1]));
        assert_eq!(spec_hash(&"x").len(), 10);
    }

    #[test]
    fn suffix_is_stable_and_safe() {
        let s = name_suffix("web-abc-0", 5);
        assert_eq!(s, name_suffix("web-abc-0", 5));
        assert_eq!(s.len(), 5);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
