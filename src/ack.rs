//! Writes acknowledgements: one interchange per input interchange, holding the TA1 (when the
//! sender asked for one, or the envelope is bad) and then, unless the TA1 rejects the
//! interchange, one 999 (005010X231A1) per functional group in a single FA group.
//!
//! [`AckWriter`] is an [`Observer`]: it maps the checker's events and findings to segments and
//! never re-validates anything. Everything except our own control numbers and clock comes from
//! the input, so with those injected the output is byte-identical from run to run.

use crate::check::{GroupResult, InterchangeInfo, Observer, SetInfo, SetResult, Ta1Result};
use crate::finding::{Ack, ElementPos, Finding};
use crate::lexer::Delimiters;
use chrono::NaiveDateTime;
use std::io::{self, Write};

/// Our side of the acknowledgement envelope.
#[derive(Debug, Clone)]
pub struct AckSettings {
    /// Next ISA13 to use; incremented per acknowledgement interchange.
    pub next_isa13: u32,
    /// Next GS06 to use; incremented per acknowledgement group.
    pub next_gs06: u32,
    /// Creation time written in ISA09/ISA10 and GS04/GS05.
    pub now: NaiveDateTime,
    /// Delimiters to write with; `None` keeps the input's.
    pub delimiters: Option<Delimiters>,
    /// Our ISA05/ISA06 and GS02; `None` echoes the inbound receiver.
    pub sender: Option<(String, String)>,
    /// Most IK3 loops written per set (the reject report always has every finding).
    pub max_ik3_per_set: usize,
    /// Always send a TA1, not only when ISA14 asks or the envelope is bad.
    pub always_ta1: bool,
}

impl AckSettings {
    /// Settings with the clock taken from `SOURCE_DATE_EPOCH` when set, else the current time.
    pub fn from_env() -> AckSettings {
        AckSettings {
            next_isa13: 1,
            next_gs06: 1,
            now: clock_from_env(),
            delimiters: None,
            sender: None,
            max_ik3_per_set: 100,
            always_ta1: false,
        }
    }
}

/// The time to stamp outputs with: `SOURCE_DATE_EPOCH` (seconds since 1970, UTC) when set.
pub fn clock_from_env() -> NaiveDateTime {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now)
        .naive_utc()
}

#[derive(Debug)]
struct SetAck {
    info: SetInfo,
    result: Option<SetResult>,
    findings: Vec<Finding>,
}

#[derive(Debug)]
struct GroupAck {
    result: Option<GroupResult>,
    sets: Vec<SetAck>,
}

/// Collects one interchange at a time and writes its acknowledgement when it ends.
pub struct AckWriter<W> {
    out: W,
    pub settings: AckSettings,
    groups: Vec<GroupAck>,
    in_set: bool,
    /// Acknowledgement interchanges written.
    pub written: u32,
    error: Option<io::Error>,
}

impl<W: Write> AckWriter<W> {
    pub fn new(out: W, settings: AckSettings) -> Self {
        AckWriter {
            out,
            settings,
            groups: Vec::new(),
            in_set: false,
            written: 0,
            error: None,
        }
    }

