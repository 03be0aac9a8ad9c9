//! Values with units in the config file: byte sizes ("256KiB"), durations ("5s", "2h 30m") and
//! expiry caps ("never"). Each type deserializes from either an integer or a string, so that a bad
//! value is reported by the TOML deserializer with its key and position.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

const SIZE_UNITS: &str = "B, KB, KiB, MB, MiB, GB, GiB, TB or TiB";
const DURATION_EXAMPLES: &str = "e.g. \"500ms\", \"5s\", \"10m\", \"2h 30m\", \"7d\"";

/// Parses a byte count: digits, then an optional unit (case-insensitive, space allowed).
/// Decimal units are powers of 1000 (`KB`, `MB`, ...), binary ones powers of 1024 (`KiB`, `MiB`, ...).
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!(
            "invalid size \"{text}\": expected a whole number of bytes with an optional unit ({SIZE_UNITS}), e.g. \"256KiB\""
        ));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size \"{text}\": unknown unit \"{}\" (use {SIZE_UNITS})",
                unit.trim()
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

/// Parses a duration in humantime syntax ("5s", "1h 30m", "250ms").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration \"{text}\": {e} ({DURATION_EXAMPLES})"))
}

/// A number of bytes: a non-negative integer, or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a number of bytes, as an integer or a string like \"256KiB\""
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A duration: a string in humantime syntax, or an integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a duration, as a string like \"5s\" or an integer number of seconds"
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Ok(DurationValue(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                u64::try_from(v)
                    .map(|s| DurationValue(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("invalid duration {v}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A cap in whole seconds that may be "never" (no cap): `None` is never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryValue(pub Option<u32>);

impl<'de> Deserialize<'de> for ExpiryValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ExpiryValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "\"never\", a duration like \"2h\", or an integer number of seconds"
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ExpiryValue, E> {
                whole_seconds(Duration::from_secs(v), u32::MAX as u64)
                    .map(|s| ExpiryValue(Some(s as u32)))
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ExpiryValue, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "invalid duration {v}: must not be negative"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ExpiryValue, E> {
                if v.trim().eq_ignore_ascii_case("never") {
                    return Ok(ExpiryValue(None));
                }
                let d = parse_duration(v).map_err(|e| E::custom(format!("{e}, or \"never\"")))?;
                whole_seconds(d, u32::MAX as u64)
                    .map(|s| ExpiryValue(Some(s as u32)))
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A number of seconds that fits the 16-bit keep alive field: an integer, or a duration string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds16(pub u16);

impl<'de> Deserialize<'de> for Seconds16 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds16;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a number of seconds up to 65535, or a duration like \"10m\""
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds16, E> {
                whole_seconds(Duration::from_secs(v), u16::MAX as u64)
                    .map(|s| Seconds16(s as u16))
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds16, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "invalid duration {v}: must not be negative"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds16, E> {
                let d = parse_duration(v).map_err(E::custom)?;
                whole_seconds(d, u16::MAX as u64)
                    .map(|s| Seconds16(s as u16))
                    .map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// The duration in whole seconds, at most `max`.
fn whole_seconds(d: Duration, max: u64) -> Result<u64, String> {
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "invalid duration \"{}\": must be a whole number of seconds",
            humantime::format_duration(d)
        ));
    }
    if d.as_secs() > max {
        return Err(format!(
            "invalid duration \"{}\": at most {max} seconds ({}) fit the MQTT field",
            humantime::format_duration(d),
            humantime::format_duration(Duration::from_secs(max))
        ));
    }
    Ok(d.as_secs())
}
