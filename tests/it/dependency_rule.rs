//! The dependency rule `src/lib.rs` states, kept: a module only names modules in its own
//! layer or below, so data flows capture → encode → fanout → peer, each stage keeps its
//! own state, `status` only reads, and nothing names `app`.

use std::collections::BTreeSet;

/// The layers, lowest first, as `src/lib.rs` lists them.
const LAYERS: &[&[&str]] = &[
    &["media", "atomic_file", "backoff", "task", "notify"],
    &["nvr_credentials"],
    &["onvif"],
    &["netif", "board"],
    &["auth"],
    &["config"],
    &["settings"],
    &["capture"],
    &["encode"],
    &["fanout"],
    &["transcode", "audio"],
    &["peer"],
    &["admission", "supervisor", "control"],
    &[
        "gpio",
        "signaling",
        "upstream",
        "rtsp",
        "snapshot",
        "discovery",
        "provision",
    ],
    &["status"],
    &["web"],
    &["app"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to lib.rs and here"))
}

/// Every `crate::name` in a source text.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_name_only_their_layer_and_below() {
    let _bound = crate::common::time_bound(
        "dependency_rule::modules_name_only_their_layer_and_below",
        None,
    );
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = 0;
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .expect("a name");
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source");
        for other in named(&text) {
            if other == top {
                continue;
            }
            assert!(
                layer(&other) <= layer(&top),
                "{} names crate::{other}, which is above it",
                rel.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} imports seen");
}

#[test]
fn the_rule_detects_an_upward_import() {
    let _bound =
        crate::common::time_bound("dependency_rule::the_rule_detects_an_upward_import", None);
    assert!(named("use crate::status::Status; crate::app::serve").contains("status"));
    assert!(
        layer("status") > layer("peer"),
        "peer naming status would be refused"
    );
}