    /// The writer back, or the first I/O error met while writing.
    pub fn into_inner(self) -> io::Result<W> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }

    fn write_interchange(
        &mut self,
        ic: &InterchangeInfo,
        ta1: Ta1Result,
        groups: Vec<GroupAck>,
    ) -> io::Result<()> {
        let d = self.settings.delimiters.unwrap_or(ic.delimiters);
        // AK1/AK2 echo the group's and set's identifiers exactly as received (the guide asks
        // for the exact values), even when they are themselves invalid: the AK905/IK502 codes
        // then tell the sender what is wrong with them. Delimiters are scrubbed so the 999
        // still parses.
        let send_ta1 =
            ic.ack_requested || ta1.code != 'A' || self.settings.always_ta1 || groups.is_empty();
        let send_999 = ta1.code != 'R' && !groups.is_empty();
        let isa13 = format!("{:09}", self.settings.next_isa13 % 1_000_000_000);
        self.settings.next_isa13 = self.settings.next_isa13.wrapping_add(1).max(1);
        let now = self.settings.now;
        let e = d.element as char;
        let t = d.segment as char;
        let (our_q, our_id) = self
            .settings
            .sender
            .clone()
            .unwrap_or((ic.receiver_qualifier.clone(), ic.receiver_id.clone()));
        let mut buf = String::new();
        let pad = |s: &str| format!("{:<15.15}", s);
        let usage = if ic.usage == "T" { "T" } else { "P" };
        buf.push_str(&format!(
            "ISA{e}00{e}          {e}00{e}          {e}{:<2.2}{e}{}{e}{:<2.2}{e}{}{e}{}{e}{}{e}{}{e}00501{e}{isa13}{e}0{e}{usage}{e}{}{t}\n",
            clean_qual(&our_q),
            pad(&id_or_unknown(&our_id, &d)),
            clean_qual(&ic.sender_qualifier),
            pad(&id_or_unknown(&ic.sender_id, &d)),
            now.format("%y%m%d"),
            now.format("%H%M"),
            d.repetition.unwrap_or(b'^') as char,
            d.component as char,
        ));
        if send_ta1 {
            buf.push_str(&format!(
                "TA1{e}{}{e}{}{e}{}{e}{}{e}{}{t}\n",
                fit_isa13(&ic.isa13),
                // TA102/TA103 echo ISA09/ISA10; when those are unreadable (TA1 014/015 says
                // so) our own date and time stand in, so that the TA1 itself stays valid.
                readable_or(&ic.date, is_yymmdd, now.format("%y%m%d").to_string()),
                readable_or(&ic.time, is_hhmm, now.format("%H%M").to_string()),
                ta1.code,
                ta1.note
            ));
        }
        let mut n_groups = 0;
        if send_999 {
            n_groups = 1;
            let gs06 = self.settings.next_gs06;
            self.settings.next_gs06 = self.settings.next_gs06.wrapping_add(1).max(1);
            let (gs02, gs03) = groups
                .iter()
                .find_map(|g| g.result.as_ref())
                .map(|r| (r.info.gs03.clone(), r.info.gs02.clone()))
                .unwrap_or_default();
            let gs02 = if gs02.is_empty() {
                our_id.clone()
            } else {
                gs02
            };
            let gs03 = if gs03.is_empty() {
                ic.sender_id.clone()
            } else {
                gs03
            };
            buf.push_str(&format!(
                "GS{e}FA{e}{}{e}{}{e}{}{e}{}{e}{gs06}{e}X{e}005010X231A1{t}\n",
                scrub(&gs02, &d),
                scrub(&gs03, &d),
                now.format("%Y%m%d"),
                now.format("%H%M")
            ));
            let mut st_count = 0u32;
            for g in &groups {
                let Some(result) = &g.result else { continue };
                st_count += 1;
                let body = self.group_999(result, &g.sets, &d);
                let mut set = Vec::new();
                set.push(format!("ST{e}999{e}{:04}{e}005010X231A1", st_count));
                set.extend(body);
                let n = set.len() + 1;
                set.push(format!("SE{e}{n}{e}{:04}", st_count));
                for s in set {
                    buf.push_str(&s);
                    buf.push(t);
                    buf.push('\n');
                }
            }
            buf.push_str(&format!("GE{e}{st_count}{e}{gs06}{t}\n"));
        }
        buf.push_str(&format!("IEA{e}{n_groups}{e}{isa13}{t}\n"));
        self.written += 1;
        self.out.write_all(buf.as_bytes())
    }

    /// The segments of one 999 between ST and SE.
    fn group_999(&self, r: &GroupResult, sets: &[SetAck], d: &Delimiters) -> Vec<String> {
        let e = d.element as char;
        let mut segs = Vec::new();
        segs.push(format!(
            "AK1{e}{}{e}{}{e}{}",
            scrub(&r.info.gs01, d),
            scrub(&r.info.gs06, d),
            scrub(&r.info.gs08, d)
        ));
        let list_sets = r.analysed && !r.errors.iter().any(|c| *c == "1" || *c == "2");
        if list_sets {
            for s in sets {
                let Some(sr) = &s.result else { continue };
                let mut ak2 = format!(
                    "AK2{e}{}{e}{}",
                    scrub(&s.info.st01, d),
                    scrub(&s.info.st02, d)
                );
                if !s.info.st03.is_empty() {
                    ak2.push(e);
                    ak2.push_str(&scrub(&s.info.st03, d));
                }
                segs.push(ak2);
                segs.extend(self.ik3_loops(&s.findings, d));
                let mut ik5 = format!("IK5{e}{}", sr.code);
                for c in &sr.errors {
                    ik5.push(e);
                    ik5.push_str(c);
                }
                segs.push(ik5);
            }
        }
        let ge01 = r.ge01.clone().unwrap_or_else(|| r.received.to_string());
        let ge01 =
            if !ge01.is_empty() && ge01.len() <= 6 && ge01.bytes().all(|b| b.is_ascii_digit()) {
                ge01
            } else {
                r.received.to_string()
            };
        let mut ak9 = format!(
            "AK9{e}{}{e}{}{e}{}{e}{}",
            r.code, ge01, r.received, r.accepted
        );
        for c in r.errors.iter().take(5) {
            ak9.push(e);
            ak9.push_str(c);
        }
        segs.push(ak9);
        segs
    }

    fn ik3_loops(&self, findings: &[Finding], d: &Delimiters) -> Vec<String> {
        let e = d.element as char;
        let c = d.component as char;
        let mut out = Vec::new();
        // Group by (segment position, segment id): segment-level findings get their own IK3,
        // element findings share one IK3 with code 8.
        let mut order: Vec<&Finding> = findings
            .iter()
            .filter(|f| matches!(f.ack, Ack::Segment(_) | Ack::Element(_)))
            .collect();
        order.sort_by_key(|f| {
            let e = f.location.element.unwrap_or_default();
            (
                f.location.segment_position.unwrap_or(0),
                matches!(f.ack, Ack::Element(_)),
                e.element,
                e.component,
                e.repetition,
            )
        });
        let mut written = 0usize;
        let mut i = 0;
        while i < order.len() && written < self.settings.max_ik3_per_set {
            let f = order[i];
            let pos = f.location.segment_position.unwrap_or(0);
            let sid = f.location.segment_id.as_deref().unwrap_or_default();
            let ik303 = match f.location.loop_id.as_deref() {
                Some("2700") | Some("2750") => "2700",
                _ => "",
            };
            let bu = f
                .location
                .member
                .as_ref()
                .filter(|m| !m.is_empty() && m.len() <= 35 && clean(m, d))
                .map(|m| format!("CTX{e}SUBSCRIBER NUMBER REF02{c}{m}"));
            let ctx_trigger = |f: &Finding| {
                f.trigger.as_ref().map(|t| {
                    let mut s = format!(
                        "CTX{e}SITUATIONAL TRIGGER{e}{}{e}{}{e}",
                        t.segment_id, t.segment_position
                    );
                    if let Some(p) = t.element {
                        s.push(e);
                        s.push_str(&ik401(&p, c));
                    }
                    s
                })
            };
            match f.ack {
                Ack::Segment(code) => {
                    out.push(format!("IK3{e}{sid}{e}{pos}{e}{ik303}{e}{code}"));
                    out.extend(ctx_trigger(f));
                    out.extend(bu);
                    i += 1;
                }
                _ => {
                    out.push(format!("IK3{e}{sid}{e}{pos}{e}{ik303}{e}8"));
                    out.extend(bu);
                    while i < order.len()
                        && order[i].location.segment_position.unwrap_or(0) == pos
                        && matches!(order[i].ack, Ack::Element(_))
                    {
                        let g = order[i];
                        let p = g.location.element.unwrap_or_default();
                        let mut ik4 = format!(
                            "IK4{e}{}{e}{}{e}{}",
                            ik401(&p, c),
                            // IK402 is numeric: a composite's reference (C040) is left out.
                            g.location
                                .data_element
                                .clone()
                                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                                .unwrap_or_default(),
                            g.ack.code()
                        );
                        if !matches!(g.ack.code(), "1" | "2" | "I9") {
                            if let Some(v) =
                                g.value.as_ref().filter(|v| !v.is_empty() && clean(v, d))
                            {
                                ik4.push(e);
                                ik4.push_str(&v.chars().take(99).collect::<String>());
                            }
                        }
                        out.push(ik4);
                        out.extend(ctx_trigger(g));
                        i += 1;
                    }
                }
            }
            written += 1;
        }
        out
    }
}

