//! `eligo run` and the lifecycle commands, driven through the real binary on temporary folders
//! (issue 5). One behaviour per test.

use eligo::changes::ChangeRecord;
use eligo::lifecycle::TransactionStatus;
use eligo::store::{SqliteStore, Store, TransactionFilter};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCH: &str = "1736577000"; // 2025-01-11T06:30:00Z

/// A scratch installation: a configuration whose folders all live in one temporary directory.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(edit: impl Fn(String) -> String) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let toml = edit(
            eligo::config::DEFAULT_TOML
                .replace("inbound = [\"var/inbound\"]", "inbound = [\"in\"]"),
        );
        fs::write(dir.path().join("eligo.toml"), toml).unwrap();
        fs::create_dir_all(dir.path().join("in")).unwrap();
        Env { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn drop_in(&self, name: &str, data: &[u8]) {
        fs::write(self.path("in").join(name), data).unwrap();
    }

    fn drop_sample(&self, sample: &str) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(sample);
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        self.drop_in(&name, &fs::read(src).unwrap());
    }

    fn eligo(&self, args: &[&str], crash: Option<&str>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eligo"));
        c.args(args)
            .arg("--config")
            .arg(self.path("eligo.toml"))
            .current_dir(self.dir.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env_remove("ELIGO_CRASH_AT");
        if let Some(p) = crash {
            c.env("ELIGO_CRASH_AT", p);
        }
        c.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.eligo(args, None);
        assert!(
            o.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Every output and input file (not the state store), by relative path.
    fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            let Ok(rd) = fs::read_dir(d) else { return };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, fs::read(&p).unwrap());
                }
            }
        }
        for sub in [
            "in",
            "var/outbound",
            "var/batches",
            "var/reports",
            "var/archive",
            "var/quarantine",
        ] {
            walk(self.dir.path(), &self.path(sub), &mut out);
        }
        out
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.path("var/eligo.db")).unwrap()
    }

    fn statuses(&self) -> Vec<(String, String, TransactionStatus)> {
        self.store()
            .transactions(&TransactionFilter::default())
            .unwrap()
            .into_iter()
            .map(|t| (t.member_id, t.kind, t.status))
            .collect()
    }

    fn batch(&self, run: u32) -> Vec<ChangeRecord> {
        let p = self.path(&format!("var/batches/run-{run:06}.changes.jsonl"));
        fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A full file (BGN08 4) for GRP1001 listing these subscribers.
fn full_834(isa13: u32, members: &[&str]) -> Vec<u8> {
    let mut body = vec![
        "ST*834*0001*005010X220A1".to_string(),
        format!("BGN*00*FULL{isa13}*20250110*0830****4"),
        "REF*38*GRP1001".into(),
        "DTP*007*D8*20250201".into(),
        format!("QTY*ET*{}", members.len()),
        format!("QTY*TO*{}", members.len()),
        "N1*P5*ACME MANUFACTURING*FI*069990001".into(),
        "N1*IN*ELIGO HEALTH PLAN*FI*069990002".into(),
    ];
    for m in members {
        body.extend([
            "INS*Y*18*030**A***FT".to_string(),
            format!("REF*0F*{m}"),
            format!("NM1*IL*1*SMITH*ANN****ZZ*{m}"),
            "N3*1 MAIN ST".into(),
            "N4*HARTFORD*CT*06114".into(),
            "DMG*D8*19800101*F".into(),
            // A plan the group offers without a PCP requirement, begun in this plan year and
            // within the retroactivity window: the members pass the business rules.
            "HD*030**HLT*HLT PLATINUM 500*EMP".into(),
            "DTP*348*D8*20250101".into(),
        ]);
    }
    body.push(format!("SE*{}*0001", body.len() + 1));
    let mut s = format!(
        "ISA*00*          *00*          *ZZ*ACMEHR         *ZZ*ELIGOPLAN      *250110*0830*^*00501*{isa13:09}*1*T*:~\nGS*BE*ACMEHR*ELIGOPLAN*20250110*0830*{isa13}*X*005010X220A1~\n"
    );
    for seg in body {
        s.push_str(&seg);
        s.push_str("~\n");
    }
    s.push_str(&format!("GE*1*{isa13}~\nIEA*1*{isa13:09}~\n"));
    s.into_bytes()
}

/// The full-file tests exercise compare mechanics, not the Connecticut Family Health Statement
/// rule (which would hold every add the compare derives): the group does not need one here.
fn no_fhs(t: String) -> String {
    t.replace("fhs_required = true", "fhs_required = false")
}

fn terminate_policy(t: String) -> String {
    no_fhs(t).replace("omission = \"report\"", "omission = \"terminate\"")
}

#[test]
fn generated_full_files_are_clean() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f.x12");
    fs::write(&p, full_834(7001, &["900000001", "900000002"])).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_eligo"))
        .arg("check")
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn run_processes_the_samples_and_a_second_run_does_nothing_new() {
    let env = Env::new(|t| t);
    for f in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbound")).unwrap() {
        let f = f.unwrap().path();
        env.drop_in(
            &f.file_name().unwrap().to_string_lossy(),
            &fs::read(&f).unwrap(),
        );
    }
    let out = env.ok(&["run"]);
    assert!(out.contains("run 1"), "{out}");
    let tree = env.tree();
    for p in [
        "var/batches/run-000001.changes.jsonl",
        "var/batches/run-000001.changes.csv",
        "var/reports/run-000001.rejects.csv",
        "var/reports/run-000001.summary.json",
        "var/outbound/ACMEHR/clean-change.x12.000000002.ack.x12",
        "var/quarantine/run-000001/garbage.bin",
        "var/archive/run-000001/clean-change.x12",
    ] {
        assert!(tree.contains_key(p), "{p} missing: {:?}", tree.keys());
    }
    assert!(!tree.keys().any(|k| k.starts_with("in/")));
    let summary: serde_json::Value =
        serde_json::from_slice(&tree["var/reports/run-000001.summary.json"]).unwrap();
    assert_eq!(summary["quarantined"], 1);
    assert!(summary["changes_submitted"].as_u64().unwrap() > 0);
    assert!(summary["rejects_by_rule"]["X12-E-INVALID-DATE"]
        .as_u64()
        .is_some());

    let again = env.ok(&["run"]);
    assert!(again.contains("nothing to do"), "{again}");
    assert_eq!(env.tree(), tree);
    assert_eq!(env.store().runs().unwrap().len(), 1);
}

