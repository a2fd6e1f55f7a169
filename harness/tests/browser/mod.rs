//! Opens a generated report in headless Chromium (Debian's `chromium`, installed by `ci/setup`): the
//! page must log nothing to the console and every chart must load. A screenshot is saved under
//! `target/tmp/report-screenshots/` for a person to look at.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BROWSERS: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// What the browser saw.
#[derive(Debug)]
pub struct PageCheck {
    pub images: usize,
    pub broken_images: usize,
    /// Every console message and uncaught exception (the report has no reason to log anything).
    pub console: Vec<String>,
    pub screenshot: PathBuf,
}

fn browser() -> PathBuf {
    for name in BROWSERS {
        if let Ok(output) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && output.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        }
    }
    panic!(
        "no headless browser found (looked for {BROWSERS:?}): run ci/setup, which installs Debian's chromium"
    );
}

fn chromium(html: &Path, profile: &Path, extra: &[String]) -> std::process::Output {
    let mut command = Command::new(browser());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", html.canonicalize().unwrap().display()));
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("failed to start chromium");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let id = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromium (pid {id}) did not finish within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    waiter.join().unwrap().expect("failed to wait for chromium")
}

fn attribute(dom: &str, name: &str) -> Option<usize> {
    let start = dom.find(&format!("{name}=\""))? + name.len() + 2;
    dom[start..].split('"').next()?.parse().ok()
}

/// Loads `html` twice: once to read the DOM after load (chart counts) and the console, once for the
/// screenshot saved as `<name>.png`.
pub fn check(html: &Path, name: &str) -> PageCheck {
    let profile = tempdir(name);
    let dom = chromium(html, &profile, &["--dump-dom".into()]);
    let stdout = String::from_utf8_lossy(&dom.stdout);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(
        dom.status.success(),
        "chromium failed on {}: {stderr}",
        html.display()
    );
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    let images = attribute(&stdout, "data-images")
        .unwrap_or_else(|| panic!("the page never finished loading (no data-images on <body>):\n{stdout}"));
    let broken_images = attribute(&stdout, "data-broken-images").unwrap_or(usize::MAX);

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&screenshot);
    let shot = chromium(
        html,
        &profile,
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1100,4400".into(),
            "--hide-scrollbars".into(),
        ],
    );
    assert!(
        shot.status.success() && screenshot.is_file(),
        "chromium took no screenshot of {}: {}",
        html.display(),
        String::from_utf8_lossy(&shot.stderr)
    );
    let _ = std::fs::remove_dir_all(&profile);
    eprintln!("screenshot of {}: {}", html.display(), screenshot.display());
    PageCheck {
        images,
        broken_images,
        console,
        screenshot,
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fortress-chromium-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The checks every generated report must pass in a browser: every chart drawn beside it
/// (`chart-*.png`) shows, and nothing is logged.
pub fn assert_page_is_whole(html: &Path, name: &str) -> PageCheck {
    let charts = std::fs::read_dir(html.parent().unwrap())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
            name.starts_with("chart-") && name.ends_with(".png")
        })
        .count();
    assert!(
        charts >= 4,
        "a report has a headline and at least 3 charts; {charts} drawn"
    );
    let page = check(html, name);
    assert!(
        page.console.is_empty(),
        "the report logged to the console: {:#?}",
        page.console
    );
    assert_eq!(page.images, charts, "the report should show {charts} charts");
    assert_eq!(page.broken_images, 0, "charts that did not load: {page:?}");
    // A blank page compresses to a few kilobytes; a page of tables and charts does not.
    let size = std::fs::metadata(&page.screenshot).unwrap().len();
    assert!(
        size > 50_000,
        "the screenshot looks blank ({size} bytes): {page:?}"
    );
    page
}
