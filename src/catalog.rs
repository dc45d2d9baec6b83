//! The catalogue of finding ids: what each one means, why it matters, and how a sender fixes
//! it. `eligo check --explain ID` prints an entry; trading-partner policies name these ids.
//!
//! Envelope findings are named after the acknowledgement code they carry (`X12-TA1-021`,
//! `X12-AK905-5`, `X12-IK502-4`), so that a waiver can target exactly one envelope check.

use crate::finding::Ack;

/// One catalogue entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub id: String,
    pub snip: u8,
    pub title: String,
    pub why: String,
    pub fix: String,
}

/// The stable id of an envelope finding, from its acknowledgement code.
pub fn envelope_id(ack: Ack) -> &'static str {
    ENVELOPE
        .iter()
        .find(|(a, _, _)| *a == ack)
        .map(|(_, id, _)| *id)
        .unwrap_or("X12-ENVELOPE")
}

/// (code, id, title) of every envelope check.
const ENVELOPE: &[(Ack, &str, &str)] = &[
    (Ack::Ta1("001"), "X12-TA1-001", "IEA02 does not match ISA13"),
    (
        Ack::Ta1("003"),
        "X12-TA1-003",
        "ISA12 names a version other than 00501",
    ),
    (
        Ack::Ta1("004"),
        "X12-TA1-004",
        "the segment terminator is unusable",
    ),
    (
        Ack::Ta1("005"),
        "X12-TA1-005",
        "ISA05 is not a valid sender id qualifier",
    ),
    (
        Ack::Ta1("006"),
        "X12-TA1-006",
        "ISA06 (sender id) is blank or not 15 characters",
    ),
    (
        Ack::Ta1("007"),
        "X12-TA1-007",
        "ISA07 is not a valid receiver id qualifier",
    ),
    (
        Ack::Ta1("008"),
        "X12-TA1-008",
        "ISA08 (receiver id) is blank or not 15 characters",
    ),
    (
        Ack::Ta1("009"),
        "X12-TA1-009",
        "ISA08 is not one of our interchange ids",
    ),
    (Ack::Ta1("010"), "X12-TA1-010", "ISA01 is not 00 or 03"),
    (Ack::Ta1("011"), "X12-TA1-011", "ISA02 is not 10 characters"),
    (Ack::Ta1("012"), "X12-TA1-012", "ISA03 is not 00 or 01"),
    (Ack::Ta1("013"), "X12-TA1-013", "ISA04 is not 10 characters"),
    (Ack::Ta1("014"), "X12-TA1-014", "ISA09 is not a date YYMMDD"),
    (Ack::Ta1("015"), "X12-TA1-015", "ISA10 is not a time HHMM"),
    (
        Ack::Ta1("016"),
        "X12-TA1-016",
        "ISA11 is not a usable repetition separator",
    ),
    (Ack::Ta1("017"), "X12-TA1-017", "ISA12 is not 00501"),
    (Ack::Ta1("018"), "X12-TA1-018", "ISA13 is not 9 digits"),
    (Ack::Ta1("019"), "X12-TA1-019", "ISA14 is not 0 or 1"),
    (Ack::Ta1("020"), "X12-TA1-020", "ISA15 is not P or T"),
    (
        Ack::Ta1("021"),
        "X12-TA1-021",
        "IEA01 does not count the groups",
    ),
    (
        Ack::Ta1("022"),
        "X12-TA1-022",
        "the ISA is not fixed-width or has the wrong number of elements",
    ),
    (Ack::Ta1("023"), "X12-TA1-023", "the file ends before IEA"),
    (
        Ack::Ta1("024"),
        "X12-TA1-024",
        "segments outside a group or set, or a malformed TA1",
    ),
    (
        Ack::Ta1("025"),
        "X12-TA1-025",
        "this sender already sent this ISA13",
    ),
    (
        Ack::Ta1("026"),
        "X12-TA1-026",
        "the element separator is unusable",
    ),
    (
        Ack::Ta1("027"),
        "X12-TA1-027",
        "the component separator (ISA16) is unusable",
    ),
    (
        Ack::Group("1"),
        "X12-AK905-1",
        "the functional group (GS01) is not supported",
    ),
    (
        Ack::Group("2"),
        "X12-AK905-2",
        "the group's version (GS08) is not supported",
    ),
    (
        Ack::Group("3"),
        "X12-AK905-3",
        "the group has no GE trailer",
    ),
    (Ack::Group("4"), "X12-AK905-4", "GE02 does not match GS06"),
    (
        Ack::Group("5"),
        "X12-AK905-5",
        "GE01 does not count the sets",
    ),
    (
        Ack::Group("6"),
        "X12-AK905-6",
        "GS06 is not a number of 1 to 9 digits",
    ),
    (
        Ack::Group("19"),
        "X12-AK905-19",
        "GS06 repeats within the interchange",
    ),
    (
        Ack::Set("1"),
        "X12-IK502-1",
        "the transaction set (ST01) is not supported here",
    ),
    (Ack::Set("2"), "X12-IK502-2", "the set has no SE trailer"),
    (Ack::Set("3"), "X12-IK502-3", "SE02 does not match ST02"),
    (
        Ack::Set("4"),
        "X12-IK502-4",
        "SE01 does not count the segments",
    ),
    (Ack::Set("6"), "X12-IK502-6", "ST01 is missing"),
    (
        Ack::Set("7"),
        "X12-IK502-7",
        "ST02 is not 4 to 9 characters",
    ),
    (
        Ack::Set("23"),
        "X12-IK502-23",
        "ST02 repeats within the group",
    ),
    (
        Ack::Set("I6"),
        "X12-IK502-I6",
        "ST03 is not the supported guide or differs from GS08",
    ),
];

