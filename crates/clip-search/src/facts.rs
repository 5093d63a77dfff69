//! What is learnt from an image file's bytes besides its pixels: the content hash that recognises a renamed
//! or copied file, and the EXIF date taken and camera, read from the container without decoding pixels.

use sha2::{Digest, Sha256};

use crate::store::ContentHash;

pub fn content_hash(bytes: &[u8]) -> ContentHash {
    Sha256::digest(bytes).into()
}

/// EXIF facts of an image, when its container carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExifFacts {
    /// DateTimeOriginal (else DateTime) as `YYYY-MM-DDTHH:MM:SS`.
    pub taken: Option<String>,
    /// Make and Model, joined by a space (the make left out when the model already starts with it).
    pub camera: Option<String>,
}

pub fn exif_facts(bytes: &[u8]) -> ExifFacts {
    let mut cursor = std::io::Cursor::new(bytes);
    let Ok(data) = exif::Reader::new().read_from_container(&mut cursor) else {
        return ExifFacts::default();
    };
    let text = |tag| {
        data.get_field(tag, exif::In::PRIMARY)
            .and_then(|f| match &f.value {
                exif::Value::Ascii(parts) => parts
                    .first()
                    .map(|p| {
                        String::from_utf8_lossy(p)
                            .trim()
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .filter(|s| !s.is_empty()),
                _ => None,
            })
    };
    let taken = text(exif::Tag::DateTimeOriginal)
        .or_else(|| text(exif::Tag::DateTime))
        .and_then(|t| exif_date(&t));
    let camera = match (text(exif::Tag::Make), text(exif::Tag::Model)) {
        (Some(make), Some(model)) if model.starts_with(&make) => Some(model),
        (Some(make), Some(model)) => Some(format!("{make} {model}")),
        (make, model) => make.or(model),
    };
    ExifFacts { taken, camera }
}

/// `2019:07:04 18:30:00` -> `2019-07-04T18:30:00`; anything else (blank dates `0000:00:00`) -> None.
fn exif_date(text: &str) -> Option<String> {
    let b = text.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19))
    {
        return None;
    }
    if &text[0..4] == "0000" {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}",
        &text[0..4],
        &text[5..7],
        &text[8..10],
        &text[11..13],
        &text[14..16],
        &text[17..19]
    ))
}

/// A UNIX time in nanoseconds as `YYYY-MM-DDTHH:MM:SS` (UTC).
pub fn utc_date(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Checks a `--after`/`--before` date (`YYYY-MM-DD`, optionally `THH:MM[:SS]` or with a space) and returns it in
/// the stored form's prefix, which compares correctly as text.
pub fn parse_date_bound(text: &str) -> Result<String, String> {
    let t = text.trim().replacen(' ', "T", 1);
    let b = t.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let date_ok = b.len() >= 10
        && (0..4).all(digit)
        && b[4] == b'-'
        && digit(5)
        && digit(6)
        && b[7] == b'-'
        && digit(8)
        && digit(9);
    let month: u32 = t.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(0);
    let day: u32 = t.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(0);
    let time_ok = match b.len() {
        10 => true,
        16 => b[10] == b'T' && digit(11) && digit(12) && b[13] == b':' && digit(14) && digit(15),
        19 => {
            b[10] == b'T'
                && digit(11)
                && digit(12)
                && b[13] == b':'
                && digit(14)
                && digit(15)
                && b[16] == b':'
                && digit(17)
                && digit(18)
        }
        _ => false,
    };
    if date_ok && time_ok && (1..=12).contains(&month) && (1..=31).contains(&day) {
        Ok(t)
    } else {
        Err(format!(
            "{text:?} is not a date (YYYY-MM-DD, optionally followed by THH:MM or THH:MM:SS)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00");
        // 2000-02-29T12:34:56Z (leap day), from `date -u -d 2000-02-29T12:34:56 +%s`.
        assert_eq!(utc_date(951_827_696 * 1_000_000_000), "2000-02-29T12:34:56");
        assert_eq!(utc_date(-1_000_000_000), "1969-12-31T23:59:59");
    }

    #[test]
    fn exif_dates_are_normalised_and_blank_ones_dropped() {
        assert_eq!(
            exif_date("2019:07:04 18:30:00").as_deref(),
            Some("2019-07-04T18:30:00")
        );
        assert_eq!(exif_date("0000:00:00 00:00:00"), None);
        assert_eq!(exif_date("    :  :     :  :  "), None);
        assert_eq!(exif_date("2019:07"), None);
    }

    #[test]
    fn date_bounds_accept_dates_and_times_only() {
        assert_eq!(parse_date_bound("2020-01-31").as_deref(), Ok("2020-01-31"));
        assert_eq!(
            parse_date_bound("2020-01-31 08:15").as_deref(),
            Ok("2020-01-31T08:15")
        );
        assert_eq!(
            parse_date_bound("2020-01-31T08:15:09").as_deref(),
            Ok("2020-01-31T08:15:09")
        );
        for bad in ["2020-13-01", "2020-1-1", "yesterday", "", "2020-01-31T8"] {
            assert!(parse_date_bound(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exif_of_a_file_without_exif_is_empty() {
        assert_eq!(exif_facts(b"not an image"), ExifFacts::default());
    }
}
