//! The command line as users and cron jobs see it: exit statuses, output shapes, file modes.

use std::process::Command;

fn eligo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eligo"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env("SOURCE_DATE_EPOCH", "1736577000");
    c
}

#[test]
fn check_exits_0_for_clean_files_1_for_rejects_2_for_missing_files() {
    let ok = eligo()
        .args([
            "check",
            "samples/834/clean-change.x12",
            "samples/834/clean-full.x12",
        ])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = eligo()
        .args([
            "check",
            "samples/834/clean-change.x12",
            "samples/834/errors/bad-se-count.x12",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    // Both files are reported: a bad file does not stop the run.
    assert!(out.contains("clean-change.x12: OK"), "{out}");
    assert!(out.contains("bad-se-count.x12: REJECTED"), "{out}");
    let missing = eligo()
        .args(["check", "no/such/file.x12"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/file.x12"));
}

#[test]
fn human_findings_name_file_line_segment_loop_element_and_code() {
    let out = eligo()
        .args(["check", "samples/834/errors/bad-date-and-gender.x12"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("DMG03"))
        .expect("a DMG03 finding");
    assert!(
        line.starts_with(
            "samples/834/errors/bad-date-and-gender.x12:19: DMG at 17, loop 2100A, DMG03:"
        ),
        "{line}"
    );
    assert!(line.contains("[X12-E-INVALID-CODE IK403 7]"), "{line}");
    assert!(
        line.contains("ISA13 000001105 GS06 1105 ST02 0001"),
        "{line}"
    );
}

#[test]
fn member_data_is_masked_in_findings() {
    let out = eligo()
        .args(["check", "samples/834/errors/bad-date-and-gender.x12"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The bad birth date 20230230 is member data: it appears masked, never as sent.
    assert!(!text.contains("20230230"), "{text}");
    assert!(text.contains("\"99999999\""), "{text}");
    let json = eligo()
        .args([
            "check",
            "--format",
            "json",
            "samples/834/errors/bad-date-and-gender.x12",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(!text.contains("20230230"), "{text}");
    assert!(
        !text.contains("900445555"),
        "member ids are masked too: {text}"
    );
}

#[test]
fn json_output_is_one_object_per_line() {
    let out = eligo()
        .args([
            "check",
            "--format",
            "json",
            "samples/834/errors/two-sets-one-bad.x12",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let objs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let types: Vec<&str> = objs.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec!["set", "finding", "set", "group", "interchange", "summary"]
    );
    assert_eq!(objs[0]["code"], "A");
    assert_eq!(objs[1]["id"], "X12-E-INVALID-CODE");
    assert_eq!(objs[1]["ack_label"], "IK403 7");
    assert_eq!(objs[1]["location"]["segment_position"], 12);
    assert_eq!(objs[2]["code"], "R");
    assert_eq!(objs[3]["code"], "P");
}

#[test]
fn explain_prints_a_catalogue_entry() {
    let out = eligo()
        .args(["check", "--explain", "834-S6"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DTP*357"), "{text}");
    assert!(text.contains("How to fix"), "{text}");
    let unknown = eligo()
        .args(["check", "--explain", "NOPE"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn ack_output_file_is_private_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.999");
    for _ in 0..2 {
        let st = eligo()
            .args(["ack", "samples/834/errors/bad-date-and-gender.x12", "-o"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let a = std::fs::read_to_string(&p).unwrap();
    assert!(a.contains("IK4*2*1251*8*20230230~"), "{a}");
    assert!(
        a.contains("*250111*0630*"),
        "SOURCE_DATE_EPOCH sets the clock: {a}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let again = eligo()
        .args(["ack", "samples/834/errors/bad-date-and-gender.x12"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), a);
}

#[test]
fn config_check_reports_every_problem_with_its_path() {
    let ok = eligo()
        .args(["config", "check", "samples/eligo.toml"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[plan]\nname = \"x\"\n[[partners]]\nid = \"A\"\nname = \"a\"\ngroups = [\"Z\"]\n",
    )
    .unwrap();
    let bad = eligo().args(["config", "check"]).arg(&p).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("partners[0].groups[0]: group \"Z\" is not defined"),
        "{err}"
    );
}

/// `-o` naming a device or a pipe writes into it; it must not rename a temporary file over it
/// (run as root, `convert -o /dev/null` once replaced the machine's /dev/null with a plain
/// file). Checked through a symbolic link to /dev/null, so that a regression replaces the link
/// in a temporary folder rather than /dev/null, and through a FIFO, whose reader must get
/// exactly what stdout gets.
#[cfg(unix)]
#[test]
fn output_to_a_device_or_pipe_is_written_in_place() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let null = dir.path().join("null");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    let sample = "samples/834/clean-change.x12";
    for args in [["convert", sample], ["ack", sample]] {
        let st = eligo().args(args).arg("-o").arg(&null).status().unwrap();
        assert!(st.success(), "{args:?}");
        let link = std::fs::symlink_metadata(&null).unwrap();
        assert!(link.file_type().is_symlink(), "{args:?} replaced the link");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "{args:?}"
        );
    }

    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo not available: FIFO case skipped");
        return;
    }
    let want = eligo().args(["convert", sample]).output().unwrap();
    assert!(want.status.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            got
        })
    };
    let st = eligo()
        .args(["convert", sample, "-o"])
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let got = reader.join().unwrap();
    assert!(!got.is_empty());
    assert!(got == want.stdout, "the FIFO got other bytes than stdout");
    let meta = std::fs::symlink_metadata(&fifo).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(meta.file_type().is_fifo(), "the FIFO was replaced");
}
