//! The layering, checked: reads every file of `src/`, resolves each path it names inside the
//! crate (`use` items and paths in code, `crate::`, `super::`, `self::` and child modules) to
//! the file that defines it, and fails on an arrow that points the wrong way:
//! - `model/` imports nothing of the crate but `model/`: every layer may use it;
//! - `db/` imports no service (`domain`, `infra`, `http`, `state`, `startup`, `openapi`, `jobs`,
//!   `cli`);
//! - `domain/` imports no HTTP (`http`, `state`, `startup`, `openapi`);
//! - `http/` imports no SQL (`db`);
//! - no two files import each other, directly or around a longer cycle.
//!
//! Data flows one way, `http` → `domain` → `db`, so a newcomer can follow any request from
//! route to SQL in three predictable files.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// Top-level modules a layer must not import.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("db", &["domain", "infra", "http", "state", "startup", "openapi", "jobs", "cli"]),
    ("domain", &["http", "state", "startup", "openapi"]),
    ("http", &["db"]),
];

/// A module of the crate, by its path below `crate` (`["http", "routes", "admin"]`).
type Module = Vec<String>;

/// The module a file under `src/` defines: `http/routes/admin.rs` → `http::routes::admin`,
/// `http.rs` → `http`, `lib.rs` → the crate root.
fn module_of(file: &Path) -> Module {
    let mut parts: Module = file.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "lib" | "main" | "mod") {
        parts.push(stem.to_owned());
    }
    parts
}

fn display(module: &[String]) -> String {
    if module.is_empty() { "crate".to_owned() } else { module.join("::") }
}

/// Every crate path a file names, resolved to absolute module paths (possibly with item names
/// at the end: `db::locations::insert`).
struct Paths {
    /// Where the code being visited is: the file's module, plus any inline `mod x { … }`.
    module: Module,
    /// Child modules declared in this file (`mod extract;`), which a path may start with.
    children: BTreeSet<String>,
    found: Vec<Module>,
}

impl Paths {
    fn resolve(&mut self, segments: &[String]) {
        let Some(first) = segments.first() else { return };
        let mut base: Module = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.module.clone(),
            "super" => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                self.found.push(base);
                return;
            }
            child if self.children.contains(child) => {
                let mut base = self.module.clone();
                base.push(child.to_owned());
                base.extend(segments[1..].iter().cloned());
                self.found.push(base);
                return;
            }
            // Another crate, a local item or a type: not a module of this crate.
            _ => return,
        };
        base.extend(segments[1..].iter().cloned());
        self.found.push(base);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                if name.ident != "self" {
                    prefix.push(name.ident.to_string());
                }
                self.resolve(&prefix.clone());
                if name.ident != "self" {
                    prefix.pop();
                }
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.resolve(&prefix.clone());
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.resolve(&prefix.clone()),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(segments.first().map(String::as_str), Some("crate" | "super" | "self"))
            && segments.len() > 1
        {
            self.resolve(&segments);
        }
        syn::visit::visit_path(self, path);
    }

    /// `#[cfg(test)] mod tests` may use what it tests, as any file's tests may.
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let is_test = item.attrs.iter().any(|attr| {
            attr.path().is_ident("cfg")
                && attr.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test")
        });
        if is_test {
            return;
        }
        // Inside `mod x { … }`, `self` and `super` are relative to `x`.
        self.module.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.module.pop();
    }
}

/// The files' import graph: for each file (by module), the other files it names.
fn imports(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<&Module> = files.keys().collect();
    let mut graph = BTreeMap::new();
    for (module, source) in files {
        let ast =
            syn::parse_file(source).unwrap_or_else(|e| panic!("{} does not parse: {e}", display(module)));
        let children = ast
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) if m.content.is_none() => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        let mut paths = Paths { module: module.clone(), children, found: Vec::new() };
        paths.visit_file(&ast);
        // A path names the file of its longest module prefix: `db::locations::insert` is
        // `db/locations.rs`, `db::observe` is `db.rs`.
        let targets: BTreeSet<Module> = paths
            .found
            .iter()
            .filter_map(|path| {
                (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains(m))
            })
            .filter(|target| target != module)
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

/// Every violation of the layering in these files, as sentences.
fn violations(files: &BTreeMap<Module, String>) -> Vec<String> {
    let graph = imports(files);
    let mut found = Vec::new();
    for (module, targets) in &graph {
        let layer = module.first().map(String::as_str).unwrap_or("");
        for target in targets {
            let target_layer = target.first().map(String::as_str).unwrap_or("");
            if layer == "model" && target_layer != "model" {
                found.push(format!(
                    "{} imports {}: model imports nothing of the crate",
                    display(module),
                    display(target)
                ));
            }
            for (from, forbidden) in FORBIDDEN {
                if layer == *from && forbidden.contains(&target_layer) {
                    found.push(format!(
                        "{} imports {}: {from} must not depend on {target_layer}",
                        display(module),
                        display(target)
                    ));
                }
            }
        }
    }
    for cycle in cycles(&graph) {
        let names: Vec<String> = cycle.iter().map(|m| display(m)).collect();
        found.push(format!("import cycle: {} → {}", names.join(" → "), names[0]));
    }
    found
}

/// Strongly connected components of more than one file (Tarjan), each in a stable order.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        next: usize,
        components: Vec<Vec<Module>>,
    }
    fn connect<'g>(state: &mut State<'g>, node: &'g Module) {
        state.index.insert(node, state.next);
        state.low.insert(node, state.next);
        state.next += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for target in state.graph.get(node).into_iter().flatten() {
            let Some((target, _)) = state.graph.get_key_value(target) else { continue };
            if !state.index.contains_key(target) {
                connect(state, target);
                let low = state.low[node].min(state.low[target]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.low[node].min(state.index[target]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.clone());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.components.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            connect(&mut state, node);
        }
    }
    state.components
}

fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<Module, String>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            read_tree(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("below src/");
            // The binary is its own crate: `phone_manager::…` paths, not `crate::…`.
            if relative != Path::new("main.rs") {
                files.insert(module_of(relative), std::fs::read_to_string(&path).expect("a source file"));
            }
        }
    }
}

#[test]
fn layers_point_one_way_and_no_two_files_import_each_other() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    assert!(files.len() > 40, "read the whole of src/ ({} files)", files.len());
    let problems = violations(&files);
    assert!(problems.is_empty(), "the layering is broken:\n  {}", problems.join("\n  "));
}

/// The checker itself, on fixtures that reproduce each arrow the structure issue found.
mod checker {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> BTreeMap<Module, String> {
        files.iter().map(|(path, source)| (module_of(Path::new(path)), (*source).to_owned())).collect()
    }

    fn assert_finds(files: &[(&str, &str)], expected: &str) {
        let problems = violations(&tree(files));
        assert!(problems.iter().any(|p| p.contains(expected)), "expected {expected:?} in {problems:?}");
    }

    #[test]
    fn a_db_file_importing_a_domain_type() {
        assert_finds(
            &[
                ("db.rs", "pub mod locations;"),
                ("db/locations.rs", "use crate::domain::locations::Fix; fn f(_: Fix) {}"),
                ("domain.rs", "pub mod locations;"),
                ("domain/locations.rs", "pub struct Fix;"),
            ],
            "db::locations imports domain::locations: db must not depend on domain",
        );
    }

    #[test]
    fn domain_files_importing_each_other() {
        assert_finds(
            &[
                ("domain.rs", "pub mod idempotency; pub mod locations;"),
                ("domain/idempotency.rs", "use crate::domain::locations::Outcome; pub struct Key;"),
                ("domain/locations.rs", "use super::idempotency::Key; pub enum Outcome {}"),
            ],
            "import cycle: domain::idempotency → domain::locations",
        );
    }

    #[test]
    fn a_cycle_through_a_re_export_of_the_parent() {
        assert_finds(
            &[
                ("model.rs", "pub mod device; pub mod fix; pub use fix::Fix;"),
                ("model/device.rs", "use super::Fix;"),
                ("model/fix.rs", "use crate::model::device; pub struct Fix;"),
            ],
            "import cycle",
        );
    }

    #[test]
    fn an_http_route_importing_sql() {
        assert_finds(
            &[
                ("db.rs", "pub mod audit;"),
                ("db/audit.rs", "pub struct EntryRow;"),
                ("http.rs", "pub mod routes;"),
                ("http/routes.rs", "pub mod admin;"),
                ("http/routes/admin.rs", "fn f() -> crate::db::audit::EntryRow { todo!() }"),
            ],
            "http::routes::admin imports db::audit: http must not depend on db",
        );
    }

    #[test]
    fn openapi_and_http_importing_each_other() {
        assert_finds(
            &[("openapi.rs", "use crate::http; pub mod tags {}"), ("http.rs", "use crate::openapi::tags;")],
            "import cycle: http → openapi",
        );
    }

    #[test]
    fn model_importing_a_layer() {
        assert_finds(
            &[("model.rs", "use crate::db::Pool;"), ("db.rs", "pub struct Pool;")],
            "model imports db: model imports nothing of the crate",
        );
    }

    #[test]
    fn tests_inside_a_file_may_use_anything() {
        let problems = violations(&tree(&[
            ("db.rs", "#[cfg(test)]\nmod tests { use crate::domain::X; }"),
            ("domain.rs", "pub struct X;"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn child_modules_and_external_crates_resolve() {
        let graph = imports(&tree(&[
            ("http.rs", "pub mod extract; use extract::Body; use axum::Router; use std::sync::Arc;"),
            ("http/extract.rs", "pub struct Body;"),
        ]));
        let http: Module = vec!["http".into()];
        let extract: Module = vec!["http".into(), "extract".into()];
        assert_eq!(graph[&http], BTreeSet::from([extract]));
    }
}
