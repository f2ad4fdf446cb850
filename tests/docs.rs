//! The documentation against the code: every `DOB_*` variable the code reads is in
//! docs/configuration.md, every relative link of the project's Markdown resolves
//! (the file exists; an anchor names one of its headings), and every repository path it
//! names in backticks exists, so the docs cannot drift silently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn files_with_extension(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_with_extension(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// Every `"DOB_..."` string literal of the library and the binaries: the variables the
/// code reads (a literal is how a name reaches `std::env::var` or a lookup).
fn variables_read_by_code() -> BTreeSet<String> {
    let mut sources = Vec::new();
    for dir in ["src", "bin"] {
        files_with_extension(&Path::new(ROOT).join(dir), "rs", &mut sources);
    }
    assert!(sources.len() > 10, "no sources found under {ROOT}");
    let mut names = BTreeSet::new();
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        // Unit tests name made-up variables; the code under test is above them.
        let text = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        for (i, _) in text.match_indices("\"DOB_") {
            let rest = &text[i + 1..];
            let end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if rest[end..].starts_with('"') && end > "DOB_".len() {
                names.insert(rest[..end].to_owned());
            }
        }
    }
    names
}

#[test]
fn every_variable_the_code_reads_is_documented_in_configuration_md() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md")).unwrap();
    let variables = variables_read_by_code();
    assert!(variables.contains("DOB_DATABASE_URL"), "{variables:?}");
    let missing: Vec<&String> = variables
        .iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code but not in docs/configuration.md (as `NAME`): {missing:?}"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of `markdown` outside fenced code blocks.
fn prose_lines(markdown: &str) -> impl Iterator<Item = &str> {
    let mut in_code = false;
    markdown.lines().filter(move |line| {
        if line.starts_with("```") {
            in_code = !in_code;
            return false;
        }
        !in_code
    })
}

fn anchors_of(markdown: &str) -> BTreeSet<String> {
    prose_lines(markdown)
        .filter_map(|line| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            ((1..=6).contains(&hashes) && line[hashes..].starts_with(' '))
                .then(|| slug(&line[hashes + 1..]))
        })
        .collect()
}

/// The project's Markdown: the READMEs and docs/.
fn pages() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    let mut pages = vec![root.join("README.md"), root.join("terraform/README.md")];
    files_with_extension(&root.join("docs"), "md", &mut pages);
    pages
}

/// The targets of the `[text](target)` links outside code blocks.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            if let Some(end) = rest.find(')') {
                let target = &rest[..end];
                if !target.contains(char::is_whitespace) {
                    targets.push(target.to_owned());
                }
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_readme_and_the_docs_resolves() {
    let root = Path::new(ROOT);
    let pages = pages();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let where_ = format!("{}: {target}", page.strip_prefix(root).unwrap().display());
            if !file.exists() {
                broken.push(format!("{where_} (no such file)"));
                continue;
            }
            if !file.starts_with(root) || file.canonicalize().is_ok_and(|f| !f.starts_with(root)) {
                broken.push(format!("{where_} (outside the repository)"));
                continue;
            }
            if !anchor.is_empty() && file.extension().is_some_and(|e| e == "md") {
                let anchors = anchors_of(&std::fs::read_to_string(&file).unwrap());
                if !anchors.contains(anchor) {
                    broken.push(format!("{where_} (no such heading)"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The repository paths a page names in backticks (`scripts/drill/roles.py`): a word
/// that starts with one of the tree's top-level directories and names one file or
/// directory (no braces, globs, placeholders or spaces).
fn named_paths(markdown: &str) -> Vec<String> {
    const TOP: [&str; 8] = [
        "scripts/",
        "packer/",
        "systemd/",
        "src/",
        "bench/",
        "terraform/",
        "tests/",
        "docs/",
    ];
    let mut paths = Vec::new();
    for line in prose_lines(markdown) {
        for (i, code) in line.split('`').enumerate() {
            let plain = code.trim_end_matches('/');
            if i % 2 == 1
                && TOP.iter().any(|top| code.starts_with(top))
                && !plain.contains(|c: char| "{}*<>[] ".contains(c))
            {
                paths.push(plain.to_owned());
            }
        }
    }
    paths
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let root = Path::new(ROOT);
    let pages = pages();
    let mut missing = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for path in named_paths(&text) {
            checked += 1;
            // A file the operator makes from a committed example (terraform.tfvars) counts.
            let example = root.join(format!("{path}.example"));
            if !root.join(&path).exists() && !example.exists() {
                missing.push(format!(
                    "{}: {path}",
                    page.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(checked > 20, "only {checked} paths found");
    assert!(
        missing.is_empty(),
        "paths the docs name that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn named_paths_skip_patterns_and_placeholders() {
    let text = "Run `scripts/drill/roles.py`, `packer/patroni/` and `scripts/{a,b}.sh`, \
                `systemd/*.d`, `src/<module>.rs`, `make drill`.";
    assert_eq!(
        named_paths(text),
        ["scripts/drill/roles.py", "packer/patroni"]
    );
}

#[test]
fn the_readme_stays_short_and_self_contained() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines (at most 250)");
    assert!(
        !readme.contains("../shared"),
        "README.md points outside the repository"
    );
}

#[test]
fn slugs_follow_githubs_rule() {
    assert_eq!(
        slug("Point-in-time recovery (`--to-time`, `--to-lsn`)"),
        "point-in-time-recovery---to-time---to-lsn"
    );
    assert_eq!(slug("1. Build the AMI"), "1-build-the-ami");
    assert_eq!(slug("TLS to PostgreSQL"), "tls-to-postgresql");
}
