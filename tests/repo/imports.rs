//! Imports run one way: no file under `src/` may reach itself through `use` paths and inline
//! `crate::`/`super::` paths (ARCHITECTURE.md's rule, checked here rather than by reading).
//!
//! A small resolver over the source text: each file is a module (`a/b.rs` and `a/b/mod.rs` are
//! `a::b`); a path is followed down the module tree as far as modules exist, and a name that a
//! module re-exports (`pub use`) is followed to where it is defined, so a `mod.rs` that only
//! re-exports its children is not made a hub of false circles. Test modules (`#[cfg(test)]`) and
//! comments are left out: they are not the architecture. An edge from a file to a module it
//! merely declares (`mod x;`) is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file relative to `src/` (`cpu/dot/mod.rs` -> `["cpu", "dot"]`);
/// `None` for the binary's root, which is not part of the library.
fn module_of(rel: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    match last.as_str() {
        "lib.rs" if parts.is_empty() => Some(parts),
        "main.rs" if parts.is_empty() => None,
        "mod.rs" => Some(parts),
        file => {
            parts.push(file.trim_end_matches(".rs").to_string());
            Some(parts)
        }
    }
}

/// The source without comments, string and char literals, and `#[cfg(test)]` items.
fn code_of(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += rest[body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            out.push_str("\"\"");
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            i = j + 1;
            out.push_str("\"\"");
        } else if bytes[i] == b'\'' && is_char_literal(rest) {
            let len = rest[1..].find('\'').map_or(rest.len(), |e| e + 2);
            i += len;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    strip_test_items(&out)
}

/// `'x'` or `'\n'` rather than a lifetime `'a`.
fn is_char_literal(rest: &str) -> bool {
    let mut chars = rest.chars().skip(1);
    matches!(
        (chars.next(), chars.next()),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// Removes every item that follows `#[cfg(test)]` (a brace-delimited module or function).
fn strip_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find('{') else {
            return out;
        };
        let end = matching_brace(&after[open..]).map_or(after.len(), |e| open + e);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The paths a `use` tree names: `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        // `a::b as c` keeps its path.
        let path = tree.split(" as ").next().unwrap_or(&tree);
        return vec![path.split("as").next().unwrap_or(path).to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let mut parts = vec![];
    let (mut depth, mut start) = (0, 0);
    for (j, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..j]);
                start = j + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(expand_use)
        .map(|p| match p.as_str() {
            "self" => prefix.trim_end_matches("::").to_string(),
            _ => format!("{prefix}{p}"),
        })
        .collect()
}

/// The file's code split by inline modules (`mod reference { ... }`): each module's path
/// below the file's, with its own code (paths inside it are relative to it).
fn inline_modules(code: &str) -> Vec<(Vec<String>, String)> {
    let mut outer = String::new();
    let mut inner = vec![];
    let mut rest = code;
    while let Some(at) = find_word(rest, "mod") {
        let after = &rest[at + 3..];
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let head = after.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !head.starts_with('{') {
            outer.push_str(&rest[..at + 3]);
            rest = after;
            continue;
        }
        let open = after.len() - head.len();
        let close = matching_brace(&after[open..]).map_or(after.len(), |e| open + e);
        outer.push_str(&rest[..at]);
        for (path, code) in inline_modules(&after[open + 1..close.saturating_sub(1)]) {
            inner.push(([vec![name.clone()], path].concat(), code));
        }
        rest = &after[close..];
    }
    outer.push_str(rest);
    [vec![(vec![], outer)], inner].concat()
}

/// The length up to and including the brace that closes the one `s` starts with.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (j, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// What one file says: its `use` paths (with whether each is a `pub use`) and inline paths.
struct Source {
    uses: Vec<(String, bool)>,
    inline: Vec<String>,
}

fn parse(code: &str) -> Source {
    let mut uses = vec![];
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')');
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        let tree = after[..end].trim();
        uses.extend(expand_use(tree).into_iter().map(|p| (p, public)));
        rest = &after[end..];
    }
    Source {
        uses,
        inline: inline_paths(code),
    }
}

/// Every path with a `::` in the code (`crate::cpu::x`, `super::Y`, `child::f`): which of them
/// name modules of ours is for the resolver to say.
fn inline_paths(code: &str) -> Vec<String> {
    let mut out = vec![];
    let mut chars = code.char_indices().peekable();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    while let Some((i, c)) = chars.next() {
        if !(c.is_alphabetic() || c == '_') || code[..i].ends_with(|p: char| word(p) || p == ':') {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek() {
            if word(d) || d == ':' {
                end = j + d.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let path = code[i..end].trim_end_matches(':');
        if path.contains("::") {
            out.push(path.to_string());
        }
    }
    out
}

/// The first occurrence of `word` as a whole word followed by whitespace.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = s[from..].find(word) {
        let i = from + at;
        let before_ok = s[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after_ok = s[i + word.len()..]
            .chars()
            .next()
            .is_some_and(char::is_whitespace);
        if before_ok && after_ok {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// The library's modules: each module path with its file and what the file says.
struct Crate {
    files: BTreeMap<Vec<String>, (String, Source)>,
}

impl Crate {
    fn load(src: &Path) -> Crate {
        let mut paths = vec![];
        rust_files(src, &mut paths);
        let mut files = BTreeMap::new();
        for path in paths {
            let rel = path.strip_prefix(src).expect("under src/");
            let Some(module) = module_of(rel) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let name = rel.to_string_lossy().replace('\\', "/");
            for (inner, code) in inline_modules(&code_of(&text)) {
                let path = [&module[..], &inner[..]].concat();
                files.insert(path, (name.clone(), parse(&code)));
            }
        }
        Crate { files }
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.files.contains_key(path)
    }

    /// The absolute segments of `path` as written in module `from`, or `None` for another crate.
    fn absolute(&self, from: &[String], path: &str) -> Option<Vec<String>> {
        let mut segments = path.split("::").filter(|s| !s.is_empty());
        let first = segments.next()?;
        let mut at: Vec<String> = match first {
            "crate" | "qwen" => vec![],
            "super" => from[..from.len().saturating_sub(1)].to_vec(),
            "self" => from.to_vec(),
            child => {
                let mut p = from.to_vec();
                p.push(child.to_string());
                if !self.is_module(&p) {
                    return None; // an external crate or a local item
                }
                p
            }
        };
        for s in segments {
            match s {
                "super" => {
                    at.pop();
                }
                s => at.push(s.to_string()),
            }
        }
        Some(at)
    }

    /// The file that defines what `path` (absolute) names, following re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Option<Vec<String>> {
        let mut module = vec![];
        let mut i = 0;
        while i < path.len() && self.is_module(&[&module[..], &path[i..=i]].concat()) {
            module.push(path[i].clone());
            i += 1;
        }
        let Some(item) = path.get(i) else {
            return Some(module);
        };
        if depth < 8 {
            let (_, source) = &self.files[&module];
            // A name re-exported here is followed to its source; a glob only when no name is.
            let reexports = source.uses.iter().filter(|(_, public)| *public);
            let named = reexports
                .clone()
                .find(|(u, _)| u.rsplit("::").next() == Some(item));
            let glob = reexports.clone().find(|(u, _)| u.ends_with("::*"));
            if let Some((used, _)) = named {
                if let Some(abs) = self.absolute(&module, used) {
                    return self.resolve(&abs, depth + 1);
                }
            } else if let Some((used, _)) = glob {
                if let Some(mut abs) = self.absolute(&module, used) {
                    abs.pop();
                    abs.push(item.clone());
                    return self.resolve(&abs, depth + 1);
                }
            }
        }
        Some(module)
    }

    /// Edges file -> file of the whole library.
    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, (name, source)) in &self.files {
            let paths = source
                .uses
                .iter()
                .map(|(p, _)| p)
                .chain(source.inline.iter());
            for path in paths {
                let Some(abs) = self.absolute(module, path) else {
                    continue;
                };
                let Some(target) = self.resolve(&abs, 0) else {
                    continue;
                };
                // A parent reaching into its own children through `mod` items is not an import
                // of itself; a use of the module itself (`use super::x;`) names that file.
                let target = &self.files[&target].0;
                if target != name {
                    edges
                        .entry(name.clone())
                        .or_default()
                        .insert(target.clone());
                }
            }
        }
        edges
    }
}

/// Strongly connected groups of more than one file (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                if !s.index.contains_key(w.as_str()) {
                    visit(s, w);
                    let lw = s.low[w.as_str()];
                    let lv = s.low[v].min(lw);
                    s.low.insert(v, lv);
                } else if s.on_stack.contains(w.as_str()) {
                    let lv = s.low[v].min(s.index[w.as_str()]);
                    s.low.insert(v, lv);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = vec![];
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.out.push(group);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on_stack: BTreeSet::new(),
        out: vec![],
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_file_of_the_library_imports_itself_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = Crate::load(&src);
    let edges = krate.edges();
    let found = circles(&edges);
    let described: Vec<String> = found
        .iter()
        .map(|group| {
            let inside: Vec<String> = group
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| group.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            format!("[{}]", inside.join(", "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles between src/ files:\n{}",
        described.join("\n")
    );
}

#[test]
fn the_resolver_finds_a_planted_circle() {
    let a = parse(&code_of("use crate::b::B;\npub struct A;"));
    let b = parse(&code_of("pub struct B(crate::a::A);\n// use crate::c;"));
    let c = parse(&code_of(
        "#[cfg(test)]\nmod tests { use crate::a::A; }\npub struct C;",
    ));
    let krate = Crate {
        files: BTreeMap::from([
            (
                vec![],
                (
                    "lib.rs".to_string(),
                    parse("pub mod a; pub mod b; pub mod c;"),
                ),
            ),
            (vec!["a".to_string()], ("a.rs".to_string(), a)),
            (vec!["b".to_string()], ("b.rs".to_string(), b)),
            (vec!["c".to_string()], ("c.rs".to_string(), c)),
        ]),
    };
    let edges = krate.edges();
    assert_eq!(
        circles(&edges),
        vec![vec!["a.rs".to_string(), "b.rs".to_string()]]
    );
    assert!(
        !edges.contains_key("c.rs"),
        "a test module's imports do not count"
    );
}

#[test]
fn use_trees_expand_to_paths() {
    assert_eq!(
        expand_use("super::{a, b::{C, self}, d as e}"),
        ["super::a", "super::b::C", "super::b", "super::d"]
    );
}
