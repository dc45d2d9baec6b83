//! The reject report's HTML page, loaded in headless Chromium: what an analyst sees after the
//! page's scripts ran (counts, the filtered table, masked member data), not only the HTML text.
//!
//! Needs Debian's `chromium` (`tools/ci-deps.sh` installs it). Without it the test is skipped
//! with a message, unless `CI` is set: in CI a missing browser is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !p.is_empty() {
                return Some(PathBuf::from(p));
            }
        }
    }
    None
}

fn browser_or_skip() -> Option<PathBuf> {
    match chromium() {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("chromium is required in CI (run tools/ci-deps.sh)")
        }
        None => {
            eprintln!(
                "SKIPPED: chromium not installed (run tools/ci-deps.sh); set CI=1 to fail instead"
            );
            None
        }
    }
}

/// The DOM after the page's scripts ran, for `file://PATH#FRAGMENT`.
fn dump_dom(browser: &Path, page: &Path, fragment: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}{fragment}", page.display());
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `eligo check --config ... --report DIR` on the samples; returns DIR.
fn sample_report(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(env!("CARGO_BIN_EXE_eligo"))
        .current_dir(root)
        .args([
            "check",
            "--config",
            "samples/eligo.toml",
            "--as-of",
            "2025-01-11",
            "--report",
        ])
        .arg(dir.path())
        .args(extra)
        .args([
            "samples/834/business-rejects.x12",
            "samples/834/clean-change.x12",
            "samples/834/errors/bad-date-and-gender.x12",
        ])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    dir
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn report_files_are_private_and_self_contained() {
    let dir = sample_report(&[]);
    let html = std::fs::read_to_string(dir.path().join("reject.html")).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network fetches"
    );
    assert!(
        !html.contains("src=\"") && !html.contains("<link"),
        "no external resources"
    );
    let csv = std::fs::read_to_string(dir.path().join("reject.csv")).unwrap();
    assert!(csv.starts_with("kind,file,sender,group_id"));
    assert_eq!(count(&csv, "\r\nbusiness,"), 5, "{csv}");
    assert!(csv.contains("\r\nx12,"), "the 999-rejected set is listed");
    // Birth dates are masked: the child's DOB 19971020 must not appear anywhere.
    assert!(!csv.contains("19971020") && !html.contains("19971020"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["reject.csv", "reject.html"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let unmasked = sample_report(&["--unmask"]);
    let html = std::fs::read_to_string(unmasked.path().join("reject.html")).unwrap();
    assert!(html.contains("19971020"));
}

#[test]
fn page_renders_counts_table_and_segments_in_chromium() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = sample_report(&[]);
    let page = dir.path().join("reject.html");
    let dom = dump_dom(&browser, &page, "");
    assert!(
        dom.contains("data-ready=\"1\""),
        "the script ran to the end"
    );
    // Summary and counts are rendered by the script.
    assert!(dom.contains("5 change(s) rejected"), "{dom}");
    assert!(dom.contains("data-key=\"GRP1001\""));
    assert!(dom.contains("data-key=\"ACMEHR\""));
    assert!(dom.contains("data-key=\"BR-AGE-LIMIT\""));
    assert!(dom.contains("data-shown=\"5\""));
    assert_eq!(count(&dom, "<tr class=\"finding "), 5);
    // The offending element is highlighted inside its segment; the DOB is masked.
    assert!(
        dom.contains("class=\"seg hit\" data-position=\"36\""),
        "{dom}"
    );
    assert!(dom.contains("<span class=\"el hit\">99999999</span>"));
    assert!(!dom.contains("19971020"));
    // What to do about it is on the page.
    assert!(dom.contains("send INS10 = Y"));
    // The 999-rejected set is summarised.
    assert!(dom.contains("<tr class=\"set\">"));
}

#[test]
fn fragment_filters_by_rule_group_and_severity() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = sample_report(&[]);
    let page = dir.path().join("reject.html");
    let dom = dump_dom(&browser, &page, "#rule=BR-AGE-LIMIT");
    assert!(dom.contains("data-shown=\"1\""), "{dom}");
    assert_eq!(count(&dom, "<tr class=\"finding "), 1);
    assert!(dom.contains("data-rule=\"BR-AGE-LIMIT\""));
    assert!(!dom.contains("data-rule=\"BR-PCP-REQUIRED\""));
    let dom = dump_dom(&browser, &page, "#group=GRP1001&severity=warning");
    assert!(dom.contains("data-shown=\"0\""), "{dom}");
    let dom = dump_dom(&browser, &page, "#group=GRP1001&severity=error");
    assert!(dom.contains("data-shown=\"5\""));
}