fn ik401(p: &ElementPos, c: char) -> String {
    let mut s = p.element.to_string();
    match (p.component, p.repetition) {
        (Some(k), Some(r)) => s.push_str(&format!("{c}{k}{c}{r}")),
        (Some(k), None) => s.push_str(&format!("{c}{k}")),
        (None, Some(r)) => s.push_str(&format!("{c}{c}{r}")),
        (None, None) => {}
    }
    s
}

/// True when `v` can be echoed: printable ASCII and none of our delimiters.
fn clean(v: &str, d: &Delimiters) -> bool {
    v.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !d.is_delimiter(b))
}

/// Drops bytes that would break the output (delimiters, control characters).
fn scrub(v: &str, d: &Delimiters) -> String {
    v.bytes()
        .filter(|b| (0x20..0x7f).contains(b) && !d.is_delimiter(*b))
        .map(|b| b as char)
        .collect()
}

fn clean_qual(q: &str) -> String {
    if q.len() == 2 && q.bytes().all(|b| b.is_ascii_alphanumeric()) {
        q.to_string()
    } else {
        "ZZ".to_string()
    }
}

/// An interchange id as it can be written: delimiters dropped, and `UNKNOWN` for a blank one
/// (ISA06/ISA08 may not be blank; the TA1 then says what was wrong with the original).
fn id_or_unknown(id: &str, d: &Delimiters) -> String {
    let id = scrub(id, d);
    if id.trim().is_empty() {
        "UNKNOWN".to_string()
    } else {
        id
    }
}

