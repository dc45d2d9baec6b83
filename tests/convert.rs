//! Issue 3: normalized change batches from 834 files and portal exports.
//!
//! Expected records were checked by hand against samples/834/README.md ("what each member is")
//! and x12-834.md §2.2.

use eligo::batch::{convert_x12, ChangeWriter, Format, CSV_COLUMNS};
use eligo::changes::ChangeRecord;
use eligo::check::Engine;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Converts files (834 or portal CSV) into JSON values, as `eligo convert` would.
fn convert(files: &[&str]) -> Vec<Value> {
    let engine = Engine::embedded();
    let mut w = ChangeWriter::new(Vec::new(), Format::Jsonl).unwrap();
    for f in files {
        let path = root().join(f);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::File::open(&path).unwrap();
        if f.ends_with(".csv") {
            let s = eligo::portal::convert_csv(&name, input, &mut w).unwrap();
            assert!(s.errors.is_empty(), "{:?}", s.errors);
        } else {
            let s = convert_x12(&engine, &name, input, &mut w).unwrap();
            assert!(s.issues.is_empty(), "{:?}", s.issues);
        }
    }
    let out = w.into_inner().unwrap();
    let values: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_valid(&values);
    values
}

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let text = std::fs::read_to_string(root().join("schemas/change-record.v1.json")).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap()
    })
}

/// Every emitted record must satisfy schemas/change-record.v1.json and carry its own id.
fn assert_valid(values: &[Value]) {
    for v in values {
        let errors: Vec<String> = validator().iter_errors(v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?} in {v}");
        let rec: ChangeRecord = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(rec.change_id, rec.compute_id());
    }
}

/// The one record of `kind` for `member_id`.
fn one<'a>(values: &'a [Value], kind: &str, member_id: &str) -> &'a Value {
    let found: Vec<&Value> = values
        .iter()
        .filter(|v| v["kind"] == kind && v["member_id"] == member_id)
        .collect();
    assert_eq!(found.len(), 1, "{kind} for {member_id}: {found:?}");
    found[0]
}

/// Checks the content fields of a record.
#[allow(clippy::too_many_arguments)]
fn expect(
    v: &Value,
    eff: &str,
    sub: &str,
    rel: &str,
    reason: Value,
    division: Value,
    new: Value,
    old: Value,
) {
    assert_eq!(v["effective_date"], eff, "{v}");
    assert_eq!(v["group_id"], "GRP1001");
    assert_eq!(v["subscriber_id"], sub);
    assert_eq!(v["relationship"], rel);
    assert_eq!(v["reason"], reason);
    assert_eq!(v["division"], division);
    assert_eq!(v["new"], new, "{v}");
    assert_eq!(v["old"], old, "{v}");
}

const CHANGE: &str = "samples/834/clean-change.x12";
const FULL: &str = "samples/834/clean-full.x12";
const MORE: &str = "tests/data/more-changes.x12";
const TRANSACTIONS: &str = "samples/portal/transactions-20250110.csv";
const ROSTER: &str = "samples/portal/roster-20250110.csv";

#[test]
fn add_subscriber_carries_member_coverages_pcp_and_division() {
    let v = convert(&[CHANGE]);
    let r = one(&v, "add_subscriber", "900112222");
    expect(
        r,
        "2025-02-01",
        "900112222",
        "self",
        json!("initial_enrollment"),
        json!("ASSEMBLY"),
        json!({
            "name": {"last": "KOWALSKI", "first": "DANIEL", "middle": "J"},
            "demographics": {"birth_date": "1984-03-03", "gender": "male", "marital_status": "married"},
            "residence": {"line1": "118 FRANKLIN AVE", "line2": "APT 3", "city": "HARTFORD", "state": "CT", "postal_code": "06114"},
            "contacts": [{"kind": "home_phone", "value": "8605550142"}],
            "employment_status": "full_time",
            "coverages": [
                {"insurance_line": "health", "plan": "HLT GOLD 1000", "coverage_level": "family", "begin": "2025-02-01",
                 "pcp": {"name": {"last": "WELBY", "first": "MARCUS"}, "npi": "1990000014"}},
                {"insurance_line": "dental", "plan": "DENTAL PLUS", "coverage_level": "family", "begin": "2025-02-01"}
            ]
        }),
        Value::Null,
    );
    assert_eq!(
        r["source"],
        json!({"type": "x12", "file": "clean-change.x12", "isa13": "000001001", "gs06": "1001", "st02": "0001", "first_segment": 11, "last_segment": 31})
    );
}

