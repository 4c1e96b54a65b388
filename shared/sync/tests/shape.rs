//! The dependency rule of this crate, checked from its source: entry → flows → pipeline, no import cycle
//! between modules, no flow importing another, the pipeline importing no flow, and no function over 120 lines.
//! A module is a top-level file or the first two folder levels (`flows/documents`), as `use crate::` names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 120;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file belongs to: `pipeline/source/delta.rs` → `pipeline/source`, `flows/mod.rs` → `flows`.
fn node_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .filter(|p| p != "mod" && p != "lib")
        .collect();
    if parts.is_empty() {
        "lib".into()
    } else {
        parts[..parts.len().min(2)].join("/")
    }
}

/// The source without its `#[cfg(test)]` module: tests may import anything.
fn body(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ").map_or(text, |i| &text[..i])
}

/// Modules named by `crate::a::b` paths and `use crate::{a::.., b}` groups.
fn imports(text: &str, nodes: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |segs: Vec<&str>| {
        for k in [2, 1] {
            let cand = segs[..segs.len().min(k)].join("/");
            if nodes.contains(&cand) {
                out.insert(cand);
                return;
            }
        }
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find("};").unwrap_or(group.len())];
            for item in group.split(',') {
                let item = item.trim();
                let segs: Vec<&str> = item.split("::").map(str::trim).collect();
                if !segs[0].is_empty() {
                    add(segs);
                }
            }
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        add(path.split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut fs = Vec::new();
    files(&src, &mut fs);
    let nodes: BTreeSet<String> = fs.iter().map(|f| node_of(&src, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &fs {
        let a = node_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        let deps: Vec<String> = imports(body(&text), &nodes).into_iter().filter(|b| *b != a).collect();
        g.entry(a).or_default().extend(deps);
    }
    g
}

fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(n) = todo.pop() {
        for m in g.get(&n).into_iter().flatten() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                todo.push(m.clone());
            }
        }
    }
    false
}

#[test]
fn no_import_cycle_between_modules() {
    let g = graph();
    let cycles: Vec<String> = g
        .iter()
        .flat_map(|(a, bs)| bs.iter().map(move |b| (a, b)))
        .filter(|(a, b)| reaches(&g, b, a))
        .map(|(a, b)| format!("{a} -> {b} -> ... -> {a}"))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn layers_import_downwards_only() {
    let g = graph();
    for (a, bs) in &g {
        for b in bs {
            let flow = |n: &str| n.starts_with("flows/");
            assert!(!(flow(a) && flow(b)), "flow {a} imports flow {b}");
            assert!(
                !(a.starts_with("pipeline") && b.starts_with("flows")),
                "{a} (pipeline) imports {b}"
            );
            assert!(
                !b.starts_with("entry") || a.starts_with("entry") || a == "lib",
                "{a} imports {b}"
            );
        }
    }
    assert!(
        g["flows/accounts"].contains("pipeline"),
        "the check sees imports: {g:?}"
    );
}

#[test]
fn no_function_over_120_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut fs = Vec::new();
    files(&src, &mut fs);
    let mut long = Vec::new();
    for f in &fs {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = body(&text).lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i].trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "async fn ",
                "pub async fn ",
                "pub(crate) fn ",
                "pub(crate) async fn ",
            ]
            .iter()
            .any(|p| l.starts_with(p));
            if !is_fn {
                i += 1;
                continue;
            }
            let (mut depth, mut started, mut j) = (0i64, false, i);
            while j < lines.len() {
                depth += lines[j].matches('{').count() as i64 - lines[j].matches('}').count() as i64;
                started |= lines[j].contains('{');
                if (started && depth <= 0) || (!started && lines[j].trim_end().ends_with(';')) {
                    break;
                }
                j += 1;
            }
            if started && j + 1 - i > MAX_FN_LINES {
                long.push(format!("{}:{} ({} lines)", f.display(), i + 1, j + 1 - i));
            }
            i += 1;
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}
