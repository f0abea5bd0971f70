//! The crate's files import each other without cycles between modules.
//!
//! Reads `src/`, takes every `crate::…`, `super::…` and `self::…` path outside
//! comments, resolves it to the file that defines the module it names, and looks
//! for strongly connected components. Files of one directory module may import
//! each other (the event loop's `impl` blocks live in several files), but no
//! cycle may join two modules: the data path reads bottom-up from the file names
//! (README, "Design notes: layers").

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path (`["event_loop", "core"]`) of each source file.
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// Source without `//` comments (doc links name paths that are not imports).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts with `prefix::`, expanding one level of `{a, b::c}`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let needle = format!("{prefix}::");
    let mut rest = code;
    while let Some(i) = rest.find(&needle) {
        let before = rest[..i].chars().last();
        rest = &rest[i + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        out.extend(expand(rest));
    }
    out
}

fn expand(s: &str) -> Vec<Vec<String>> {
    let mut head = Vec::new();
    let mut s = s;
    loop {
        let s2 = s.trim_start();
        if let Some(inner) = s2.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let mut out = Vec::new();
            let mut depth = 0;
            let mut start = 0;
            let body = &inner[..end];
            for (i, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        for tail in expand(&body[start..i]) {
                            out.push([head.clone(), tail].concat());
                        }
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            for tail in expand(&body[start..]) {
                out.push([head.clone(), tail].concat());
            }
            return out;
        }
        let ident: String = s2
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            return vec![head];
        }
        head.push(ident.clone());
        let after = &s2[ident.len()..];
        match after.strip_prefix("::") {
            Some(more) => s = more,
            None => return vec![head],
        }
    }
}

/// The longest prefix of `path` that names a module file.
fn resolve(mods: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

fn graph(root: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mods = modules(root);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &mods {
        let text = code(&fs::read_to_string(file).expect("read source"));
        // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` (module `a::b`) also `a`.
        let parent = module[..module.len().saturating_sub(1)].to_vec();
        let mut targets = BTreeSet::new();
        for p in paths_after(&text, "crate") {
            targets.extend(resolve(&mods, &p));
        }
        for p in paths_after(&text, "super") {
            targets.extend(resolve(&mods, &[parent.clone(), p].concat()));
        }
        for p in paths_after(&text, "self") {
            targets.extend(resolve(&mods, &[module.clone(), p].concat()));
        }
        targets.remove(module);
        edges.insert(module.clone(), targets);
    }
    edges
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// `src/`, or the tree named by `LAYERING_SRC` (to check another checkout).
fn src_dir() -> PathBuf {
    std::env::var_os("LAYERING_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn no_import_cycle_joins_two_modules() {
    let root = src_dir();
    let edges = graph(&root);
    assert!(
        edges.len() > 20 && edges.values().any(|e| !e.is_empty()),
        "the scan found the crate's files and their imports"
    );
    let mut bad = Vec::new();
    for comp in cycles(&edges) {
        let tops: BTreeSet<&String> = comp.iter().filter_map(|m| m.first()).collect();
        if tops.len() > 1 {
            let names: Vec<String> = comp.iter().map(|m| m.join("::")).collect();
            bad.push(names.join(" <-> "));
        }
    }
    assert!(
        bad.is_empty(),
        "import cycles between modules:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_loop_sits_above_its_vocabulary() {
    let root = src_dir();
    let edges = graph(&root);
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    for leaf in [
        "reason",
        "stats",
        "timeouts",
        "event_loop::core",
        "engine::handle",
    ] {
        for upper in ["handler", "conn", "event_loop", "framed", "engine::builder"] {
            assert!(
                !edges[&m(leaf)].contains(&m(upper)),
                "{leaf} imports {upper}, which sits above it"
            );
        }
    }
}