#[test]
fn add_dependent_for_spouse_added_by_marriage() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "add_dependent", "900228899"),
        "2025-02-01",
        "900228888",
        "spouse",
        json!("marriage"),
        Value::Null,
        json!({
            "name": {"last": "OLSEN", "first": "KAREN"},
            "demographics": {"birth_date": "1990-04-02", "gender": "female", "marital_status": "married"},
            "coverages": [{"insurance_line": "health", "plan": "HLT PLATINUM 500", "begin": "2025-02-01"}]
        }),
        Value::Null,
    );
    // Set 0001 adds two more dependents.
    assert_eq!(v.iter().filter(|r| r["kind"] == "add_dependent").count(), 3);
}

#[test]
fn terminate_member_uses_eligibility_end() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "terminate_member", "900225555"),
        "2025-02-28",
        "900225555",
        "self",
        json!("termination_of_employment"),
        Value::Null,
        json!({}),
        Value::Null,
    );
}

#[test]
fn terminate_coverage_uses_benefit_end() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "terminate_coverage", "900224444"),
        "2025-02-28",
        "900224444",
        "self",
        json!("voluntary_withdrawal"),
        Value::Null,
        json!({"coverages": [{"insurance_line": "dental", "plan": "DENTAL BASIC", "coverage_level": "employee_only", "end": "2025-02-28"}]}),
        Value::Null,
    );
}

#[test]
fn cancel_is_a_deleted_coverage() {
    let v = convert(&[MORE]);
    expect(
        one(&v, "cancel", "900663333"),
        "2025-02-01",
        "900663333",
        "self",
        json!("voluntary_withdrawal"),
        Value::Null,
        json!({"coverages": [{"insurance_line": "dental", "plan": "DENTAL PLUS", "coverage_level": "employee_only"}]}),
        Value::Null,
    );
    // The same member's HD*021 is a separate coverage add.
    assert_eq!(
        one(&v, "add_coverage", "900663333")["effective_date"],
        "2025-03-01"
    );
}

#[test]
fn reinstate_member_and_coverage() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "reinstate", "900226666"),
        "2025-01-01",
        "900226666",
        "self",
        json!("re_enrollment"),
        Value::Null,
        json!({"coverages": [{"insurance_line": "health", "plan": "HLT GOLD 1000", "coverage_level": "employee_only", "begin": "2025-01-01"}]}),
        Value::Null,
    );
}

#[test]
fn address_change_from_member_dtp303() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "address_change", "900221111"),
        "2025-02-01",
        "900221111",
        "self",
        json!("change_of_location"),
        Value::Null,
        json!({"residence": {"line1": "77 WASHINGTON ST", "city": "MIDDLETOWN", "state": "CT", "postal_code": "06457"}}),
        Value::Null,
    );
}

#[test]
fn name_change_carries_the_prior_name() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "name_change", "900222222"),
        "2025-02-01",
        "900222222",
        "self",
        json!("change_in_identifying_data"),
        Value::Null,
        json!({"name": {"last": "NGUYEN-BRADLEY", "first": "LINDA"}}),
        json!({"name": {"last": "NGUYEN", "first": "LINDA"}}),
    );
    // The DMG beside the correction is not a separate demographic change.
    assert!(!v.iter().any(|r| r["kind"] == "demographic_change"));
}

#[test]
fn demographic_change_without_prior_name() {
    let v = convert(&[MORE]);
    expect(
        one(&v, "demographic_change", "900661111"),
        "2025-03-01",
        "900661111",
        "self",
        json!("change_in_identifying_data"),
        Value::Null,
        json!({"demographics": {"birth_date": "1980-01-07", "gender": "female", "marital_status": "married"}}),
        Value::Null,
    );
}