/// Entries for the findings of the X12 engine (levels 1, 2 and 5) beyond the envelope.
const ENGINE: &[(&str, u8, &str, &str, &str)] = &[
    ("X12-EMPTY-FILE", 1, "the file is empty", "an empty drop usually means a failed transfer; nothing can be acknowledged because there is no ISA to answer", "resend the file"),
    ("X12-NOT-AN-INTERCHANGE", 1, "bytes that are not an X12 interchange", "without an ISA the file cannot be read or acknowledged (a wrong file, a zip, a PDF, or garbage between interchanges)", "send only X12 interchanges starting with ISA"),
    ("X12-TRUNCATED", 1, "the file ends inside a segment", "the transfer was cut short: the last segment has no terminator", "resend the complete file"),
    ("X12-SEGMENT-TOO-LONG", 1, "a segment longer than the limit", "a missing terminator runs segments together; eligo stops at 1 MiB rather than read the file into memory", "check the segment terminator in ISA16+1"),
    ("X12-OUTSIDE-INTERCHANGE", 1, "segments outside any interchange", "data after IEA or before ISA belongs to no envelope and is ignored", "remove trailing data or add the missing ISA"),
    ("X12-FINDINGS-CAPPED", 1, "more findings in one member than eligo lists", "a member with thousands of errors is almost always a structural break (a missing terminator, a shifted loop); the rest are counted, not listed, so memory stays bounded", "fix the first findings listed and check the file again"),
    ("X12-SE-MISSING", 1, "a set without SE", "the set's end cannot be verified; the set is rejected (IK502 2)", "send SE with the segment count and ST02"),
    ("X12-GE-MISSING", 1, "a group without GE", "the group's end cannot be verified; the group is rejected (AK905 3)", "send GE with the set count and GS06"),
    ("X12-GS-DATE", 1, "GS04 is not a date", "no AK905 code exists for it, so it is a warning", "send CCYYMMDD"),
    ("X12-GS-TIME", 1, "GS05 is not a time", "no AK905 code exists for it, so it is a warning", "send HHMM or HHMMSS"),
    ("X12-BAD-DELIMITERS", 1, "the ISA's delimiters are unusable", "letters, digits or repeated delimiters make the data ambiguous", "use distinct punctuation delimiters such as * : ^ ~"),
    ("X12-S-UNRECOGNIZED", 1, "a segment ID that is not an X12 segment", "it cannot be placed or acknowledged with IK3 (X12 RFI 1257); the set is rejected with IK502 5", "remove the segment or fix its ID"),
    ("X12-S-NOT-IN-SET", 1, "an X12 segment that is not part of the 834", "it belongs to another transaction (IK304 6)", "remove it"),
    ("X12-S-UNEXPECTED", 1, "a segment in a place the guide does not allow", "the loop structure around it is wrong (IK304 2)", "move the segment to its loop or remove it"),
    ("X12-S-OUT-OF-ORDER", 1, "a segment out of sequence", "it belongs earlier in its loop (IK304 7)", "send the loop's segments in guide order"),
    ("X12-S-REQUIRED-MISSING", 2, "a required segment or loop is missing", "the guide requires it (IK304 3); the position given is the first segment read after where it was expected", "add the segment"),
    ("X12-S-LOOP-OVER-MAX", 2, "a loop repeats more than the guide allows", "e.g. more than 99 coverages per member (IK304 4)", "split or merge the loops"),
    ("X12-S-OVER-MAX-USE", 2, "a segment repeats more than its maximum", "IK304 5", "send it at most the allowed number of times"),
    ("X12-S-LEADING-BLANKS", 1, "spaces or tabs before a segment ID", "indentation is not valid X12 (IK304 1); some translators reject the whole file", "do not indent segments"),
    ("X12-S-TRAILING-SEPARATOR", 1, "a segment ends with an element separator", "5010 requires trailing empty elements to be omitted (X12 RFI 1498)", "drop the trailing separators"),
    ("IG-S-NOT-USED", 2, "a segment the guide marks Not Used", "IK304 I4", "remove it"),
    ("X12-E-REQUIRED-MISSING", 2, "a required element is empty", "IK403 1", "send a value"),
    ("X12-E-CONDITIONAL-MISSING", 1, "an element required by a syntax note is missing", "paired, required and conditional notes (P, R, C, L) tie elements together (IK403 2)", "send both or neither as the note says"),
    ("X12-E-TOO-MANY-ELEMENTS", 1, "more elements than the segment defines", "often an extra separator that shifts every following element (IK403 3)", "remove the extra element separators"),
    ("X12-E-TOO-SHORT", 1, "a value shorter than its minimum length", "IK403 4", "pad or correct the value"),
    ("X12-E-TOO-LONG", 1, "a value longer than its maximum length", "IK403 5", "shorten the value"),
    ("X12-E-INVALID-CHARACTER", 1, "a character not allowed in the value", "control characters, non-ASCII bytes, or letters in numbers (IK403 6)", "send printable ASCII only; numbers as digits"),
    ("X12-E-TRAILING-SPACES", 1, "a value with avoidable trailing spaces", "padding is not allowed outside the ISA (IK403 6)", "trim the value"),
    ("X12-E-INVALID-CODE", 2, "a code not in the element's code list", "IK403 7", "use one of the guide's codes"),
    ("X12-E-INVALID-DATE", 1, "a date that does not exist or does not match its format", "IK403 8", "send a real date CCYYMMDD (or CCYYMMDD-CCYYMMDD for RD8)"),
    ("X12-E-INVALID-TIME", 1, "a time that does not exist", "IK403 9", "send HHMM, HHMMSS, HHMMSSD or HHMMSSDD"),
    ("X12-E-EXCLUSION", 1, "two elements that exclude each other are both present", "IK403 10", "send only one of them"),
    ("X12-E-TOO-MANY-REPETITIONS", 1, "an element repeats more than allowed", "IK403 12", "send fewer repetitions"),
    ("X12-E-TOO-MANY-COMPONENTS", 1, "a component separator where none is allowed, or too many components", "IK403 13", "remove the extra component separators"),
    ("IG-E-NOT-USED", 2, "an element the guide marks Not Used", "IK403 I10", "remove the value"),
    ("EXT-INVALID-CODE", 5, "a value not in an external code set (state, country)", "the code sets are dated files under schemas/codesets/ (IK403 7)", "use a current USPS state or ISO 3166 country code"),
    ("834-S3", 4, "a dependent's REF*0F differs from its subscriber's", "family linkage in an 834 is by REF*0F: a dependent that names another subscriber cannot be attached", "send the subscriber's identifier in every family member's REF*0F"),
    ("834-B1", 3, "QTY*TO does not count the member loops", "control totals protect against truncated or doubled files", "send the number of INS segments"),
    ("834-B2", 3, "QTY*ET does not count the subscribers", "control totals protect against truncated or doubled files", "send the number of INS segments with INS01 Y"),
    ("834-B3", 3, "QTY*DT does not count the dependents", "control totals protect against truncated or doubled files", "send the number of INS segments with INS01 N"),
    ("834-B4", 3, "QTY*TO is not ET + DT", "the totals disagree with each other", "recompute the totals"),
];

