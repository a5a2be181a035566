//! The HTML report opened in a real browser, Debian's headless chromium: the page renders (a
//! screenshot with something on it) and logs nothing to the console (no script error, no load
//! refused by its Content-Security-Policy). Skipped when chromium is not installed
//! (`cargo xtask setup` installs it).
mod common;

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use common::{demo, require_root, run_with_timeout, tracer};

const CHROMIUM: &str = "/usr/bin/chromium";

const LIMIT: Duration = Duration::from_secs(60);

/// Whether chromium is installed (else the test is skipped, or fails under CI).
fn have_chromium() -> bool {
    let found = Path::new(CHROMIUM).is_file();
    if !found {
        common::skip(&format!(
            "{CHROMIUM} is missing (cargo xtask setup installs chromium)"
        ));
    }
    found
}

/// Opens `page` in headless chromium, saving a screenshot to `shot`.
fn screenshot(page: &Path, shot: &Path) -> Output {
    let profile = tempfile::tempdir().expect("tempdir");
    let mut c = Command::new(CHROMIUM);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args([
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2000",
    ])
    .arg(format!("--screenshot={}", shot.display()))
    .arg(format!("file://{}", page.display()));
    run_with_timeout(&mut c, LIMIT)
}

/// The page's console messages in chromium's log (`...:INFO:CONSOLE(...)] "message"`). Any
/// message counts, not only those with "Uncaught" or "Error": chromium logs `console.error`,
/// failed assertions and Content-Security-Policy refusals at INFO level without those words,
/// and the report logs nothing when all is well.
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect()
}

#[test]
fn html_report_renders_in_chromium_without_console_messages() {
    require_root();
    if !have_chromium() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("report.html");
    let traced = run_with_timeout(
        Command::new(tracer())
            .args(["run", "--format", "html", "-o"])
            .arg(&page)
            .arg("--")
            .arg(demo("file-leak"))
            .args(["--count", "5", "--rate", "0"]),
        LIMIT,
    );
    assert!(
        traced.status.success(),
        "tracer failed: {}",
        String::from_utf8_lossy(&traced.stderr)
    );
    let html = std::fs::read_to_string(&page).expect("report.html written");
    assert!(html.contains("id=\"frames\""), "no flame graph");
    assert!(html.contains("file_leak::follow"), "no leaking frame");

    let shot = dir.path().join("shot.png");
    let start = Instant::now();
    let out = screenshot(&page, &shot);
    eprintln!("chromium took {:?}", start.elapsed());
    assert!(
        out.status.success(),
        "chromium exited {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let console = console_lines(&out.stderr);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );

    let bytes = std::fs::read(&shot).expect("screenshot written");
    assert!(bytes.len() > 10_000, "screenshot of {} bytes", bytes.len());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut pixels).expect("PNG frame");
    let channels = info.color_type.samples();
    let mut colours: Vec<&[u8]> = pixels[..info.buffer_size()].chunks(channels).collect();
    colours.sort_unstable();
    colours.dedup();
    // Text, tables, the chart and a flame graph's shades: far more than a blank page.
    assert!(colours.len() > 50, "{} distinct colours", colours.len());
}

/// The console check itself: chromium's log of a page with an uncaught error and a refused
/// load must be caught.
#[test]
fn console_check_catches_script_errors_and_refused_loads() {
    if !have_chromium() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body><p>bad</p>\
         <img src=\"https://example.invalid/x.png\"><script>undefined_fn()</script></body></html>",
    )
    .expect("write page");
    let out = screenshot(&page, &dir.path().join("shot.png"));
    assert!(out.status.success(), "chromium exited {:?}", out.status);
    let console = console_lines(&out.stderr);
    let all = console.join("\n");
    assert!(
        console
            .iter()
            .any(|l| l.contains("Uncaught") && l.contains("undefined_fn")),
        "uncaught error not seen in:\n{all}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        console
            .iter()
            .any(|l| l.contains("example.invalid") && l.contains("Content Security Policy")),
        "refused load not seen in:\n{all}"
    );
}
