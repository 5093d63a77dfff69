//! Shard lists as webdataset and open_clip write them: `shards/{00000..00009}.tar` expands to ten names (the
//! width of the first bound is kept: zero-padded), `{a,b}` to alternatives, and `::` joins several lists.

use crate::error::{ClipError, Result};

/// The most names one pattern may expand to (a typo such as `{0..99999999}` fails instead of allocating).
const MAX_EXPANSION: usize = 1_000_000;

/// Every name `pattern` stands for, in order.
pub fn expand(pattern: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in pattern.split("::").filter(|p| !p.is_empty()) {
        expand_into(part, &mut out)?;
    }
    if out.is_empty() {
        return Err(bad(pattern, "it names no files"));
    }
    Ok(out)
}

fn bad(pattern: &str, reason: &str) -> ClipError {
    ClipError::InvalidInput(format!("shard pattern {pattern:?}: {reason}"))
}

fn expand_into(pattern: &str, out: &mut Vec<String>) -> Result<()> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(bad(pattern, "'}' without '{'"));
        }
        out.push(pattern.to_string());
        return Ok(());
    };
    let close = pattern[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or_else(|| bad(pattern, "'{' without '}'"))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let choices: Vec<String> = if let Some((lo, hi)) = body.split_once("..") {
        let width = lo.len();
        let parse = |s: &str| {
            s.parse::<u64>().map_err(|_| {
                bad(
                    pattern,
                    &format!("{s:?} is not a number in a {{a..b}} range"),
                )
            })
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if hi < lo {
            return Err(bad(pattern, &format!("the range {lo}..{hi} is empty")));
        }
        if hi - lo >= MAX_EXPANSION as u64 {
            return Err(bad(pattern, &format!("the range {lo}..{hi} is too large")));
        }
        (lo..=hi).map(|n| format!("{n:0width$}")).collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    for choice in choices {
        if out.len() >= MAX_EXPANSION {
            return Err(bad(pattern, "it expands to too many names"));
        }
        expand_into(&format!("{head}{choice}{tail}"), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn ranges_lists_and_joins() {
        assert_eq!(
            expand("s/{0008..0010}.tar").unwrap(),
            ["s/0008.tar", "s/0009.tar", "s/0010.tar"]
        );
        assert_eq!(
            expand("{a,b}-{1..2}.tar::c.tar").unwrap(),
            ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar", "c.tar"]
        );
        assert_eq!(expand("plain.tar").unwrap(), ["plain.tar"]);
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for p in ["{1..", "x}", "{3..1}", "{a..b}", "{0..99999999999}", "::"] {
            assert!(expand(p).is_err(), "{p}");
        }
    }
}
