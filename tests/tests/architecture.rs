//! Architecture rules as ordinary tests: the dependency direction between
//! crates, and the doc comment at the top of every crate.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_path_buf()
}

/// Dependency names of a manifest, from every dependency section.
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("reading {krate}/Cargo.toml: {e}"));
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                let name = name.trim().trim_end_matches(".workspace").trim();
                if !name.is_empty() && !name.starts_with('#') {
                    deps.push(name.to_string());
                }
            }
        }
    }
    deps
}

fn assert_none_of(krate: &str, forbidden: &[&str]) {
    let deps = dependencies(krate);
    for f in forbidden {
        assert!(
            !deps.iter().any(|d| d == f),
            "{krate} must not depend on {f} (see ARCHITECTURE.md)"
        );
    }
}

#[test]
fn core_depends_on_no_io_framework_and_no_other_otf_crate() {
    assert_none_of(
        "otf-core",
        &[
            "sea-orm",
            "sea-orm-migration",
            "sqlx",
            "hyper",
            "axum",
            "reqwest",
            "ratatui",
            "crossterm",
            "clap",
            "otf-store",
            "otf-http",
            "otf-agent",
            "otf-tui",
        ],
    );
}

#[test]
fn store_depends_only_on_core_among_otf_crates() {
    assert_none_of(
        "otf-store",
        &["otf-http", "otf-agent", "otf-tui", "hyper", "ratatui"],
    );
}

#[test]
fn runner_and_tui_never_touch_the_database() {
    assert_none_of("otf-agent", &["otf-store", "otf-tui", "sea-orm", "sqlx"]);
    assert_none_of("otf-tui", &["otf-store", "otf-agent", "sea-orm", "sqlx"]);
}

#[test]
fn the_ssh_server_reaches_otfd_only_through_the_tui_and_the_core() {
    // It gets its API from otfd (SessionApi), so it knows nothing of the
    // store, the HTTP handlers or the runner; and the TUI stays a client
    // that otfd embeds, never the other way round.
    assert_none_of(
        "otf-ssh",
        &[
            "otf-store",
            "otf-http",
            "otf-agent",
            "sea-orm",
            "sqlx",
            "hyper",
        ],
    );
    assert_none_of("otf-tui", &["otf-ssh", "otf-http", "russh"]);
}

/// The parameters of every `fn` signature in `text`, as `name: type`.
fn signature_params(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("fn ") {
        rest = &rest[i + 3..];
        let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else {
            break;
        };
        if open < close {
            out.extend(
                rest[open + 1..close]
                    .split(',')
                    .map(|p| p.trim().to_string()),
            );
        }
    }
    out
}

#[test]
fn the_core_services_and_the_agent_transport_take_typed_ids() {
    // Adapters parse ids, statuses and kinds once at their edge; past it
    // they travel typed (`&RunId`, `ReportedStatus`, `ArtifactKind`, ...).
    let typed = [
        "id",
        "agent",
        "job",
        "pool",
        "workspace",
        "run",
        "org",
        "status",
        "kind",
        "signal",
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("otf-core/src/services"))
        .expect("the services")
        .map(|e| e.expect("an entry").path())
        .collect();
    files.push(root().join("otf-agent/src/transport/mod.rs"));
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for p in signature_params(&text) {
            let Some((name, ty)) = p.split_once(':') else {
                continue;
            };
            assert!(
                !(typed.contains(&name.trim()) && ty.trim() == "&str"),
                "{}: `{p}` should take a typed value, parsed by the adapter",
                file.display()
            );
        }
    }
}

#[test]
fn the_shared_client_setup_depends_on_no_otf_crate() {
    assert_none_of(
        "otf-client",
        &[
            "otf-core",
            "otf-store",
            "otf-http",
            "otf-agent",
            "otf-tui",
            "otf-ssh",
        ],
    );
}

#[test]
fn no_handler_opens_a_store_transaction() {
    // Handlers call core services, which own their transactions.
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("otf-http/src/api"))
        .expect("the handlers")
        .map(|e| e.expect("an entry").path())
        .collect();
    files.extend(
        ["agent_api.rs", "ssh.rs", "metrics.rs"].map(|f| root().join("otf-http/src").join(f)),
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for needle in [".store()", ".begin()"] {
            assert!(
                !text.contains(needle),
                "{} calls {needle}: a handler calls a core service instead",
                file.display()
            );
        }
    }
}