/// The run records each change once and writes the same record to its batch: a change
/// submitted in the run keeps no JSON in the store, only where its batch line starts, and is
/// found there, byte for byte; its transaction went Pending then Submitted.
#[test]
fn batch_lines_are_the_stored_records_and_their_log_is_received_then_submitted() {
    let env = Env::new(|t| t);
    env.drop_sample("samples/834/clean-change.x12");
    env.drop_sample("samples/portal/transactions-20250110.csv");
    env.ok(&["run"]);
    let batch_file = env.path("var/batches/run-000001.changes.jsonl");
    let lines = fs::read_to_string(&batch_file).unwrap();
    assert!(lines.lines().count() > 0);
    // The store keeps a change id as its 32 bytes (store.rs, migration 4): hence `unhex`.
    let db = rusqlite::Connection::open(env.path("var/eligo.db")).unwrap();
    let published: String = db
        .query_row("SELECT batch_file FROM runs WHERE id = 1", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(
        fs::canonicalize(&published).unwrap(),
        fs::canonicalize(&batch_file).unwrap()
    );
    let mut store = env.store();
    let mut offset = 0;
    for line in lines.lines() {
        let r: ChangeRecord = serde_json::from_str(line).unwrap();
        let (stored, at): (String, Option<i64>) = db
            .query_row(
                "SELECT record, batch_offset FROM changes WHERE change_id = unhex(?1)",
                [&r.change_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((stored.as_str(), at), ("", Some(offset)));
        assert_eq!(&lines[offset as usize..][..line.len()], line);
        offset += line.len() as i64 + 1;
        assert_eq!(store.change(&r.change_id).unwrap(), Some(r.clone()));
        let (status, batch): (String, Option<i64>) = db
            .query_row(
                "SELECT status, batch_run_id FROM transactions WHERE change_id = unhex(?1)",
                [&r.change_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), batch), ("Submitted", Some(1)));
        let mut st = db
            .prepare("SELECT from_status, to_status, at, reason FROM transaction_log WHERE change_id = unhex(?1) ORDER BY id")
            .unwrap();
        let log: Vec<(Option<String>, String, String, String)> = st
            .query_map([&r.change_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .unwrap()
            .map(|x| x.unwrap())
            .collect();
        assert_eq!(
            log,
            vec![
                (
                    None,
                    "Pending".into(),
                    "2025-01-11".into(),
                    "received".into()
                ),
                (
                    Some("Pending".into()),
                    "Submitted".into(),
                    "2025-01-11T06:30:00".into(),
                    "batch run-000001".into()
                ),
            ]
        );
    }
}

/// A change the business rules reject is never submitted and nothing reads it back: the store
/// keeps its row without JSON, and the reject CSV lists it by change id.
#[test]
fn rejected_changes_keep_no_json_and_are_in_the_reject_csv() {
    let env = Env::new(|t| t);
    env.drop_sample("samples/834/business-rejects.x12");
    env.ok(&["run"]);
    // Ids are stored as their 32 bytes (store.rs, migration 4), shown here in hex.
    let db = rusqlite::Connection::open(env.path("var/eligo.db")).unwrap();
    let mut st = db
        .prepare(
            "SELECT lower(hex(change_id)) FROM changes WHERE record = '' AND batch_offset IS NULL",
        )
        .unwrap();
    let rejected: Vec<String> = st
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    assert!(!rejected.is_empty());
    let csv = fs::read_to_string(env.path("var/reports/run-000001.reject.csv")).unwrap();
    let mut store = env.store();
    for id in &rejected {
        assert!(csv.contains(id.as_str()), "{id} not in the reject CSV");
        let tx: i64 = db
            .query_row(
                "SELECT count(*) FROM transactions WHERE change_id = unhex(?1)",
                [id],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tx, 0);
        assert!(store.change(id).is_err());
    }
}

#[test]
fn crash_at_any_point_then_rerun_gives_the_same_outputs() {
    let setup = |env: &Env| {
        env.drop_sample("samples/834/clean-change.x12");
        env.drop_sample("samples/834/clean-full.x12");
        env.drop_sample("samples/834/errors/bad-date-and-gender.x12");
        env.drop_sample("samples/834/errors/garbage.bin");
        env.drop_sample("samples/portal/transactions-20250110.csv");
    };
    let base = Env::new(|t| t);
    setup(&base);
    base.ok(&["run"]);
    let expected = base.tree();
    let expected_tx = base.statuses();
    assert!(expected.len() > 8);
    for point in eligo::run::CRASH_POINTS {
        let env = Env::new(|t| t);
        setup(&env);
        let o = env.eligo(&["run"], Some(point));
        assert!(!o.status.success(), "{point}: the run did not crash");
        env.ok(&["run"]);
        let got = env.tree();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{point}: different files"
        );
        for (k, v) in &expected {
            assert!(got[k] == *v, "{point}: {k} differs");
        }
        assert_eq!(env.statuses(), expected_tx, "{point}: transactions differ");
        assert!(env.ok(&["run"]).contains("nothing to do"), "{point}");
    }
}

#[test]
fn a_second_run_while_one_holds_the_lock_exits_at_once() {
    let env = Env::new(|t| t);
    fs::create_dir_all(env.path("var")).unwrap();
    let _held = eligo::run::lock(&env.path("var/eligo.db")).unwrap();
    env.drop_sample("samples/834/clean-change.x12");
    let o = env.eligo(&["run"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another eligo run is in progress"));
    assert!(env.path("in/clean-change.x12").exists());
}

#[test]
fn duplicates_by_hash_or_by_sender_and_isa13_are_acknowledged_never_applied() {
    let env = Env::new(|t| t);
    env.drop_sample("samples/834/clean-change.x12");
    env.ok(&["run"]);
    let applied = env.statuses().len();
    // The same bytes under another name, and the same interchange number with other content.
    let orig = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/834/clean-change.x12"))
        .unwrap();
    env.drop_in("resent.x12", &orig);
    let edited = String::from_utf8(orig)
        .unwrap()
        .replace("KOWALSKI", "KOWALSKY");
    env.drop_in("edited.x12", edited.as_bytes());
    let out = env.ok(&["run"]);
    assert!(out.contains("2 duplicate"), "{out}");
    assert_eq!(env.statuses().len(), applied);
    for name in ["resent.x12", "edited.x12"] {
        let ack = env
            .tree()
            .into_iter()
            .find(|(k, _)| k.starts_with(&format!("var/outbound/ACMEHR/{name}")))
            .unwrap()
            .1;
        let ack = String::from_utf8(ack).unwrap();
        assert!(ack.contains("TA1*000001001*250110*0830*R*025~"), "{ack}");
    }
    assert!(env.batch(2).is_empty());
}

#[test]
fn files_still_being_written_and_symlinks_are_not_taken() {
    let env = Env::new(|t| t.replace("min_age_seconds = 0", "min_age_seconds = 3600"));
    env.drop_sample("samples/834/clean-change.x12");
    env.drop_sample("samples/834/clean-full.x12");
    fs::write(env.path("in/clean-full.x12.done"), b"").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/834/errors/bad-se-count.x12"),
        env.path("in/link.x12"),
    )
    .unwrap();
    let out = env.ok(&["run"]);
    assert!(out.contains("clean-change.x12: not ready"), "{out}");
    assert!(env.path("in/clean-change.x12").exists());
    assert!(env.path("var/archive/run-000001/clean-full.x12").exists());
    assert!(!env.path("in/clean-full.x12.done").exists());
    #[cfg(unix)]
    {
        assert!(out.contains("link.x12: symbolic link"), "{out}");
        assert!(env.path("in/link.x12").exists());
    }
}

#[test]
fn full_file_compare_adds_changes_and_terminates_omitted_members() {
    let env = Env::new(terminate_policy);
    let ids = [
        "900000001",
        "900000002",
        "900000003",
        "900000004",
        "900000005",
    ];
    env.drop_in("full1.x12", &full_834(7001, &ids));
    env.ok(&["run"]);
    let b1 = env.batch(1);
    assert_eq!(b1.len(), 5);
    assert!(b1.iter().all(|r| r.kind.label() == "add_subscriber"));

    // One member gone (20%, not more than the share), one changed, one new.
    let mut f2 = String::from_utf8(full_834(
        7002,
        &[
            "900000001",
            "900000002",
            "900000003",
            "900000004",
            "900000006",
        ],
    ))
    .unwrap();
    f2 = f2.replacen(
        "NM1*IL*1*SMITH*ANN****ZZ*900000002",
        "NM1*IL*1*SMITH*ANNE****ZZ*900000002",
        1,
    );
    env.drop_in("full2.x12", f2.as_bytes());
    env.ok(&["run"]);
    let mut got: Vec<(String, String)> = env
        .batch(2)
        .iter()
        .map(|r| (r.kind.label().to_string(), r.member_id.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("add_subscriber".into(), "900000006".into()),
            ("member_change".into(), "900000002".into()),
            ("terminate_member".into(), "900000005".into()),
        ]
    );
    let term = env
        .batch(2)
        .into_iter()
        .find(|r| r.kind.label() == "terminate_member")
        .unwrap();
    // File date 2025-02-01 minus 30 days is 2025-01-02; the end of January is later.
    assert_eq!(term.effective_date.unwrap().to_string(), "2025-01-31");

    // The discrepancy report lists the same three facts per group, member data masked.
    let d = fs::read_to_string(env.path("var/reports/run-000002.discrepancies.csv")).unwrap();
    let rows: Vec<&str> = d.lines().skip(1).collect();
    assert_eq!(
        rows,
        vec![
            "full2.x12,GRP1001,on_file_not_enrolled,900000006,900000006,,,",
            "full2.x12,GRP1001,enrolled_not_on_file,900000005,,terminated,,",
            "full2.x12,GRP1001,field_difference,900000002,,name,\"XXXXX, XXX\",\"XXXXX, XXXX\"",
        ],
        "{d}"
    );
    let html = fs::read_to_string(env.path("var/reports/run-000002.discrepancies.html")).unwrap();
    assert!(
        html.contains("<td class=n>5</td><td class=n>1</td><td class=n>1</td><td class=n>1</td>"),
        "{html}"
    );
    assert!(!html.contains("ANNE"), "masked by default");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = env.path("var/reports/run-000002.discrepancies.html");
        assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn omitted_members_are_only_reported_under_the_report_policy() {
    let env = Env::new(no_fhs);
    env.drop_in("full1.x12", &full_834(7001, &["900000001", "900000002"]));
    env.ok(&["run"]);
    env.drop_in("full2.x12", &full_834(7002, &["900000001"]));
    env.ok(&["run"]);
    assert!(env.batch(2).is_empty());
    let om = fs::read_to_string(env.path("var/reports/run-000002.omissions.csv")).unwrap();
    assert!(om.contains("full2.x12,GRP1001,900000002"), "{om}");
}

#[test]
fn a_full_file_terminating_too_many_is_held_then_released_or_rejected() {
    let env = Env::new(terminate_policy);
    let ids = [
        "900000001",
        "900000002",
        "900000003",
        "900000004",
        "900000005",
    ];
    env.drop_in("full1.x12", &full_834(7001, &ids));
    env.ok(&["run"]);
    env.drop_in("full2.x12", &full_834(7002, &ids[..3]));
    let out = env.ok(&["run"]);
    assert!(
        out.contains("held:    #1 full2.x12 group GRP1001: 2 of 5"),
        "{out}"
    );
    assert!(env.batch(2).is_empty());
    assert!(env.path("var/archive/run-000002/full2.x12").exists());
    let list = env.ok(&["hold", "list"]);
    assert!(
        list.contains("1\theld\t2\tGRP1001\t5\t2\tfull2.x12"),
        "{list}"
    );

    // Held changes keep their JSON in the store: they are in no batch yet.
    let held: Vec<ChangeRecord> = env.store().held_changes(1).unwrap();
    assert_eq!(held.len(), 2);
    let db = rusqlite::Connection::open(env.path("var/eligo.db")).unwrap();
    let kept: i64 = db
        .query_row(
            "SELECT count(*) FROM changes WHERE hold_id = 1 AND record <> '' AND batch_offset IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(kept, 2);
    drop(db);

    env.ok(&["hold", "release", "1"]);
    assert_eq!(
        env.eligo(&["hold", "reject", "1"], None).status.code(),
        Some(1)
    );
    let out = env.ok(&["run"]);
    assert!(out.contains("run 3"), "{out}");
    let b3 = env.batch(3);
    assert_eq!(b3.len(), 2);
    assert!(b3.iter().all(|r| r.kind.label() == "terminate_member"));
    // Released the next night, they come out as they were held.
    assert_eq!(b3, held);
    assert!(env.ok(&["run"]).contains("nothing to do"));

    // Rejected: nothing is ever applied.
    env.drop_in("full3.x12", &full_834(7003, &ids[..1]));
    env.ok(&["run"]);
    env.ok(&["hold", "reject", "2"]);
    assert!(env.ok(&["run"]).contains("nothing to do"));
    assert!(env.ok(&["hold", "list"]).contains("2\trejected"));
}

#[test]
fn lifecycle_submitted_completed_fhs_withdrawn_and_purged() {
    let env = Env::new(|t| t);
    env.drop_sample("samples/834/clean-change.x12");
    env.ok(&["run"]);
    // ACME is a Connecticut small group: the four adds (a family of three and a spouse, none a
    // newborn) wait for their Family Health Statement; everything else is submitted.
    let all = env.statuses();
    let waiting: Vec<&str> = all
        .iter()
        .filter(|t| t.2 == TransactionStatus::PendingFhs)
        .map(|t| t.1.as_str())
        .collect();
    assert_eq!(
        waiting,
        vec![
            "add_subscriber",
            "add_dependent",
            "add_dependent",
            "add_dependent"
        ],
        "{all:?}"
    );
    assert!(all
        .iter()
        .all(|t| t.2 == TransactionStatus::Submitted || t.2 == TransactionStatus::PendingFhs));

    // Confirmation CSV: Submitted -> Completed; a second confirmation is refused.
    let mut s = env.store();
    let txs = s.transactions(&TransactionFilter::default()).unwrap();
    let first = txs
        .iter()
        .find(|t| t.status == TransactionStatus::Submitted)
        .unwrap()
        .change_id
        .clone();
    fs::write(
        env.path("confirm.csv"),
        format!("change_id,confirmed_on\n{first},2025-01-12\n"),
    )
    .unwrap();
    drop(s);
    let confirm = env.path("confirm.csv").to_string_lossy().into_owned();
    env.ok(&["confirm", &confirm]);
    assert_eq!(
        env.eligo(&["confirm", &confirm], None).status.code(),
        Some(1)
    );
    let done = env.ok(&["transactions", "--status", "Completed"]);
    assert!(done.contains(&first), "{done}");

    // FHS: one change waits (as the rules will mark it), one too long.
    let mut s = env.store();
    let base = s.change(&txs[1].change_id).unwrap().unwrap();
    let mk = |member: &str| {
        let mut r = base.clone();
        r.member_id = member.into();
        r.seal()
    };
    let waiting = mk("800000001");
    let late = mk("800000002");
    let ancient = mk("800000003");
    let run = 1;
    for (r, st, d) in [
        (&waiting, TransactionStatus::PendingFhs, "2025-01-05"),
        (&late, TransactionStatus::PendingFhs, "2024-11-01"),
        (&ancient, TransactionStatus::Submitted, "2022-06-01"),
    ] {
        s.insert_change(r, run, None, None).unwrap();
        s.insert_transaction(r, st, d.parse().unwrap(), run, "test")
            .unwrap();
    }
    drop(s);
    env.ok(&["fhs", "receive", "--member", "800000001"]);
    let out = env.ok(&["run"]);
    assert!(out.contains("1 withdrawn, 1 purged"), "{out}");
    let st: BTreeMap<String, TransactionStatus> =
        env.statuses().into_iter().map(|(m, _, s)| (m, s)).collect();
    assert_eq!(st["800000001"], TransactionStatus::Submitted);
    assert_eq!(st["800000002"], TransactionStatus::Withdrawn);
    assert!(!st.contains_key("800000003"));
    assert_eq!(env.batch(2).len(), 1);
    assert!(env.ok(&["runs"]).contains("\t2025-01-11\tdone"));
    assert!(env
        .ok(&["transactions", "--member", "800000001"])
        .contains("Submitted"));
}

#[test]
fn json_logs_carry_no_member_data() {
    let env = Env::new(|t| t);
    env.drop_sample("samples/834/clean-change.x12");
    env.drop_sample("samples/834/errors/bad-date-and-gender.x12");
    let o = env.eligo(&["run", "--log-format", "json", "--verbose"], None);
    assert!(o.status.success());
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(err.lines().count() > 2);
    for l in err.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
    }
    for phi in ["KOWALSKI", "900112222", "19840303", "FRANKLIN"] {
        assert!(!err.contains(phi), "{phi} in logs");
    }
}

/// An outbound folder that cannot be written fails the run cleanly: exit 2, nothing published
/// (no batch, no acknowledgement, no report), no input archived, nothing recorded; once the
/// folder is fixed, the next run does the whole night.
#[test]
fn an_unwritable_outbound_folder_fails_the_run_with_nothing_published() {
    let env = Env::new(|t| {
        t.replace(
            "outbound = \"var/outbound\"",
            "outbound = \"blocked/outbound\"",
        )
    });
    // A plain file where the outbound folder's parent should be: no folder can be made there
    // (permissions would not stop root, which CI runs as).
    fs::write(env.path("blocked"), b"not a folder").unwrap();
    env.drop_sample("samples/834/clean-change.x12");
    let o = env.eligo(&["run"], None);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        env.path("in/clean-change.x12").exists(),
        "the input stays in the inbound folder"
    );
    for dir in ["var/batches", "var/reports", "var/archive"] {
        let n = fs::read_dir(env.path(dir)).map(|d| d.count()).unwrap_or(0);
        assert_eq!(n, 0, "{dir} must stay empty");
    }
    assert!(env.statuses().is_empty(), "nothing recorded");
    fs::remove_file(env.path("blocked")).unwrap();
    env.ok(&["run"]);
    assert!(!env.path("in/clean-change.x12").exists());
    assert_eq!(env.batch(1).len(), 9);
}

/// Names with spaces, quotes, shell characters, non-ASCII letters, a leading dash or a line break
/// are taken, acknowledged, archived or quarantined under their own names: nothing is lost.
#[test]
fn odd_file_names_are_processed_under_their_own_names() {
    let env = Env::new(|t| t);
    let odd = "-ACME file (1) ü;$x'.x12";
    env.drop_in(
        odd,
        &fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/834/clean-full.x12"))
            .unwrap(),
    );
    env.drop_in("new\nline.x12", b"not an interchange");
    env.ok(&["run"]);
    assert!(env.path(&format!("var/archive/run-000001/{odd}")).exists());
    assert!(env
        .path(&format!("var/outbound/ACMEHR/{odd}.000000001.ack.x12"))
        .exists());
    assert!(env.path("var/quarantine/run-000001/new\nline.x12").exists());
    assert_eq!(fs::read_dir(env.path("in")).unwrap().count(), 0);
}

/// The run's reject report shows each rejected member's segments as received (read back from
/// the input), with the finding pointing at the offending segment; member data stays masked.
#[test]
fn the_run_reject_report_shows_the_members_segments() {
    let env = Env::new(|t| t);
    env.drop_sample("samples/834/business-rejects.x12");
    env.ok(&["run", "--as-of", "2025-01-11"]);
    let html = fs::read_to_string(env.path("var/reports/run-000001.reject.html")).unwrap();
    assert!(html.contains("BR-AGE-LIMIT"), "the rule is reported");
    assert!(
        html.contains(r#""id":"HD""#) && html.contains("HLT SILVER 2500"),
        "segments as received are embedded"
    );
    let csv = fs::read_to_string(env.path("var/reports/run-000001.reject.csv")).unwrap();
    let age = csv
        .lines()
        .find(|l| l.contains("BR-AGE-LIMIT"))
        .expect("an age-limit row");
    // The finding sits on the child's DMG (position 36 in the set), as `eligo check` says.
    assert!(age.contains(",36,DMG,2,"), "{age}");
}

/// The business rejects of a file's changes, as (member, rule, change kind, effective date),
/// counted: the reject CSV's business rows.
fn business_rejects(csv_path: &Path) -> BTreeMap<(String, String, String, String), usize> {
    let mut out = BTreeMap::new();
    let mut r = csv::Reader::from_path(csv_path).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (kind, member, rule, change, eff) = (
        col("kind"),
        col("member_id"),
        col("rule_id"),
        col("change_kind"),
        col("effective_date"),
    );
    for row in r.records() {
        let row = row.unwrap();
        if &row[kind] == "business" {
            let k = (
                row[member].to_string(),
                row[rule].to_string(),
                row[change].to_string(),
                row[eff].to_string(),
            );
            *out.entry(k).or_default() += 1;
        }
    }
    out
}

#[test]
fn the_run_rejects_what_convert_with_rules_rejects_however_many_changes_a_file_has() {
    // Thousands of changes: the run hands them to the rules in chunks, which once cut
    // families in two (a dependent without its subscriber, BR-NO-SUBSCRIBER) and forgot
    // the members of earlier chunks.
    let mut x12 = Vec::new();
    let o = eligo::gen::GenOptions {
        size_mb: 1.5,
        seed: 11,
        full: false,
        error_rate: 0.0,
        sets: 2,
    };
    eligo::gen::generate(&o, &mut x12).unwrap();
    // The generated files name their sponsor 069990001.
    let env = Env::new(|t| no_fhs(t).replace("\"GRP1001\"", "\"069990001\""));
    env.drop_in("big.x12", &x12);
    env.ok(&["run", "--as-of", "2025-01-11"]);
    let report = env.path("convert-report");
    let o = Command::new(env!("CARGO_BIN_EXE_eligo"))
        .arg("convert")
        .arg("--config")
        .arg(env.path("eligo.toml"))
        .args(["--as-of", "2025-01-11", "--report"])
        .arg(&report)
        .arg(env.path("var/archive/run-000001/big.x12"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let changes = env.batch(1).len() + env.statuses().len();
    assert!(changes > 3 * 1024, "only {changes} changes");
    let run = business_rejects(&env.path("var/reports/run-000001.reject.csv"));
    let convert = business_rejects(&report.join("reject.csv"));
    assert!(run.len() > 100, "{} rejects", run.len());
    assert!(!run.keys().any(|k| k.1 == "BR-NO-SUBSCRIBER"));
    assert_eq!(run, convert);
    // Every business finding points at the segment that holds its value, also for the
    // changes beyond the first the page shows (whose rows once kept their loop's first
    // segment): the segment convert --config points at, with the finding's segment id.
    let page = std::fs::read_to_string(env.path("var/reports/run-000001.reject.html")).unwrap();
    assert!(
        page.contains("more are listed in the CSV beside it"),
        "the file has too few rejects to go beyond the page"
    );
    let run_at = business_positions(&env.path("var/reports/run-000001.reject.csv"));
    let convert_at = business_positions(&report.join("reject.csv"));
    assert_eq!(run_at, convert_at);
    let input = std::fs::read(env.path("var/archive/run-000001/big.x12")).unwrap();
    let ids = segment_ids(&input);
    for ((st02, position, id, _, _), n) in &run_at {
        assert_eq!(
            ids.get(&(st02.clone(), *position)),
            Some(id),
            "{n} finding(s) at ST02 {st02} segment {position}"
        );
    }
}

/// Business rows of a reject CSV by (ST02, segment position, segment id, member, rule).
fn business_positions(csv_path: &Path) -> BTreeMap<(String, u32, String, String, String), usize> {
    let mut out = BTreeMap::new();
    let mut r = csv::Reader::from_path(csv_path).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (kind, st02, pos, id, member, rule) = (
        col("kind"),
        col("st02"),
        col("segment_position"),
        col("segment_id"),
        col("member_id"),
        col("rule_id"),
    );
    for row in r.records() {
        let row = row.unwrap();
        if &row[kind] == "business" {
            let k = (
                row[st02].to_string(),
                row[pos].parse().unwrap(),
                row[id].to_string(),
                row[member].to_string(),
                row[rule].to_string(),
            );
            *out.entry(k).or_default() += 1;
        }
    }
    out
}

/// The id of every segment of a one-interchange file by (ST02, position in the set, ST = 1).
fn segment_ids(x12: &[u8]) -> BTreeMap<(String, u32), String> {
    let (sep, term) = (x12[3], x12[105]);
    let mut out = BTreeMap::new();
    let (mut st02, mut position) = (String::new(), 0u32);
    for seg in x12.split(|b| *b == term) {
        let seg = String::from_utf8_lossy(seg).trim().to_string();
        let mut el = seg.split(sep as char);
        let id = el.next().unwrap_or_default().to_string();
        if id == "ST" {
            st02 = el.nth(1).unwrap_or_default().to_string();
            position = 0;
        }
        position += 1;
        out.insert((st02.clone(), position), id);
    }
    out
}

#[test]
fn a_full_file_listing_a_member_twice_compares_both_with_the_enrollment_before_it() {
    let env = Env::new(terminate_policy);
    env.drop_in(
        "full1.x12",
        &full_834(7001, &["900000001", "900000002", "900000003"]),
    );
    env.ok(&["run"]);
    // 900000002 listed twice with a new name each time, 900000003 omitted (one of three is
    // more than the hold share: raise it), 900000004 new.
    let f2 = String::from_utf8(full_834(
        7002,
        &["900000001", "900000002", "900000002", "900000004"],
    ))
    .unwrap()
    .replacen(
        "NM1*IL*1*SMITH*ANN****ZZ*900000002",
        "NM1*IL*1*SMITH*ANNE****ZZ*900000002",
        2,
    );
    env.drop_in("full2.x12", f2.as_bytes());
    let cfg = env.path("eligo.toml");
    let t = fs::read_to_string(&cfg).unwrap();
    fs::write(
        &cfg,
        t.replace(
            "hold_termination_share = 0.2",
            "hold_termination_share = 0.5",
        ),
    )
    .unwrap();
    env.ok(&["run"]);
    let got: Vec<(String, String)> = env
        .batch(2)
        .iter()
        .map(|r| (r.kind.label().to_string(), r.member_id.clone()))
        .collect();
    // Both loops of 900000002 differ from the enrollment before the file, so both are member
    // changes (compared with the enrollment after the first, the second would be nothing).
    // Back to back in one set they count as one member loop, so the rules let both through.
    assert_eq!(
        got,
        vec![
            ("member_change".to_string(), "900000002".to_string()),
            ("member_change".to_string(), "900000002".to_string()),
            ("add_subscriber".to_string(), "900000004".to_string()),
            ("terminate_member".to_string(), "900000003".to_string()),
        ]
    );
}

/// A large set is parsed in pieces on several threads (`crate::split`): the run's outputs
/// (batch, acknowledgement, reject reports, summary) and its transactions are those of a
/// sequential parse. Small pieces (`ELIGO_SPLIT_PIECE`) cut a 1 MB file into many; errors in
/// a few members reject two of its eight sets inside the pieces (999 findings, reject rows).
#[test]
fn a_file_parsed_in_pieces_gives_the_outputs_of_a_sequential_parse() {
    let mut data = Vec::new();
    let opts = eligo::gen::GenOptions {
        size_mb: 1.0,
        seed: 7,
        error_rate: 0.1,
        sets: 8,
        ..Default::default()
    };
    eligo::gen::generate(&opts, &mut data).unwrap();
    let run = |jobs: &str| {
        // The generator's group, so that most changes pass the business rules.
        let env = Env::new(|t| t.replace("GRP1001", "069990001"));
        env.drop_in("big.x12", &data);
        let o = Command::new(env!("CARGO_BIN_EXE_eligo"))
            .args(["run", "--config"])
            .arg(env.path("eligo.toml"))
            .current_dir(env.dir.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("ELIGO_JOBS", jobs)
            .env("ELIGO_SPLIT_PIECE", "2000")
            .env_remove("ELIGO_CRASH_AT")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (env.tree(), env.statuses())
    };
    let (seq_tree, seq_tx) = run("1");
    let (split_tree, split_tx) = run("2");
    assert!(seq_tx.len() > 100, "{}", seq_tx.len());
    assert_eq!(
        seq_tree.keys().collect::<Vec<_>>(),
        split_tree.keys().collect::<Vec<_>>()
    );
    for (k, v) in &seq_tree {
        assert!(split_tree[k] == *v, "{k} differs");
    }
    assert_eq!(seq_tx, split_tx);
}

#[test]
fn the_demo_copies_its_samples_once_and_waits_for_no_running_run() {
    let env = Env::new(|t| t);
    fs::create_dir_all(env.path("samples/inbound")).unwrap();
    let sample =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/834/clean-change.x12"))
            .unwrap();
    fs::write(env.path("samples/inbound/clean-change.x12"), &sample).unwrap();
    fs::create_dir_all(env.path("var")).unwrap();
    {
        // A run in progress: the demo neither copies nor waits on the store.
        let _held = eligo::run::lock(&env.path("var/eligo.db")).unwrap();
        let o = env.eligo(&["run", "--demo"], None);
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("another eligo run is in progress"));
        assert!(!env.path("in/clean-change.x12").exists());
    }
    env.ok(&["run", "--demo"]);
    assert!(
        !env.path("in/clean-change.x12").exists(),
        "taken by the run"
    );
    let applied = env.statuses();
    assert!(!applied.is_empty());
    // The ledger knows the sample: a second demo copies nothing and applies nothing.
    assert!(env.ok(&["run", "--demo"]).contains("nothing to do"));
    assert!(!env.path("in/clean-change.x12").exists());
    assert_eq!(env.statuses(), applied);
}
