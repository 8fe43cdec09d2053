//! Kubernetes resource quantities: `64Mi`, `1G`, `500m`, `1.5`, `2e3`.
//!
//! ```
//! use berth_spec::quantity::{parse_bytes, parse_millicores};
//! assert_eq!(parse_bytes("64Mi").unwrap(), 64 * 1024 * 1024);
//! assert_eq!(parse_millicores("500m").unwrap(), 500);
//! assert_eq!(parse_millicores("1.5").unwrap(), 1500);
//! ```

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{value:?} is not a valid quantity (examples: 64Mi, 1G, 500m, 0.5)")]
    Syntax { value: String },
    #[error("{value:?} is negative")]
    Negative { value: String },
    #[error("{value:?} is too large")]
    Overflow { value: String },
}

/// A parsed quantity as a decimal number times a multiplier: value = mantissa * 10^exp10 * 2^exp2.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Parsed {
    value: f64,
}

fn parse(s: &str) -> Result<Parsed, QuantityError> {
    let err = || QuantityError::Syntax {
        value: s.to_string(),
    };
    let t = s.trim();
    if t.is_empty() || t != s {
        return Err(err());
    }
    let (num, mult): (&str, f64) = if let Some(n) = t.strip_suffix("Ki") {
        (n, 1024f64)
    } else if let Some(n) = t.strip_suffix("Mi") {
        (n, 1024f64.powi(2))
    } else if let Some(n) = t.strip_suffix("Gi") {
        (n, 1024f64.powi(3))
    } else if let Some(n) = t.strip_suffix("Ti") {
        (n, 1024f64.powi(4))
    } else if let Some(n) = t.strip_suffix("Pi") {
        (n, 1024f64.powi(5))
    } else if let Some(n) = t.strip_suffix("Ei") {
        (n, 1024f64.powi(6))
    } else if let Some(n) = t.strip_suffix('n') {
        (n, 1e-9)
    } else if let Some(n) = t.strip_suffix('u') {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('k') {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('M') {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix('G') {
        (n, 1e9)
    } else if let Some(n) = t.strip_suffix('T') {
        (n, 1e12)
    } else if let Some(n) = t.strip_suffix('P') {
        (n, 1e15)
    } else if let Some(n) = t.strip_suffix('E') {
        (n, 1e18)
    } else {
        (t, 1.0)
    };
    // the number: [+-]digits[.digits][(e|E)[+-]digits]
    let b = num.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut had_digits = i > digits_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        had_digits |= i > f;
    }
    if !had_digits {
        return Err(err());
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        if mult != 1.0 {
            return Err(err());
        }
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return Err(err());
        }
    }
    if i != b.len() {
        return Err(err());
    }
    let v: f64 = num.parse().map_err(|_| err())?;
    if v < 0.0 {
        return Err(QuantityError::Negative {
            value: s.to_string(),
        });
    }
    let value = v * mult;
    if !value.is_finite() || value > u64::MAX as f64 / 1000.0 {
        return Err(QuantityError::Overflow {
            value: s.to_string(),
        });
    }
    Ok(Parsed { value })
}

/// Bytes (memory, storage); fractions round up, as Kubernetes does.
pub fn parse_bytes(s: &str) -> Result<u64, QuantityError> {
    Ok(parse(s)?.value.ceil() as u64)
}

/// CPU in millicores; fractions of a millicore round up.
pub fn parse_millicores(s: &str) -> Result<u64, QuantityError> {
    Ok((parse(s)?.value * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Syntax check only.
pub fn is_valid(s: &str) -> bool {
    parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("64Mi").unwrap(), 67_108_864);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("128974848").unwrap(), 128_974_848);
        assert_eq!(parse_bytes("129e6").unwrap(), 129_000_000);
        assert_eq!(parse_bytes("123Mi").unwrap(), 123 * 1024 * 1024);
        assert_eq!(parse_bytes("1.5Ki").unwrap(), 1536);
        assert_eq!(parse_bytes("500m").unwrap(), 1);
        assert_eq!(parse_bytes("0").unwrap(), 0);
    }

    #[test]
    fn millicores() {
        assert_eq!(parse_millicores("500m").unwrap(), 500);
        assert_eq!(parse_millicores("1").unwrap(), 1000);
        assert_eq!(parse_millicores("0.1").unwrap(), 100);
        assert_eq!(parse_millicores("2.5").unwrap(), 2500);
        assert_eq!(parse_millicores("250000u").unwrap(), 250);
    }

    #[test]
    fn rejects() {
        for bad in [
            "", "abc", "1.2.3", "Mi", "1 Mi", " 1", "1e", "1Mie3", "--1", "1Q", "-1", "1e400",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
