//! The layer check every crate of the workspace runs in its tests: the top-level modules declared in `lib.rs`
//! (`mod x;` lines, in order) are the layer order, lowest first; a module may use itself, its own submodules
//! and modules declared before it, never one declared after it; and no two modules (files) may import each
//! other, directly or through others.
//!
//! Imports are read from the source: `use` statements (braces expanded) and inline `crate::` / `super::` /
//! `self::` paths, outside comments and `#[cfg(test)]` modules. A path is resolved to the deepest module that
//! exists as a file; edges from a module to its own submodules (declarations and re-exports) are not counted.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::missing_safety_doc)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module: its path (`["model", "nn"]`), its source without comments, and without test modules too.
struct Module {
    path: Vec<String>,
    all_code: String,
    code: String,
}

/// Checks the crate whose `src` directory is `src`; the error lists every violation, one per line.
pub fn check(src: &Path) -> Result<(), String> {
    let modules = read_modules(src)?;
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    let root = modules
        .iter()
        .find(|m| m.path.is_empty())
        .ok_or("no lib.rs")?;
    let order = declared_modules(&root.all_code);
    let rank = |name: &str| order.iter().position(|m| m == name);
    let mut problems = Vec::new();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for module in &modules {
        for target in imports(module, &known) {
            if target.starts_with(&module.path) || target.is_empty() {
                continue;
            }
            edges
                .entry(module.path.clone())
                .or_default()
                .insert(target.clone());
            let (Some(from), Some(to)) = (module.path.first(), target.first()) else {
                continue;
            };
            if from == to {
                continue;
            }
            match (rank(from), rank(to)) {
                (Some(a), Some(b)) if b > a => problems.push(format!(
                    "{} uses {}, a later layer (lib.rs declares {from} before {to})",
                    module.path.join("::"),
                    target.join("::")
                )),
                (Some(_), None) | (None, _) => {
                    problems.push(format!("{} or {} is not declared in lib.rs", from, to))
                }
                _ => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!(
            "modules import each other: {}",
            cycle
                .iter()
                .map(|p| p.join("::"))
                .collect::<Vec<_>>()
                .join(" -> ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn read_modules(src: &Path) -> Result<Vec<Module>, String> {
    let mut files = Vec::new();
    collect_files(src, &mut files)?;
    files
        .into_iter()
        .map(|file| {
            let rel = file.strip_prefix(src).map_err(|e| e.to_string())?;
            let mut path: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let all_code = without_comments(&text);
            Ok(Module {
                path,
                code: without_tests(&all_code),
                all_code,
            })
        })
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `mod x;` / `pub mod x;` / `pub(crate) mod x;` declarations at the top of lib.rs, in order.
fn declared_modules(root: &str) -> Vec<String> {
    root.lines()
        .map(str::trim)
        .filter_map(|line| {
            let rest = line
                .strip_prefix("pub(crate) mod ")
                .or_else(|| line.strip_prefix("pub mod "))
                .or_else(|| line.strip_prefix("mod "))?;
            rest.strip_suffix(';').map(|name| name.trim().to_string())
        })
        .collect()
}

/// The source without `//` and `/* */` comments (string literals are left alone; code here does not hide
/// module paths in strings).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        if in_string {
            if bytes[i] == b'\\' {
                out.push_str(&text[i..(i + 2).min(text.len())]);
                i += 2;
                continue;
            }
            if bytes[i] == b'"' {
                in_string = false;
            }
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        if text[i..].starts_with("//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if text[i..].starts_with("/*") {
            let end = text[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |e| i + 2 + e + 2);
            i = end;
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            if c == '"' && !text[..i].ends_with('\'') {
                in_string = true;
            }
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The source without `#[cfg(test)]` items (test modules may use anything).
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // Skip the attributed item: up to the end of its braces, or its `;`.
        let brace = after.find('{');
        let semi = after.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The modules `module` refers to.
fn imports(module: &Module, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut paths: Vec<Vec<String>> = Vec::new();
    // `use` statements, with their braces expanded.
    let code = &module.code;
    let mut search = 0;
    while let Some(at) = code[search..].find("use ") {
        let start = search + at;
        search = start + 4;
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = code[start..].find(';') else {
            break;
        };
        let body: String = code[start + 4..start + end].split_whitespace().collect();
        for path in expand(&body) {
            paths.push(path.split("::").map(str::to_string).collect());
        }
        search = start + end;
    }
    // Inline paths.
    for prefix in ["crate::", "super::", "self::"] {
        let mut search = 0;
        while let Some(at) = code[search..].find(prefix) {
            let start = search + at;
            search = start + prefix.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path.split("::").map(str::to_string).collect());
        }
    }
    paths
        .into_iter()
        .filter_map(|p| resolve(&module.path, &p, known))
        .collect()
}

/// `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(body: &str) -> Vec<String> {
    let Some(open) = body.find('{') else {
        return vec![body.to_string()];
    };
    let head = &body[..open];
    // A `}` before the `{` means this is not a use tree (text that merely looks like one): keep it whole.
    let close = body.rfind('}').unwrap_or(body.len());
    if close <= open {
        return vec![body.to_string()];
    }
    let inner = &body[open + 1..close];
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in inner.chars() {
        match c {
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            expand(&p)
                .into_iter()
                .map(|e| format!("{head}{e}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The deepest known module a path names, relative to `from` for `super::` / `self::`.
fn resolve(from: &[String], path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let (mut base, rest): (Vec<String>, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (from.to_vec(), &path[1..]),
        Some("super") => {
            let mut base = from.to_vec();
            let mut i = 0;
            while path.get(i).map(String::as_str) == Some("super") {
                base.pop();
                i += 1;
            }
            (base, &path[i..])
        }
        _ => return None,
    };
    let mut best = base.clone();
    for segment in rest {
        let segment = segment.split(" as ").next().unwrap_or(segment);
        base.push(segment.to_string());
        if known.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

/// A cycle in the import graph, if there is one.
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, State>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match state.get(node) {
            Some(State::Done) => return None,
            Some(State::Open) => {
                let at = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node.clone(), State::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.clone(), State::Done);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(node, edges, &mut state, &mut stack) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_only_looks_like_a_use_tree_is_kept_whole() {
        assert_eq!(expand("a::{b,c::{d,e}}"), ["a::b", "a::c::d", "a::c::e"]);
        assert_eq!(expand("}:{e"), ["}:{e"]);
    }

    fn tree(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "clip-layers-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn later_layers_and_cycles_are_reported() {
        let ok = tree(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "pub struct A;"),
            (
                "b.rs",
                "use crate::a::A;\n// use crate::b::x; in a comment\n",
            ),
        ]);
        assert_eq!(check(&ok), Ok(()));
        let bad = tree(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            (
                "a.rs",
                "use crate::{b::B, c};\n#[cfg(test)]\nmod tests { use crate::c::C; }",
            ),
            ("b.rs", "pub struct B;"),
            ("c/mod.rs", "mod x;\nmod y;\npub use self::x::X;"),
            ("c/x.rs", "use super::y::Y;\npub struct X;"),
            ("c/y.rs", "pub struct Y; fn f() { crate::c::x::X; }"),
        ]);
        let err = check(&bad).unwrap_err();
        assert!(err.contains("a uses b, a later layer"), "{err}");
        assert!(err.contains("a uses c, a later layer"), "{err}");
        assert!(
            err.contains("modules import each other: c::x -> c::y -> c::x"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 3, "{err}");
    }
}
