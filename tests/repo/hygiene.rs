//! Repository hygiene: no tracked text file names a machine-local absolute path.
//!
//! A path written into the repository (code, scripts, documents, fixtures) must mean the same
//! thing on every machine that checks it out. So every absolute path in a tracked text file must
//! start at one of these roots:
//!
//! - `/usr`, `/proc`, `/dev`, `/sys`: the system's own software and interfaces, the same on every
//!   Unix-like machine (`/usr/local/cuda`, `/proc/meminfo`, `/dev/null`);
//! - `/nonexistent`: a path that by construction exists nowhere, for tests of missing files.
//!
//! Anything else (a home folder, a checkout's location, a mounted work disk, and also `/tmp`) is
//! machine-local: write it relative to the repository root (`target/...` for scratch files,
//! which git ignores), as `$HOME/...` or `~/...`, or through a variable or `mktemp`.
//!
//! What counts as an absolute path: a `/` at the start of a line or after whitespace, a quote, a
//! backquote, `(`, `[`, `=`, `,`, `:`, `;`, `|` or `>`, followed by a name, another `/` and more of a
//! path: at least two components, so that `/exit`, `</think>`, URLs and `a/b` ratios do not count.
//! `.gitignore` is skipped (a leading `/` there anchors a pattern at the repository root), and so is
//! any file with a NUL byte (models, gzipped fixtures). The files are the ones `git ls-files`
//! lists; without git (a copy of the tree, not a checkout) every file below the root except `.git`
//! and `target` folders is read instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Roots an absolute path may start at (see the module comment for why each is here).
const ALLOWED_ROOTS: [&str; 5] = ["usr", "proc", "dev", "sys", "nonexistent"];

/// Files whose leading `/` is not the filesystem root.
const SKIPPED_FILE_NAMES: [&str; 1] = [".gitignore"];

/// One absolute path outside the allowed roots: where it is and what it says.
#[derive(Debug, PartialEq)]
struct Finding {
    line: usize,
    path: String,
}

/// Characters after which a `/` starts a path (rather than continuing a word or a relative path).
fn opens_path(prev: Option<char>) -> bool {
    match prev {
        None => true,
        Some(c) => {
            c.is_whitespace()
                || matches!(
                    c,
                    '"' | '\'' | '`' | '(' | '[' | '=' | ',' | ':' | ';' | '|' | '>'
                )
        }
    }
}

/// Characters a path component is made of.
fn in_path(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '+' | '~')
}

/// The absolute path starting at byte `start` of `line` (which holds a `/`), if it has at least
/// two components (a root folder and something below it), returned whole.
fn absolute_path_at(line: &str, start: usize) -> Option<&str> {
    let rest = &line[start + 1..];
    let first = rest.chars().next()?;
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return None;
    }
    let root_len = rest.find(|c: char| !in_path(c)).unwrap_or(rest.len());
    let after_root = &rest[root_len..];
    // A second component: `/` then at least one path character.
    let second = after_root.strip_prefix('/')?;
    if !second.chars().next().is_some_and(in_path) {
        return None;
    }
    let len = rest
        .find(|c: char| !(in_path(c) || c == '/'))
        .unwrap_or(rest.len());
    Some(&line[start..start + 1 + len])
}

/// Every absolute path in `text` whose root is not allowed, with its line number (from 1).
fn machine_local_paths(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut prev = None;
        for (i, c) in line.char_indices() {
            if c == '/' && opens_path(prev) {
                if let Some(path) = absolute_path_at(line, i) {
                    let root = path[1..].split('/').next().unwrap_or("");
                    if !ALLOWED_ROOTS.contains(&root) {
                        found.push(Finding {
                            line: n + 1,
                            path: path.to_string(),
                        });
                    }
                }
            }
            prev = Some(c);
        }
    }
    found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tracked files (relative to the root), or `None` when git cannot list them.
fn git_files(root: &Path) -> Option<Vec<PathBuf>> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let names = String::from_utf8(out.stdout).ok()?;
    Some(
        names
            .split('\0')
            .filter(|n| !n.is_empty())
            .map(PathBuf::from)
            .collect(),
    )
}

