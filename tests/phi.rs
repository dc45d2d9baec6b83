//! PHI never reaches logs or error messages: every sample is run at the most verbose log level
//! (`ELIGO_LOG=trace`) through every command, and the logs are searched for every piece of member
//! data the samples hold (names, member ids and SSN-like numbers, birth dates, street lines).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Member data in the X12 samples: NM103/NM104/NM105, NM109, REF*0F/REF*1L, DMG02, N301/N302.
fn phi_values() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut files = Vec::new();
    for dir in ["samples/834", "samples/834/errors", "samples/inbound"] {
        for e in fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "x12") {
                files.push(p);
            }
        }
    }
    for p in files {
        let text = String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned();
        let mut in_member = false;
        for seg in text.split('~') {
            let seg = seg.trim();
            let e: Vec<&str> = seg.split('*').collect();
            match e[0] {
                "INS" => in_member = true,
                "SE" => in_member = false,
                _ => {}
            }
            if !in_member {
                continue;
            }
            let mut take = |v: Option<&&str>| {
                if let Some(v) = v.filter(|v| v.len() >= 4) {
                    out.insert(v.to_string());
                }
            };
            match e[0] {
                "NM1" if matches!(e.get(1), Some(&"IL") | Some(&"74") | Some(&"70")) => {
                    take(e.get(3));
                    take(e.get(4));
                    take(e.get(9));
                }
                "REF" if matches!(e.get(1), Some(&"0F") | Some(&"1L") | Some(&"23")) => {
                    take(e.get(2))
                }
                "DMG" => take(e.get(2)),
                "N3" => {
                    take(e.get(1));
                    take(e.get(2));
                }
                _ => {}
            }
        }
    }
    // Group numbers are not member data.
    out.remove("GRP1001");
    out
}

fn run(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_eligo"))
        .args(args)
        .current_dir(dir)
        .env("ELIGO_LOG", "trace")
        .env("SOURCE_DATE_EPOCH", "1736577000")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn no_member_data_in_logs_or_error_messages_at_trace_level() {
    let phi = phi_values();
    assert!(phi.len() > 40, "the samples hold member data: {phi:?}");
    assert!(phi.contains("KOWALSKI") && phi.contains("900112222") && phi.contains("19840303"));

    let d = tempfile::tempdir().unwrap();
    let cfg = root().join("samples/eligo.toml");
    let toml = fs::read_to_string(&cfg)
        .unwrap()
        .replace("inbound = [\"var/inbound\"]", "inbound = [\"in\"]");
    fs::write(d.path().join("eligo.toml"), toml).unwrap();
    fs::create_dir_all(d.path().join("in")).unwrap();
    let mut samples = Vec::new();
    for dir in ["samples/834", "samples/834/errors", "samples/portal"] {
        for e in fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && p.extension().is_none_or(|x| x != "md") {
                fs::copy(&p, d.path().join("in").join(p.file_name().unwrap())).unwrap();
                samples.push(p.to_string_lossy().into_owned());
            }
        }
    }
    let mut logs = String::new();
    logs += &run(
        &[
            "run",
            "--config",
            "eligo.toml",
            "--verbose",
            "--log-format",
            "json",
        ],
        d.path(),
    );
    logs += &run(&["runs", "--config", "eligo.toml"], d.path());
    let sample_refs: Vec<&str> = samples.iter().map(String::as_str).collect();
    let mut check = vec!["check", "--config"];
    let cfg_s = cfg.to_string_lossy().into_owned();
    check.push(&cfg_s);
    check.extend(&sample_refs);
    logs += &run(&check, d.path());
    let mut convert = vec!["convert", "-o", "out.jsonl"];
    convert.extend(&sample_refs);
    logs += &run(&convert, d.path());
    for s in &sample_refs {
        logs += &run(&["ack", s, "-o", "ack.x12"], d.path());
    }
    assert!(
        logs.lines().count() > 10,
        "the commands log something: {logs}"
    );
    let leaked: Vec<&String> = phi.iter().filter(|v| logs.contains(v.as_str())).collect();
    assert!(leaked.is_empty(), "member data in logs: {leaked:?}");
}
