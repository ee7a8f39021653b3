//! Decimal numbers from text, keeping the precision as written ("98.60" stays 9860×10⁻²).
//!
//! JSON payloads are parsed with `serde_json::value::RawValue` for numbers so the token is seen
//! exactly as the device wrote it; an `f64` would turn "98.60" into 98.6 and lose precision.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::reading::Decimal;

/// Why a number could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("not a decimal number")]
    NotANumber,
    #[error("too many digits for an exact decimal")]
    OutOfRange,
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` into an exact [`Decimal`].
pub fn parse_decimal(text: &str) -> Result<Decimal, NumberError> {
    let text = text.trim();
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa_text, exp_text) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa_text.find('.') {
        Some(i) => (&mantissa_text[..i], &mantissa_text[i + 1..]),
        None => (mantissa_text, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(NumberError::NotANumber);
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(NumberError::NotANumber);
    }
    let mut mantissa: i64 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
            .ok_or(NumberError::OutOfRange)?;
    }
    let mut exponent: i64 = -(frac_part.len() as i64);
    if let Some(exp_text) = exp_text {
        let digits = exp_text.strip_prefix(['+', '-']).unwrap_or(exp_text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
            return Err(NumberError::NotANumber);
        }
        let value: i64 = exp_text.parse().map_err(|_| NumberError::NotANumber)?;
        exponent += value;
    }
    let exponent = i8::try_from(exponent).map_err(|_| NumberError::OutOfRange)?;
    Ok(Decimal::new(
        if negative { -mantissa } else { mantissa },
        exponent,
    ))
}

/// A JSON number (or a numeric string) read with its written precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonDecimal(pub Decimal);

impl<'de> Deserialize<'de> for JsonDecimal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get().trim();
        // A numeric string ("98.6") is accepted too: DIY firmware often quotes numbers.
        let token = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        parse_decimal(token)
            .map(JsonDecimal)
            .map_err(|e| serde::de::Error::custom(format!("{e}: expected a number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_written_precision() {
        assert_eq!(parse_decimal("98.60"), Ok(Decimal::new(9860, -2)));
        assert_eq!(parse_decimal("72"), Ok(Decimal::new(72, 0)));
        assert_eq!(parse_decimal("-0.5"), Ok(Decimal::new(-5, -1)));
        assert_eq!(parse_decimal("+36.5"), Ok(Decimal::new(365, -1)));
        assert_eq!(parse_decimal("1.5e2"), Ok(Decimal::new(15, 1)));
        assert_eq!(parse_decimal("25E-1"), Ok(Decimal::new(25, -1)));
        assert_eq!(parse_decimal(".5"), Ok(Decimal::new(5, -1)));
        assert_eq!(parse_decimal("098"), Ok(Decimal::new(98, 0)));
    }

    #[test]
    fn rejects_non_numbers() {
        for bad in [
            "", "-", ".", "abc", "1.2.3", "1e", "1e+", "NaN", "--1", "1,5", "0x10",
        ] {
            assert_eq!(parse_decimal(bad), Err(NumberError::NotANumber), "{bad:?}");
        }
        assert_eq!(
            parse_decimal("99999999999999999999"),
            Err(NumberError::OutOfRange)
        );
        assert_eq!(parse_decimal("1e300"), Err(NumberError::OutOfRange));
    }

    #[test]
    fn json_token_is_read_verbatim() {
        let v: Vec<JsonDecimal> = serde_json::from_str(r#"[98.60, "37.0", 1e1]"#).expect("json");
        assert_eq!(v[0].0, Decimal::new(9860, -2));
        assert_eq!(v[1].0, Decimal::new(370, -1));
        assert_eq!(v[2].0, Decimal::new(1, 1));
        assert!(serde_json::from_str::<JsonDecimal>("true").is_err());
        assert!(serde_json::from_str::<JsonDecimal>("\"abc\"").is_err());
    }
}