/// Every file below `dir` (relative to `root`), leaving out `.git` and `target` folders.
fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        // `.git` is a folder in a clone and a file in a linked work tree: git's, either way.
        if name == ".git" {
            continue;
        }
        let rel = dir.join(&name);
        match entry.file_type() {
            Ok(t) if t.is_dir() && name != "target" => walk(root, &rel, files),
            Ok(t) if t.is_file() => files.push(rel),
            _ => {}
        }
    }
}

fn repository_files(root: &Path) -> Vec<PathBuf> {
    git_files(root).unwrap_or_else(|| {
        eprintln!("repo_hygiene: git cannot list the tracked files; reading the whole tree");
        let mut files = Vec::new();
        walk(root, Path::new(""), &mut files);
        files
    })
}

#[test]
fn no_machine_local_paths_in_tracked_files() {
    let root = root();
    let files = repository_files(&root);
    assert!(
        files.iter().any(|f| f == Path::new("Cargo.toml")),
        "the file list of {} misses Cargo.toml: {} files listed",
        root.display(),
        files.len()
    );
    let mut report = Vec::new();
    let mut text_files = 0;
    for rel in &files {
        let skipped = rel
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| SKIPPED_FILE_NAMES.contains(&n));
        // A file listed but deleted in the work tree has nothing to check.
        let Ok(bytes) = std::fs::read(root.join(rel)) else {
            continue;
        };
        if skipped || bytes.contains(&0) {
            continue;
        }
        text_files += 1;
        let text = String::from_utf8_lossy(&bytes);
        for f in machine_local_paths(&text) {
            report.push(format!("{}:{}: {}", rel.display(), f.line, f.path));
        }
    }
    assert!(text_files > 0, "no text file was read");
    assert!(
        report.is_empty(),
        "machine-local absolute paths (allowed roots: {}; write them relative to the \
         repository, as $HOME/..., or through a variable; see tests/repo_hygiene.rs):\n{}",
        ALLOWED_ROOTS.map(|r| format!("/{r}")).join(", "),
        report.join("\n")
    );
}

/// The scanner itself: what it must catch and what it must leave alone. The paths are built at
/// run time so that this file does not hold them literally.
#[test]
fn scanner_catches_absolute_paths_and_nothing_else() {
    let abs = |p: &str| format!("/{p}");
    let caught = [
        format!("see {}", abs("work/bin/quiet")),
        format!("    if [[ -x {} ]]; then", abs("work/bin/cpu")),
        format!("as in {};", abs("home/user/tools/make.py")),
        format!("let p = \"{}\";", abs("root/.cache/x")),
        format!("mkdir -p {}", abs("tmp/gguf-corpus")),
        format!("`{}`", abs("opt/cuda")),
        format!("PATH={}:{}", abs("usr/bin"), abs("data/bin")),
        format!("make >{}", abs("mnt/log.txt")),
    ];
    for line in &caught {
        let found = machine_local_paths(line);
        assert_eq!(found.len(), 1, "{line:?}: {found:?}");
        assert_eq!(found[0].line, 1);
        assert!(line.contains(&found[0].path), "{line:?}: {found:?}");
    }
    let left_alone = [
        format!("cat {} {}", abs("proc/meminfo"), abs("sys/devices/x")),
        format!("make 2>{}", abs("dev/null")),
        format!("--include {}", abs("usr/local/cuda/include")),
        format!("open(\"{}\")", abs("nonexistent/model.gguf")),
        "<think>reasoning</think> and </tool_call>".to_string(),
        "https://github.com/ggml-org/llama.cpp/blob/master/README.md".to_string(),
        "tests/fixtures/models and ../shared/tools/x.py and ~/.cache/qwen-luminal/plans.json"
            .to_string(),
        "$HOME/.cache/x and ${XDG_CACHE_HOME}/qwen and \"$OUT/bin/\"*".to_string(),
        "/exit ends the session; sed -n '2,/^set /p'; 3/4 of MB/s / GB/s".to_string(),
        "// a comment // and /* block */ and a / b / c".to_string(),
    ];
    for line in &left_alone {
        assert_eq!(machine_local_paths(line), vec![], "{line:?}");
    }
    // Line numbers count from 1 across a multi-line text.
    let text = format!("fine\nalso fine\nnot {}\n", abs("srv/x/y"));
    assert_eq!(
        machine_local_paths(&text),
        vec![Finding {
            line: 3,
            path: abs("srv/x/y"),
        }]
    );
}