#[test]
fn the_version_crate_is_a_leaf() {
    assert!(
        dependencies("otf-version").is_empty(),
        "otf-version must depend on nothing: a commit would rebuild everything"
    );
}

#[test]
fn every_crate_root_says_what_it_owns() {
    for (krate, root_file) in [
        ("otf-core", "src/lib.rs"),
        ("otf-store", "src/lib.rs"),
        ("otf-http", "src/lib.rs"),
        ("otf-agent", "src/lib.rs"),
        ("otf-tui", "src/lib.rs"),
        ("otf-ssh", "src/lib.rs"),
        ("otf-client", "src/lib.rs"),
        ("otf-version", "src/lib.rs"),
        ("otf-dist", "src/main.rs"),
    ] {
        let lib = std::fs::read_to_string(root().join(krate).join(root_file))
            .unwrap_or_else(|e| panic!("reading {krate}/{root_file}: {e}"));
        assert!(
            lib.trim_start().starts_with("//!"),
            "{krate}/{root_file} must start with a //! paragraph saying what it owns and must not depend on"
        );
        assert!(
            lib.contains("#![forbid(unsafe_code)]"),
            "{krate} must forbid unsafe code"
        );
    }
}

/// The modules of `krate/src` that each module names (`crate::name`), by
/// top-level module (a directory counts as one module).
fn module_graph(
    krate: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a source directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join(krate).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for file in all {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let names = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `use crate::{a, b}` names several.
            if name.is_empty() && rest.starts_with('{') {
                let inner = &rest[1..rest.find('}').unwrap_or(rest.len())];
                for n in inner.split(',') {
                    let n = n.trim().split("::").next().unwrap_or("").trim().to_string();
                    if !n.is_empty() && n != module {
                        names.insert(n);
                    }
                }
            } else if !name.is_empty() && name != module {
                names.insert(name);
            }
        }
    }
    graph
}

#[test]
fn otfd_modules_import_each_other_in_no_circle() {
    // The route table (routes) sees the handlers and the application; the
    // application (app) dispatches through the table's machinery (router)
    // without knowing a handler.
    let graph = module_graph("otf-http");
    fn visit(
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == node) {
            panic!(
                "otf-http modules import each other in a circle: {} -> {node}",
                path[at..].join(" -> ")
            );
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(graph, next, path, done);
            }
        }
        path.pop();
        done.insert(node.to_string());
    }
    let mut done = std::collections::BTreeSet::new();
    for node in graph.keys() {
        visit(&graph, node, &mut Vec::new(), &mut done);
    }
    assert!(graph["app"].contains("router") && !graph["app"].contains("api"));
}

#[test]
fn no_handler_or_tui_module_imports_a_store_type() {
    // Handlers name the store only as their generic bound; the TUI not at
    // all (it is a client of the API).
    let handlers = std::fs::read_dir(root().join("otf-http/src/api"))
        .expect("the handlers")
        .map(|e| e.expect("an entry").path())
        .chain(
            ["agent_api.rs", "routes.rs", "ssh.rs"].map(|f| root().join("otf-http/src").join(f)),
        );
    for file in handlers {
        let text = std::fs::read_to_string(&file).expect("read");
        for (i, _) in text.match_indices("otf_core::store::") {
            let rest = &text[i + "otf_core::store::".len()..];
            assert!(
                rest.starts_with("Store;") || rest.starts_with("Store>"),
                "{} uses a store type other than the Store bound: {}",
                file.display(),
                &rest[..rest.len().min(40)]
            );
        }
        assert!(
            !text.contains("otf_store"),
            "{} names otf-store",
            file.display()
        );
    }
    let mut tui = Vec::new();
    fn rs(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                rs(&p, out)
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p)
            }
        }
    }
    rs(&root().join("otf-tui/src"), &mut tui);
    for file in tui {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            !text.contains("otf_core::store") && !text.contains("otf_store"),
            "{} imports a store type: the TUI is a client of the API",
            file.display()
        );
    }
}