/// Every entry eligo knows about, including the situational rules of `rules_json` entries.
pub fn entries(situational: &[crate::validate::situational::RuleInfo]) -> Vec<Entry> {
    let mut out: Vec<Entry> = ENVELOPE
        .iter()
        .map(|(ack, id, title)| Entry {
            id: id.to_string(),
            snip: 1,
            title: title.to_string(),
            why: format!(
                "an envelope error: reported as {} and the {} is rejected",
                ack.label(),
                match ack {
                    Ack::Ta1(_) => "interchange",
                    Ack::Group(_) => "group",
                    _ => "set",
                }
            ),
            fix: "correct the envelope segment named in the finding and resend the file".into(),
        })
        .collect();
    out.extend(ENGINE.iter().map(|(id, snip, title, why, fix)| Entry {
        id: id.to_string(),
        snip: *snip,
        title: title.to_string(),
        why: why.to_string(),
        fix: fix.to_string(),
    }));
    out.extend(crate::rules::catalogue().iter().map(|r| Entry {
        id: r.id.to_string(),
        snip: r.level,
        title: r.title.to_string(),
        why: format!(
            "{} (a business rule, SNIP level {}: reported in the reject report, not the 999; the member's change is held back, the rest of the file goes on)",
            r.why, r.level
        ),
        fix: r.fix.to_string(),
    }));
    out.extend(situational.iter().map(|r| Entry {
        id: r.id.clone(),
        snip: r.snip,
        title: r.message.clone(),
        why: format!(
            "a situational rule of the implementation guide (basis: {}); reported in the 999 with the trigger in CTX",
            r.basis
        ),
        fix: "send the segment or value the rule asks for, or leave out what it forbids".into(),
    }));
    out
}

/// Renders an entry for `--explain`.
pub fn explain(e: &Entry) -> String {
    format!(
        "{}  (SNIP level {})\n  What: {}\n  Why it matters: {}\n  How to fix: {}\n",
        e.id, e.snip, e.title, e.why, e.fix
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let rules =
            crate::validate::situational::RuleSet::from_json(crate::schema::embedded::X220A1_RULES)
                .unwrap();
        let all = entries(&rules.catalogue());
        let mut ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(envelope_id(Ack::Ta1("021")), "X12-TA1-021");
        assert_eq!(envelope_id(Ack::Set("4")), "X12-IK502-4");
    }
}