#[test]
fn pcp_change_is_effective_on_pla03() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "pcp_change", "900223333"),
        "2025-03-01",
        "900223333",
        "self",
        json!("pcp_change"),
        Value::Null,
        json!({"coverages": [{"insurance_line": "health", "plan": "HLT GOLD 1000", "coverage_level": "employee_only",
            "pcp": {"name": {"last": "PATEL", "first": "ANJALI"}, "npi": "1990000030", "change_reason": "patient_moved"}}]}),
        Value::Null,
    );
}

#[test]
fn plan_and_coverage_level_change_from_one_hd001() {
    let v = convert(&[CHANGE]);
    let cov = json!({"coverages": [{"insurance_line": "health", "plan": "HLT PLATINUM 500", "coverage_level": "employee_and_spouse"}]});
    for kind in ["plan_change", "coverage_level_change"] {
        expect(
            one(&v, kind, "900228888"),
            "2025-02-01",
            "900228888",
            "self",
            json!("plan_change"),
            Value::Null,
            cov.clone(),
            Value::Null,
        );
    }
}

#[test]
fn division_change_from_reporting_category() {
    let v = convert(&[MORE]);
    expect(
        one(&v, "division_change", "900662222"),
        "2025-03-01",
        "900662222",
        "self",
        json!("transfer"),
        json!("PAINT SHOP"),
        json!({"division": "PAINT SHOP"}),
        Value::Null,
    );
}

#[test]
fn id_card_order() {
    let v = convert(&[CHANGE]);
    expect(
        one(&v, "id_card_order", "900227777"),
        "2025-01-15",
        "900227777",
        "self",
        Value::Null,
        Value::Null,
        json!({"coverages": [{"insurance_line": "health", "plan": "HLT SILVER 2500", "coverage_level": "employee_only",
            "id_cards": [{"card_type": "health", "plan": "HLT SILVER 2500", "count": 1, "action": "replace"}]}]}),
        Value::Null,
    );
}

#[test]
fn audit_rows_from_a_verify_file() {
    let v = convert(&[FULL]);
    assert_eq!(v.len(), 7);
    assert!(v.iter().all(|r| r["kind"] == "audit"));
    expect(
        one(&v, "audit", "900332222"),
        "2024-07-01",
        "900332222",
        "self",
        Value::Null,
        Value::Null,
        json!({
            "name": {"last": "WASHINGTON", "first": "DENISE"},
            "demographics": {"birth_date": "1995-02-19", "gender": "female", "marital_status": "single"},
            "residence": {"line1": "300 MAIN ST", "city": "NORWALK", "state": "CT", "postal_code": "06851"},
            "employment_status": "full_time",
            "coverages": [
                {"insurance_line": "health", "plan": "HLT SILVER 2500", "coverage_level": "employee_only", "begin": "2024-07-01"},
                {"insurance_line": "vision", "plan": "VISION STANDARD", "coverage_level": "employee_only", "begin": "2024-07-01"}
            ]
        }),
        Value::Null,
    );
}

#[test]
fn clean_change_gives_thirteen_changes_in_input_order() {
    let v = convert(&[CHANGE]);
    let kinds: Vec<&str> = v.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "add_subscriber",
            "add_dependent",
            "add_dependent",
            "address_change",
            "name_change",
            "pcp_change",
            "terminate_coverage",
            "terminate_member",
            "reinstate",
            "id_card_order",
            "plan_change",
            "coverage_level_change",
            "add_dependent"
        ]
    );
}

fn content(values: &[Value]) -> Vec<ChangeRecord> {
    values
        .iter()
        .map(|v| {
            serde_json::from_value::<ChangeRecord>(v.clone())
                .unwrap()
                .content()
        })
        .collect()
}

#[test]
fn portal_transactions_equal_the_834_changes_apart_from_source() {
    let x12 = convert(&[CHANGE]);
    let portal = convert(&[TRANSACTIONS]);
    assert_eq!(content(&x12), content(&portal));
    // Ids differ because the source is part of them.
    assert_ne!(x12[0]["change_id"], portal[0]["change_id"]);
}