#[test]
fn every_tui_screen_is_one_module() {
    // Each variant of `Screen` wraps the state of one module of
    // otf-tui/src/screens, which owns its refresh, keys, actions, answers
    // and drawing.
    let dir = root().join("otf-tui/src/screens");
    let text = std::fs::read_to_string(dir.join("mod.rs")).expect("screens/mod.rs");
    let start = text.find("pub enum Screen {").expect("the Screen enum");
    let body = &text[start..start + text[start..].find('}').expect("its end")];
    let mut variants = 0;
    for line in body.lines().skip(1) {
        let Some((variant, inner)) = line.trim().trim_end_matches(',').split_once('(') else {
            continue;
        };
        variants += 1;
        let module: String = variant
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let lower = c.to_ascii_lowercase();
                if c.is_uppercase() && i > 0 {
                    vec!['_', lower]
                } else {
                    vec![lower]
                }
            })
            .collect();
        assert_eq!(
            inner.trim_end_matches(')'),
            format!("{variant}Screen"),
            "Screen::{variant} wraps its module's {variant}Screen"
        );
        let file = dir.join(format!("{module}.rs"));
        let source = std::fs::read_to_string(&file)
            .unwrap_or_else(|_| panic!("Screen::{variant} has no module {}", file.display()));
        assert!(
            source.contains(&format!("impl View for {variant}Screen")),
            "{} implements View for its screen",
            file.display()
        );
    }
    assert!(variants >= 11, "found {variants} screens");
}

#[test]
fn the_whole_must_not_depend_on_table_of_architecture_md_holds() {
    // Every row of ARCHITECTURE.md's crate table, read as written: named
    // crates are forbidden; "any other otf crate" / "every other otf crate"
    // forbid the rest of the workspace; "everything" means no dependency;
    // "nothing depends on it" that no workspace crate names it; a crate
    // allowed only "through" another is named in one module only.
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let otf = [
        "otf-core",
        "otf-store",
        "otf-http",
        "otf-agent",
        "otf-tui",
        "otf-client",
        "otf-ssh",
        "otf-version",
        "otf-dist",
    ];
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut rows = 0;
    for line in text.lines().filter(|l| l.starts_with("| `otf-")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (krate, rule) = (cells[1].trim_matches('`'), cells[3]);
        rows += 1;
        let deps = dependencies(krate);
        if rule.starts_with("everything") {
            assert!(deps.is_empty(), "{krate} must depend on nothing: {deps:?}");
        } else if rule.starts_with("nothing depends on it") {
            for other in otf.iter().filter(|o| **o != krate) {
                assert!(
                    !dependencies(other).iter().any(|d| d == krate),
                    "{other} depends on {krate}"
                );
            }
        } else if rule.contains("other otf crate") {
            let mut forbidden: Vec<String> = otf
                .iter()
                .filter(|o| **o != krate && **o != "otf-version")
                .map(|o| o.to_string())
                .collect();
            // "...; HTTP, SQL or terminal crates (hyper, sea-orm, ...)".
            if let Some(inner) = rule.split('(').nth(1) {
                forbidden.extend(
                    inner
                        .trim_end_matches(')')
                        .split(',')
                        .map(|c| c.trim().to_string()),
                );
            }
            for f in &forbidden {
                assert!(!deps.contains(f), "{krate} must not depend on {f}");
            }
        } else if let Some((named, through)) = rule.split_once(" except through ") {
            // Allowed, in one module: the one that names the bridge.
            let crate_name = ticked(named).remove(0).replace('-', "_");
            let bridge = ticked(through).remove(0).replace('-', "_");
            let mut users = Vec::new();
            for entry in std::fs::read_dir(root().join(krate).join("src")).expect("src") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "rs") {
                    let t = std::fs::read_to_string(&path).expect("read");
                    if t.contains(&format!("{crate_name}::")) {
                        assert!(
                            t.contains(&format!("{bridge}::")),
                            "{} uses {crate_name} without going through {bridge}",
                            path.display()
                        );
                        users.push(path);
                    }
                }
            }
            assert!(users.len() <= 1, "{krate} names {crate_name} in {users:?}");
        } else {
            for f in ticked(rule) {
                assert!(!deps.contains(&f), "{krate} must not depend on {f}");
            }
        }
    }
    assert!(rows >= 9, "read {rows} rows of the crate table");
}
