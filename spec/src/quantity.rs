//! Kubernetes resource quantities: `64Mi`, `1G`, `500m`, `1.5`, `2e3`.
//!
//! Exact integer arithmetic (no floating point): a quantity is
//! `digits × 10^exp10 × 2^exp2`, and conversions round up as Kubernetes does
//! (`0.5` bytes is 1 byte, `0.1m` CPU is 1 millicore).
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

/// `digits × 10^exp10 × 2^exp2`, non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    digits: u128,
    exp10: i32,
    exp2: u32,
}

const BINARY: [(&str, u32); 6] = [
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const DECIMAL: [(char, i32); 9] = [
    ('n', -9),
    ('u', -6),
    ('m', -3),
    ('k', 3),
    ('M', 6),
    ('G', 9),
    ('T', 12),
    ('P', 15),
    ('E', 18),
];

fn parse(s: &str) -> Result<Exact, QuantityError> {
    let syntax = || QuantityError::Syntax {
        value: s.to_string(),
    };
    let overflow = || QuantityError::Overflow {
        value: s.to_string(),
    };
    // suffix
    let (num, mut exp10, exp2) = if let Some((n, e2)) = BINARY
        .iter()
        .find_map(|(suf, e2)| s.strip_suffix(suf).map(|n| (n, *e2)))
    {
        (n, 0i32, e2)
    } else if let Some((n, e10)) = DECIMAL
        .iter()
        .find_map(|(suf, e10)| s.strip_suffix(*suf).map(|n| (n, *e10)))
    {
        (n, e10, 0)
    } else {
        (s, 0, 0)
    };
    let suffixed = num.len() != s.len();
    // sign
    let b = num.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    // digits[.digits]
    let mut digits: u128 = 0;
    let mut seen = 0usize;
    let push = |d: u8, digits: &mut u128| -> Result<(), QuantityError> {
        *digits = digits
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(d - b'0')))
            .ok_or_else(overflow)?;
        Ok(())
    };
    while i < b.len() && b[i].is_ascii_digit() {
        push(b[i], &mut digits)?;
        i += 1;
        seen += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            push(b[i], &mut digits)?;
            exp10 -= 1;
            i += 1;
            seen += 1;
        }
    }
    if seen == 0 {
        return Err(syntax());
    }
    // exponent (only without a suffix: `1e3`, `2E-2`)
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        if suffixed {
            return Err(syntax());
        }
        i += 1;
        let start = i;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let ds = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == ds {
            return Err(syntax());
        }
        let e: i32 = num[start..i].parse().map_err(|_| overflow())?;
        exp10 = exp10.checked_add(e).ok_or_else(overflow)?;
    }
    if i != b.len() {
        return Err(syntax());
    }
    if negative && digits != 0 {
        return Err(QuantityError::Negative {
            value: s.to_string(),
        });
    }
    Ok(Exact {
        digits,
        exp10,
        exp2,
    })
}

/// `ceil(q × 10^scale10)` as u64.
fn to_u64(s: &str, q: Exact, scale10: i32) -> Result<u64, QuantityError> {
    let overflow = || QuantityError::Overflow {
        value: s.to_string(),
    };
    if q.digits == 0 {
        return Ok(0);
    }
    let num = q
        .digits
        .checked_mul(1u128.checked_shl(q.exp2).ok_or_else(overflow)?)
        .ok_or_else(overflow)?;
    let e = q.exp10.saturating_add(scale10);
    let v = if e >= 0 {
        let p = 10u128.checked_pow(e.unsigned_abs()).ok_or_else(overflow)?;
        num.checked_mul(p).ok_or_else(overflow)?
    } else {
        match 10u128.checked_pow(e.unsigned_abs()) {
            Some(den) => num.div_ceil(den),
            // smaller than one unit but more than zero
            None => 1,
        }
    };
    u64::try_from(v).map_err(|_| overflow())
}

/// Bytes (memory, storage); fractions round up, as Kubernetes does.
pub fn parse_bytes(s: &str) -> Result<u64, QuantityError> {
    to_u64(s, parse(s)?, 0)
}

/// CPU in millicores; fractions of a millicore round up.
pub fn parse_millicores(s: &str) -> Result<u64, QuantityError> {
    to_u64(s, parse(s)?, 3)
}

/// Syntax check only (any size).
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
        assert_eq!(parse_bytes("2e3").unwrap(), 2000);
        assert_eq!(parse_bytes("123Mi").unwrap(), 123 * 1024 * 1024);
        assert_eq!(parse_bytes("1.5Ki").unwrap(), 1536);
        assert_eq!(parse_bytes("1.1Gi").unwrap(), 1_181_116_007); // 1181116006.4 rounded up
        assert_eq!(parse_bytes("500m").unwrap(), 1);
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert_eq!(parse_bytes("-0").unwrap(), 0);
        assert_eq!(parse_bytes("+1k").unwrap(), 1000);
        assert_eq!(parse_bytes("1.5").unwrap(), 2);
        assert_eq!(
            parse_bytes("16Ei").unwrap_err().to_string(),
            "\"16Ei\" is too large"
        );
        assert_eq!(parse_bytes("7Ei").unwrap(), 7 << 60);
        assert_eq!(parse_bytes("8Ei").unwrap(), 1 << 63);
        // exact where a float is not
        assert_eq!(
            parse_bytes("9007199254740993").unwrap(),
            9_007_199_254_740_993
        );
    }

    #[test]
    fn millicores() {
        assert_eq!(parse_millicores("500m").unwrap(), 500);
        assert_eq!(parse_millicores("1").unwrap(), 1000);
        assert_eq!(parse_millicores("0.1").unwrap(), 100);
        assert_eq!(parse_millicores("2.5").unwrap(), 2500);
        assert_eq!(parse_millicores("1.5").unwrap(), 1500);
        assert_eq!(parse_millicores("250000u").unwrap(), 250);
        assert_eq!(parse_millicores("100n").unwrap(), 1);
        assert_eq!(parse_millicores("2e3").unwrap(), 2_000_000);
        assert_eq!(parse_millicores("1e-3").unwrap(), 1);
        assert_eq!(parse_millicores("1e-400").unwrap(), 1);
    }

    #[test]
    fn rejects() {
        for bad in [
            "", "abc", "1.2.3", "Mi", "1 Mi", " 1", "1 ", "1e", "1Mie3", "--1", "1Q", ".", "1e+",
            "1ki", "1KiB", "0x10", "1,5",
        ] {
            assert_eq!(
                parse(bad),
                Err(QuantityError::Syntax { value: bad.into() }),
                "{bad:?}"
            );
        }
        assert!(matches!(parse("-1"), Err(QuantityError::Negative { .. })));
        assert!(matches!(
            parse_bytes("1e400"),
            Err(QuantityError::Overflow { .. })
        ));
        assert!(is_valid("1e400"));
    }
}
