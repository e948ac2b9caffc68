//! The main crate's top-level modules import one another without a circle, so that they stand
//! in layers (docs/architecture.md, "Layers"): a module may use those below it, never one that
//! uses it back. The crates under `crates/` are held apart by the compiler; inside `src/` this
//! test holds the modules apart, reading every `crate::…` path of the source (its unit tests
//! left out: a test may reach for whatever it checks with).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::x` and `crate::{x, y::z}` path.
fn imported(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(inner.split(',').map(|item| ident(item.trim())));
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

/// Top-level module → the top-level modules it imports.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let top = |path: &Path| -> String {
        let first = path
            .strip_prefix(&src)
            .unwrap()
            .components()
            .next()
            .unwrap();
        let name = first.as_os_str().to_string_lossy().into_owned();
        name.strip_suffix(".rs").unwrap_or(&name).to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|path| top(path)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let module = top(path);
        if module == "lib" || module == "main" {
            continue;
        }
        let imports = imported(&code(&std::fs::read_to_string(path).unwrap()));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(
            imports
                .into_iter()
                .filter(|name| *name != module && modules.contains(name)),
        );
    }
    graph
}

/// A circle of imports, if there is one (depth-first search for a back edge).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let start = path.iter().position(|n| n == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str())
            && let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_top_level_modules_import_one_another_without_a_circle() {
    let graph = module_graph();
    // The reader itself: it must see the imports that are known to be there.
    assert!(graph["runtime"].contains("output"), "{graph:?}");
    assert!(graph["roles"].contains("runtime"), "{graph:?}");
    assert!(graph["app"].contains("headless"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        let places: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} → {}", w[0], w[1]))
            .collect();
        panic!(
            "the modules import one another in a circle: {}",
            places.join(", ")
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_circle_and_the_reader_sees_grouped_imports() {
    let names =
        imported("use crate::{demo, headless::run, tui};\nlet x = crate::kafka::is_transport;");
    assert_eq!(
        names,
        ["demo", "headless", "kafka", "tui"]
            .map(String::from)
            .into()
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["c".to_string()].into());
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("c").unwrap().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(String::from).to_vec())
    );
}

/// The `incident-*` crates a `Cargo.toml`'s `[dependencies]` names (not its dev-dependencies).
fn workspace_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_dependencies = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies && let Some(name) = line.strip_prefix("incident-") {
            let name: String = name.chars().take_while(|c| c.is_alphanumeric()).collect();
            names.insert(name);
        }
    }
    names
}

/// docs/architecture.md's table of crates says what each depends on; it is what the
/// manifests say, and the table's order is an order the crates can be built in.
#[test]
fn the_documented_crates_and_their_dependencies_are_the_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let mut documented: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("| `incident-") else {
            continue;
        };
        let cells: Vec<&str> = rest.split('|').map(str::trim).collect();
        let name: String = cells[0]
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        let depends: BTreeSet<String> = if cells[1] == "all of them" {
            documented.iter().map(|(name, _)| name.clone()).collect()
        } else {
            cells[1]
                .split(',')
                .map(str::trim)
                .filter(|d| !d.contains(' '))
                .map(String::from)
                .collect()
        };
        documented.push((name, depends));
    }
    let mut on_disk: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        on_disk.insert(name, workspace_dependencies(&manifest));
    }
    on_disk.insert(
        "console".into(),
        workspace_dependencies(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()),
    );
    let table: BTreeMap<String, BTreeSet<String>> = documented.iter().cloned().collect();
    assert_eq!(table, on_disk, "docs/architecture.md's table of crates");
    for (at, (name, depends)) in documented.iter().enumerate() {
        let below: BTreeSet<String> = documented[..at].iter().map(|(n, _)| n.clone()).collect();
        assert!(
            depends.is_subset(&below),
            "{name} depends on {depends:?}, not all listed before it"
        );
    }
}
