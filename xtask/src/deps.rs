//! The unused-dependency check of `cargo xtask test` (issue 16, item 4).
//!
//! Every dependency a crate declares (`[dependencies]`, `[dev-dependencies]`,
//! `[build-dependencies]`, per-target tables too) must be named by its code:
//! `name::…`, `use name…` or `extern crate name` in one of the crate's `.rs`
//! files (comments do not count). Every entry of `[workspace.dependencies]`
//! must be taken by some member (`name.workspace = true`). The fuzz workspace
//! (`fuzz/`) is checked the same way.
//!
//! It reads files only: no network, no `cargo metadata`, no tool to install,
//! so it runs offline and in a fraction of a second. A dependency used only
//! through a feature or for linking can be listed under
//! `[package.metadata.xtask] used-without-path = ["name"]`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::sh::Result;

/// One dependency declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    /// The key in the manifest (what `workspace = true` refers to).
    pub key: String,
    /// The name code uses for it: the key (or `package = …`'s value when the
    /// key is a rename — then the key), with `-` as `_`.
    pub ident: String,
    /// The table it is declared in, for the message.
    pub table: String,
}

/// What the check needs from one `Cargo.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Dependencies of the package (every kind).
    pub deps: Vec<Dep>,
    /// Keys of `[workspace.dependencies]`.
    pub workspace_deps: Vec<String>,
    /// Keys the package takes from the workspace (`key.workspace = true`).
    pub from_workspace: Vec<String>,
    /// `[workspace] members`.
    pub members: Vec<String>,
    /// `[package.metadata.xtask] used-without-path`.
    pub used_without_path: Vec<String>,
}

/// True for a table header that declares dependencies.
fn is_dep_table(t: &str) -> bool {
    let last = t.rsplit('.').next().unwrap_or(t);
    matches!(
        last,
        "dependencies" | "dev-dependencies" | "build-dependencies"
    ) && t != "workspace.dependencies"
}

