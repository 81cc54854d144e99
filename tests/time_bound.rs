//! The suite-level time bound is kept: every scenario starts it first thing.

/// Every scenario starts the time bound first thing (so none can hang the run).
#[test]
fn every_scenario_runs_under_the_time_bound() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("tests") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("time_bound.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !(line.starts_with("#[test]") || line.starts_with("#[tokio::test")) {
                continue;
            }
            let mut j = i + 1;
            while lines[j].starts_with("#[") {
                j += 1;
            }
            assert!(
                lines[j + 1..(j + 3).min(lines.len())]
                    .join(" ")
                    .contains("common::time_bound("),
                "{}: {} does not start the time bound",
                path.display(),
                lines[j]
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} scenarios found");
}
