//! Reports from a saved run (`tests/fixtures/cache-outage-quick`, written by a real quick run of
//! `cache-outage`): the page and charts it renders, checked in a real browser, and the errors a
//! missing, half-written or outdated run folder gets.

mod browser;

use std::path::{Path, PathBuf};

use fortress::report::{self, ReportError, Run, compare};

const CHARTS: usize = 6;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cache-outage-quick")
}

/// A copy of the fixture run in a folder of its own, so rendering writes nowhere shared.
fn copy_of_fixture(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fortress-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn a_saved_run_renders_a_whole_page_that_a_browser_shows() {
    let dir = copy_of_fixture("render");
    let rendered = report::render(&dir).unwrap();

    assert_eq!(rendered.charts.len() + 1, CHARTS);
    for chart in std::iter::once(&rendered.headline).chain(&rendered.charts) {
        assert_eq!(png_size(chart), (960, 340), "{}", chart.display());
    }
    let html = std::fs::read_to_string(&rendered.html).unwrap();
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), CHARTS);
    for expected in [
        "cache-outage",
        "pg_statements_per_s in fault / baseline &gt;= 3",
        "confirmed",
        "kill redis",
        "one email per order",
        "goose-vulnerable/goose-report.html",
        "fortress/postgres:15",
    ] {
        assert!(html.contains(expected), "report.html lacks {expected:?}");
    }

    let page = browser::assert_page_is_whole(&rendered.html, "fixture-cache-outage");
    assert!(png_size(&page.screenshot).0 >= 1000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fault_windows_and_phases_are_placed_from_the_saved_run() {
    let run = Run::load(&fixture()).unwrap();
    let windows = run.fault_windows();
    assert_eq!(windows.len(), 2, "{windows:?}");
    for window in &windows {
        assert_eq!(window.fault, "kill redis");
        // The quick profile: 5 s warmup, 7.5 s baseline, then a 10 s fault phase.
        assert!((12.0..15.0).contains(&window.start_s), "{window:?}");
        assert!(
            (9.0..11.5).contains(&(window.end_s - window.start_s)),
            "{window:?}"
        );
    }
    let phases: Vec<String> = run.phase_spans().into_iter().map(|p| p.0).collect();
    assert_eq!(phases, ["warmup", "baseline", "fault", "recovery"]);
}

#[test]
fn bad_run_folders_get_errors_that_name_the_file() {
    let missing = std::env::temp_dir().join("fortress-report-no-such-run");
    let error = report::render(&missing).unwrap_err();
    assert!(matches!(error, ReportError::NotARun { .. }), "{error}");
    assert!(
        error.to_string().contains("fortress-report-no-such-run"),
        "{error}"
    );

    let half = copy_of_fixture("half-written");
    let summary = std::fs::read_to_string(half.join("summary.json")).unwrap();
    std::fs::write(half.join("summary.json"), &summary[..summary.len() / 2]).unwrap();
    let error = report::render(&half).unwrap_err();
    assert!(
        matches!(error, ReportError::Malformed { line, .. } if line > 1),
        "{error}"
    );
    assert!(error.to_string().contains("summary.json:"), "{error}");
    assert!(
        !half.join("report.html").exists(),
        "nothing is written from a broken run"
    );

    let old = copy_of_fixture("old-schema");
    let mut json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    json.as_object_mut().unwrap().remove("schema");
    std::fs::write(old.join("summary.json"), json.to_string()).unwrap();
    let error = report::render(&old).unwrap_err();
    assert!(matches!(error, ReportError::Schema { .. }), "{error}");
    assert!(error.to_string().contains("run the experiment again"), "{error}");

    let no_series = copy_of_fixture("no-series");
    std::fs::remove_file(no_series.join("timeseries-defended.json")).unwrap();
    let error = report::render(&no_series).unwrap_err();
    assert!(error.to_string().contains("timeseries-defended.json"), "{error}");

    for dir in [half, old, no_series] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn compare_shows_each_key_figure_of_two_runs_with_its_change() {
    let a = Run::load(&fixture()).unwrap();
    let changed = copy_of_fixture("compare");
    let summary = std::fs::read_to_string(changed.join("summary.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&summary).unwrap();
    // The defended variant's baseline p95, doubled.
    let p95 = &mut json["variants"][1]["phase_stats"]["baseline"]["p95_ms"];
    let before = p95.as_f64().unwrap();
    *p95 = serde_json::json!(before * 2.0);
    std::fs::write(changed.join("summary.json"), json.to_string()).unwrap();
    let b = Run::load(&changed).unwrap();

    let changes = compare::changes(&a, &b);
    let p95 = changes
        .iter()
        .find(|c| c.key == "defended / baseline / p95_ms")
        .unwrap();
    assert!((p95.ratio().unwrap() - 2.0).abs() < 1e-9, "{p95:?}");
    let unchanged = changes
        .iter()
        .find(|c| c.key == "vulnerable / fault / pg_statements_per_s")
        .unwrap();
    assert_eq!(unchanged.ratio(), Some(1.0));
    assert!(changes.iter().any(|c| c.key.contains("/ prediction / ")));

    let text = compare::text(&a, &b, &changes);
    let line = text
        .lines()
        .find(|l| l.starts_with("defended / baseline / p95_ms"))
        .unwrap();
    assert!(line.ends_with("+100.0%"), "{line}");
    let page = changed.join("compare.html");
    compare::write_page(&a, &b, &changes, &page).unwrap();
    assert!(std::fs::read_to_string(&page).unwrap().contains("+100.0%"));
    std::fs::remove_dir_all(&changed).unwrap();
}