/// The strings of a TOML array (`["a", "b"]`, possibly over several lines).
fn strings(s: &str) -> Vec<String> {
    s.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Parses the parts of a `Cargo.toml` the check needs (a line-based reader
/// for the TOML this repository writes: tables, `key = value`, inline tables,
/// arrays over several lines).
pub fn parse_manifest(text: &str) -> Manifest {
    let mut m = Manifest::default();
    let mut table = String::new();
    let mut lines = text.lines();
    while let Some(raw) = lines.next() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[') {
            table = h.trim_end_matches(']').trim().to_string();
            // `[dependencies.name]`: the dependency is the table itself.
            if let Some((parent, name)) = table.rsplit_once('.')
                && is_dep_table(parent)
            {
                m.deps.push(Dep {
                    key: name.to_string(),
                    ident: name.replace('-', "_"),
                    table: parent.to_string(),
                });
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, mut value) = (key.trim().trim_matches('"'), value.trim().to_string());
        // An array or inline table that goes on over the next lines.
        let opens = |v: &str| v.matches(['[', '{']).count() > v.matches([']', '}']).count();
        while opens(&value) {
            match lines.next() {
                Some(l) => value.push_str(l.split(" #").next().unwrap_or("")),
                None => break,
            }
        }
        if table == "workspace" && key == "members" {
            m.members = strings(&value);
        } else if table == "package.metadata.xtask" && key == "used-without-path" {
            m.used_without_path = strings(&value);
        } else if table == "workspace.dependencies" {
            m.workspace_deps.push(key.to_string());
        } else if is_dep_table(&table) {
            let dotted = key.strip_suffix(".workspace");
            let key = dotted.unwrap_or(key);
            if (dotted.is_some() && value == "true")
                || value.replace(' ', "").contains("workspace=true")
            {
                m.from_workspace.push(key.to_string());
            }
            m.deps.push(Dep {
                key: key.to_string(),
                ident: key.replace('-', "_"),
                table: table.clone(),
            });
        } else if let Some((parent, _)) = table.rsplit_once('.')
            && is_dep_table(parent)
            && key == "workspace"
            && value == "true"
        {
            let name = table.rsplit('.').next().unwrap_or("").to_string();
            m.from_workspace.push(name);
        }
    }
    m
}

/// The code of `src` with `//` comments removed (a `//` inside a string
/// literal, as in a URL, is kept: an odd count of `"` before it).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut cut = line.len();
        let mut from = 0;
        while let Some(i) = line[from..].find("//") {
            let at = from + i;
            if line[..at].matches('"').count() % 2 == 0 {
                cut = at;
                break;
            }
            from = at + 2;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// True if `code` (comments removed) names the crate `ident`: `ident::`,
/// `use ident`, `extern crate ident`, as a whole word.
pub fn names_crate(code: &str, ident: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = code[from..].find(ident) {
        let at = from + i;
        let end = at + ident.len();
        from = end;
        let before = code[..at].chars().next_back();
        let after = &code[end..];
        if before.is_some_and(word) || after.chars().next().is_some_and(word) {
            continue;
        }
        let lead = code[..at].trim_end();
        if after.trim_start().starts_with("::")
            || lead.ends_with("use")
            || lead.ends_with("extern crate")
        {
            return true;
        }
    }
    false
}

/// Every `.rs` file under `dir`, not descending into `target` or into
/// another crate's directory (one with its own `Cargo.toml`).
fn sources(dir: &Path, top: bool, out: &mut Vec<PathBuf>) {
    if !top && (dir.join("Cargo.toml").exists() || dir.ends_with("target")) {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, false, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The unused dependencies of the crate in `dir`, one message each (naming
/// its manifest as `shown`).
pub fn unused_in_crate(dir: &Path, shown: &Path, manifest: &Manifest) -> Vec<String> {
    let mut files = Vec::new();
    sources(dir, true, &mut files);
    let code: Vec<String> = files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .map(|s| strip_comments(&s))
        .collect();
    manifest
        .deps
        .iter()
        .filter(|d| !manifest.used_without_path.contains(&d.key))
        .filter(|d| !code.iter().any(|c| names_crate(c, &d.ident)))
        .map(|d| {
            format!(
                "{}: `{}` ({}) is declared but no code names `{}::`",
                shown.display(),
                d.key,
                d.table,
                d.ident
            )
        })
        .collect()
}

/// Workspace dependencies no member takes.
pub fn unused_in_workspace(workspace: &Manifest, members: &[Manifest]) -> Vec<String> {
    workspace
        .workspace_deps
        .iter()
        .filter(|k| !members.iter().any(|m| m.from_workspace.contains(k)))
        .map(|k| format!("[workspace.dependencies] `{k}` is taken by no member"))
        .collect()
}

fn read(path: &Path) -> Result<Manifest> {
    fs::read_to_string(path)
        .map(|t| parse_manifest(&t))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks the workspace at `root` and the fuzz workspace; returns every
/// problem found (empty: all dependencies used).
pub fn check(root: &Path) -> Result<Vec<String>> {
    let top = read(&root.join("Cargo.toml"))?;
    let mut problems = Vec::new();
    let mut members = Vec::new();
    for member in top.members.iter().map(String::as_str).chain(["fuzz"]) {
        let dir = root.join(member);
        let m = read(&dir.join("Cargo.toml"))?;
        problems.extend(unused_in_crate(
            &dir,
            &Path::new(member).join("Cargo.toml"),
            &m,
        ));
        members.push(m);
    }
    problems.extend(unused_in_workspace(&top, &members));
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
[package]
name = "demo"

[dependencies]
log.workspace = true
arm-ffa = { workspace = true }
plain = "1.0" # a comment
spin = { version = "0.9", features = [
    "mutex",
] }

[dev-dependencies]
proptest = "1.5"

[target.'cfg(unix)'.dependencies]
libc = "0.2"

[dependencies.table-form]
version = "1"

[package.metadata.xtask]
used-without-path = ["plain"]
"#;

    #[test]
    fn reads_every_kind_of_declaration() {
        let m = parse_manifest(MANIFEST);
        let keys: Vec<_> = m.deps.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "log",
                "arm-ffa",
                "plain",
                "spin",
                "proptest",
                "libc",
                "table-form"
            ]
        );
        assert_eq!(m.deps[1].ident, "arm_ffa");
        assert_eq!(m.deps[4].table, "dev-dependencies");
        assert_eq!(m.from_workspace, ["log", "arm-ffa"]);
        assert_eq!(m.used_without_path, ["plain"]);
    }

    #[test]
    fn reads_the_workspace() {
        let m = parse_manifest(
            "[workspace]\nmembers = [\n  \"a\",\n  \"b/c\",\n]\n[workspace.dependencies]\nsmccc = \"0.2\"\nlog = \"0.4\"\n",
        );
        assert_eq!(m.members, ["a", "b/c"]);
        assert_eq!(m.workspace_deps, ["smccc", "log"]);
        assert!(m.deps.is_empty());
    }

    #[test]
    fn a_crate_is_named_by_paths_uses_and_extern_crate_only() {
        assert!(names_crate("let x = log::info!(\"a\");", "log"));
        assert!(names_crate("use spin::Mutex;", "spin"));
        assert!(names_crate("use arm_ffa as ffa;", "arm_ffa"));
        assert!(names_crate("extern crate alloc_x;", "alloc_x"));
        assert!(names_crate("#[derive(a)] x: smccc :: Call", "smccc"));
        // A longer word, a field, a plain identifier: not the crate.
        assert!(!names_crate("let catalog::x = 1;", "log"));
        assert!(!names_crate("self.log.push(1); let log = 2;", "log"));
        assert!(!names_crate("fn smccc_call() {}", "smccc"));
        // Comments do not count.
        assert!(!names_crate(
            &strip_comments("// uses log::info\n/// see [`log::warn`]\nfn f() {}"),
            "log"
        ));
        assert!(names_crate(
            &strip_comments("let u = \"http://x\"; log::info!(\"a\"); // b"),
            "log"
        ));
    }

    #[test]
    fn an_unused_dependency_is_reported_and_a_used_one_is_not() {
        let dir = std::env::temp_dir().join(format!("xtask-deps-{}", std::process::id()));
        fs::create_dir_all(dir.join("src")).unwrap();
        fs::write(
            dir.join("src/lib.rs"),
            "use log::info;\n// arm_ffa::Version would be nice\n",
        )
        .unwrap();
        let m = parse_manifest(MANIFEST);
        let problems = unused_in_crate(&dir, Path::new("Cargo.toml"), &m);
        fs::remove_dir_all(&dir).unwrap();
        let named: Vec<_> = problems
            .iter()
            .map(|p| p.split('`').nth(1).unwrap())
            .collect();
        assert_eq!(named, ["arm-ffa", "spin", "proptest", "libc", "table-form"]);
    }

    #[test]
    fn a_workspace_dependency_no_member_takes_is_reported() {
        let ws = parse_manifest("[workspace.dependencies]\nsmccc = \"0.2\"\nlog = \"0.4\"\n");
        let member = parse_manifest("[dependencies]\nlog.workspace = true\n");
        assert_eq!(
            unused_in_workspace(&ws, &[member]),
            ["[workspace.dependencies] `smccc` is taken by no member"]
        );
    }

    /// The repository itself: what `cargo xtask test` enforces.
    #[test]
    fn this_repository_declares_no_unused_dependency() {
        let problems = check(&crate::sh::root()).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