fn readable_or(v: &str, ok: fn(&str) -> bool, fallback: String) -> String {
    if ok(v) {
        v.to_string()
    } else {
        fallback
    }
}

fn is_yymmdd(v: &str) -> bool {
    v.len() == 6
        && v.bytes().all(|b| b.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(&format!("20{v}"), "%Y%m%d").is_ok()
}

fn is_hhmm(v: &str) -> bool {
    v.len() == 4 && crate::validate::element::is_time(v.as_bytes())
}

fn fit_isa13(v: &str) -> String {
    if v.len() == 9 && v.bytes().all(|b| b.is_ascii_digit()) {
        v.to_string()
    } else {
        let digits: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
        format!("{:0>9.9}", digits)
    }
}

impl<W: Write> Observer for AckWriter<W> {
    fn wants_records(&self) -> bool {
        false
    }
    fn finding(&mut self, f: Finding) {
        if !self.in_set || !matches!(f.ack, Ack::Segment(_) | Ack::Element(_)) {
            return;
        }
        if let Some(s) = self.groups.last_mut().and_then(|g| g.sets.last_mut()) {
            // Bounded: beyond the IK3 cap nothing more is written, so nothing more is kept.
            if s.findings.len() < self.settings.max_ik3_per_set * 10 {
                s.findings.push(f);
            }
        }
    }
    fn interchange_start(&mut self, _i: &InterchangeInfo) {
        self.groups.clear();
    }
    fn interchange_end(&mut self, i: &InterchangeInfo, ta1: Ta1Result, _groups: u32) {
        let groups = std::mem::take(&mut self.groups);
        if let Err(e) = self.write_interchange(i, ta1, groups) {
            self.error.get_or_insert(e);
        }
    }
    fn group_start(&mut self, _g: &crate::check::GroupInfo) {
        self.groups.push(GroupAck {
            result: None,
            sets: Vec::new(),
        });
    }
    fn group_end(&mut self, r: &GroupResult) {
        if let Some(g) = self.groups.last_mut() {
            g.result = Some(r.clone());
        }
    }
    fn set_start(&mut self, s: &SetInfo) {
        self.in_set = true;
        if let Some(g) = self.groups.last_mut() {
            g.sets.push(SetAck {
                info: s.clone(),
                result: None,
                findings: Vec::new(),
            });
        }
    }
    fn set_end(&mut self, r: &SetResult) {
        self.in_set = false;
        if let Some(s) = self.groups.last_mut().and_then(|g| g.sets.last_mut()) {
            s.result = Some(r.clone());
        }
    }
}