#[test]
fn portal_roster_equals_the_834_verify_file_apart_from_source() {
    assert_eq!(content(&convert(&[FULL])), content(&convert(&[ROSTER])));
}

#[test]
fn portal_source_trace_names_file_rows_transaction_and_status() {
    let v = convert(&[TRANSACTIONS]);
    assert_eq!(
        v[0]["source"],
        json!({"type": "portal", "file": "transactions-20250110.csv", "layout": "transactions", "first_row": 2, "last_row": 3,
               "transaction_id": "T250109-0001", "status": "pending_awaiting_family_health_statement"})
    );
}

#[test]
fn withdrawn_and_incomplete_portal_transactions_give_no_change() {
    let v = convert(&[TRANSACTIONS]);
    let ids: Vec<&str> = v
        .iter()
        .map(|r| r["source"]["transaction_id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"T250109-0011"), "withdrawn");
    assert!(!ids.contains(&"T250109-0015"), "incomplete");
}

#[test]
fn same_input_gives_byte_identical_output_and_stable_ids() {
    let a = convert(&[CHANGE, TRANSACTIONS]);
    let b = convert(&[CHANGE, TRANSACTIONS]);
    assert_eq!(a, b);
    let ids: std::collections::HashSet<&str> =
        a.iter().map(|r| r["change_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), a.len(), "ids are unique");
}

#[test]
fn only_the_accepted_set_of_a_partly_rejected_group_is_converted() {
    let engine = Engine::embedded();
    let mut w = ChangeWriter::new(Vec::new(), Format::Jsonl).unwrap();
    let input =
        std::fs::File::open(root().join("samples/834/errors/two-sets-one-bad.x12")).unwrap();
    let s = convert_x12(&engine, "two-sets-one-bad.x12", input, &mut w).unwrap();
    assert_eq!((s.sets_applied, s.sets_dropped), (1, 1));
    let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
    assert!(out.lines().count() > 0);
    assert!(out.lines().all(|l| l.contains("\"st02\":\"0001\"")));
}

fn convert_count(file: &str) -> usize {
    let engine = Engine::embedded();
    let mut w = ChangeWriter::new(Vec::new(), Format::Jsonl).unwrap();
    let input = std::fs::File::open(root().join(file)).unwrap();
    convert_x12(&engine, "f", input, &mut w).unwrap();
    String::from_utf8(w.into_inner().unwrap())
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_rejected_group_gives_no_changes() {
    // The set is accepted but the group is AK9 R (GE02 mismatch).
    assert_eq!(convert_count("samples/834/errors/gs-ge-mismatch.x12"), 0);
}

#[test]
fn a_rejected_interchange_gives_no_changes() {
    // TA1 R 023: no IEA.
    assert_eq!(convert_count("samples/834/errors/missing-iea.x12"), 0);
    assert_eq!(
        convert_count("samples/834/errors/isa-iea-control-mismatch.x12"),
        0
    );
}

#[test]
fn a_rejected_set_gives_no_changes() {
    assert_eq!(
        convert_count("samples/834/errors/bad-date-and-gender.x12"),
        0
    );
    assert_eq!(convert_count("samples/834/errors/garbage.bin"), 0);
}

fn portal_errors(csv: &str) -> (Vec<String>, Vec<Value>) {
    let mut w = ChangeWriter::new(Vec::new(), Format::Jsonl).unwrap();
    let s = eligo::portal::convert_csv("t.csv", csv.as_bytes(), &mut w).unwrap();
    let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
    let values: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_valid(&values);
    (s.errors.iter().map(|e| e.to_string()).collect(), values)
}

const TX_HEADER: &str = "transaction_id,transaction_type,status,submitted_at,effective_date,group_id,subscriber_id,member_id,relationship,last_name,first_name,birth_date,gender,address_line1,city,state,zip";

#[test]
fn bad_portal_rows_are_named_by_file_row_and_column_and_the_rest_goes_on() {
    let csv = format!(
        "{TX_HEADER}\n\
         T1,Address Change,Completed,2025-01-09T10:00:00,2025-02-01,GRP1001,900221111,900221111,Employee,OKAFOR,GRACE,,,77 WASHINGTON ST,MIDDLETOWN,CT,06457\n\
         T2,Address Change,Completed,2025-01-09T10:00:00,2025-02-30,GRP1001,900221112,900221112,Employee,DOE,JANE,,,1 MAIN ST,HARTFORD,CT,06103\n\
         T3,Demographic Change,Completed,2025-01-09T10:00:00,2025-02-01,GRP1001,900221113,900221113,Employee,ROE,RICHARD,1970-01-01,Q,,,,\n\
         T4,Address Change,Completed,2025-01-09T10:00:00,2025-02-01,GRP1001,,900221114,Employee,POE,EDGAR,,,2 MAIN ST,HARTFORD,CT,06103\n\
         T5,Demographic Change,Completed,2025-01-09T10:00:00,2025-02-01,GRP1001,900221115,900221115,Employee,LOE,ANN,1971-02-03,Female,,,,\n"
    );
    let (errors, values) = portal_errors(&csv);
    assert_eq!(
        errors,
        [
            "t.csv: row 3, column effective_date: not a date YYYY-MM-DD",
            "t.csv: row 4, column gender: unknown code",
            "t.csv: row 5, column subscriber_id: required value is empty",
        ]
    );
    let kinds: Vec<&str> = values.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["address_change", "demographic_change"]);
    // No member data in the messages.
    assert!(!errors.iter().any(|e| e.contains("ROE") || e.contains('Q')));
}

#[test]
fn a_portal_file_without_a_required_column_is_rejected_at_its_header() {
    let (errors, values) =
        portal_errors("transaction_id,transaction_type,status\nT1,Address Change,Completed\n");
    assert!(values.is_empty());
    assert!(
        errors.contains(
            &"t.csv: row 1, column effective_date: required column is missing from the header"
                .to_string()
        ),
        "{errors:?}"
    );
}

#[test]
fn every_change_kind_of_the_issue_is_produced_by_the_samples() {
    let v = convert(&[CHANGE, FULL, MORE, TRANSACTIONS, ROSTER]);
    for kind in [
        "add_subscriber",
        "add_dependent",
        "terminate_member",
        "terminate_coverage",
        "cancel",
        "reinstate",
        "address_change",
        "name_change",
        "demographic_change",
        "pcp_change",
        "plan_change",
        "coverage_level_change",
        "division_change",
        "id_card_order",
        "audit",
    ] {
        assert!(v.iter().any(|r| r["kind"] == kind), "{kind}");
    }
}

fn eligo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eligo"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_writes_jsonl_to_stdout_by_default() {
    let out = eligo(&["convert", CHANGE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let values: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(values.len(), 13);
    assert_valid(&values);
}

#[test]
fn cli_writes_csv_atomically_with_private_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("batch.csv");
    let out = eligo(&[
        "convert",
        CHANGE,
        TRANSACTIONS,
        "--to",
        "csv",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let mut rdr = csv::Reader::from_path(&out_path).unwrap();
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        CSV_COLUMNS
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 26);
    assert_eq!(&rows[0][1], "add_subscriber");
    assert_eq!(&rows[0][9], "KOWALSKI");
    // new_json holds the full values.
    let new: Value = serde_json::from_str(&rows[0][29]).unwrap();
    assert_eq!(new["coverages"].as_array().unwrap().len(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp files left"
    );
}

#[test]
fn cli_exit_status_is_1_when_a_set_is_rejected() {
    let out = eligo(&["convert", "samples/834/errors/two-sets-one-bad.x12"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 set(s) rejected"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).is_empty());
}

#[test]
fn converted_sample_in_docs_matches_the_binary() {
    let doc = std::fs::read_to_string(root().join("docs/convert.md")).unwrap();
    let out = eligo(&["convert", CHANGE]);
    let first = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&first).unwrap();
    let block = doc
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/convert.md has a json block");
    let shown: Value = serde_json::from_str(block).unwrap();
    assert_eq!(
        shown, v,
        "docs/convert.md must show the first record of clean-change.x12"
    );
}
