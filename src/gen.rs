//! A seeded generator of large, realistic X12 834 (005010X220A1) enrollment files, for
//! benchmarks, tests and the `eligo-gen` tool.
//!
//! [`generate`] writes one interchange holding one functional group with `sets` transaction
//! sets. The sets are filled with families (a subscriber with 0–4 dependents) until the output
//! reaches about `size_mb` MiB. Everything is fictional: employer ACME MANUFACTURING (ISA06
//! `ACMEHR`), payer ELIGO HEALTH PLAN (ISA08 `ELIGOPLAN`), Connecticut addresses, and member ids
//! in the 9xx area (sent with NM108 `ZZ`, never as SSNs).
//!
//! The same seed and options always give the same bytes. Each family is a pure function of
//! (seed, family index), and generation makes two passes. The first pass generates into a
//! discarding writer, to learn how many families fit in each set and the QTY totals for its
//! header. The second pass writes the file. SE01, GE01 and IEA01 are counted while writing.
//!
//! This module uses std only and nothing else from the eligo library.
//!
//! ```
//! let opts = eligo::gen::GenOptions { size_mb: 0.05, seed: 7, ..Default::default() };
//! let mut bytes = Vec::new();
//! let stats = eligo::gen::generate(&opts, &mut bytes).unwrap();
//! assert_eq!(stats.bytes as usize, bytes.len());
//! assert!(bytes.starts_with(b"ISA*"));
//! ```

use std::io::{self, Write};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Approximate output size in MiB.
    pub size_mb: f64,
    /// PRNG seed.
    pub seed: u64,
    /// Full/verify file (BGN08 `4`, every INS03/HD01 `030`) instead of a change file.
    pub full: bool,
    /// Percent of members (0-100) that carry exactly one realistic error.
    pub error_rate: f64,
    /// Number of ST/SE transaction sets in the group (at least 1).
    pub sets: u32,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            size_mb: 1.0,
            seed: 1,
            full: false,
            error_rate: 0.0,
            sets: 1,
        }
    }
}

/// Fixed dates of every generated file (the seed changes the members, not the calendar).
const FILE_DATE: Date = Date::new(2025, 1, 10);
const EFFECTIVE: Date = Date::new(2025, 2, 1);
const TERM_END: Date = Date::new(2025, 1, 31);
const REINSTATE: Date = Date::new(2025, 1, 1);

/// Flush the output buffer to the sink once it holds this many bytes.
const FLUSH_AT: usize = 8 << 20;

// ------------------------------------------------------------------------------------------
// PRNG (splitmix64) and calendar

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p` percent.
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn mix(seed: u64) -> u64 {
    Rng(seed).next_u64()
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Date {
    y: u32,
    m: u32,
    d: u32,
}

impl Date {
    const fn new(y: u32, m: u32, d: u32) -> Date {
        Date { y, m, d }
    }

    fn random(rng: &mut Rng, y0: u32, y1: u32) -> Date {
        let y = rng.range(u64::from(y0), u64::from(y1)) as u32;
        let m = rng.range(1, 12) as u32;
        let d = rng.range(1, u64::from(days_in_month(y, m))) as u32;
        Date { y, m, d }
    }

    /// The first day of a random month between January of `y0` and `last`.
    fn first_of_month(rng: &mut Rng, y0: u32, last: Date) -> Date {
        let months = (last.y - y0) * 12 + last.m;
        let k = rng.below(u64::from(months)) as u32;
        Date::new(y0 + k / 12, k % 12 + 1, 1)
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// ------------------------------------------------------------------------------------------
// output: one reusable byte buffer, flushed in large blocks

struct Out<'w> {
    buf: Vec<u8>,
    /// `None` = discard (the counting pass).
    sink: Option<&'w mut dyn Write>,
    flushed: u64,
    /// Segments written since (and including) the current ST.
    segs: u64,
    error: Option<io::Error>,
}

impl<'w> Out<'w> {
    fn new(sink: Option<&'w mut dyn Write>) -> Out<'w> {
        Out {
            buf: Vec::with_capacity(FLUSH_AT + (64 << 10)),
            sink,
            flushed: 0,
            segs: 0,
            error: None,
        }
    }

    fn raw(&mut self, s: &[u8]) {
        self.buf.extend_from_slice(s);
    }

    /// Element separator followed by `s`.
    fn el(&mut self, s: &[u8]) {
        self.buf.push(b'*');
        self.buf.extend_from_slice(s);
    }

    fn num(&mut self, n: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut n = n;
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&tmp[i..]);
    }

    fn el_num(&mut self, n: u64) {
        self.buf.push(b'*');
        self.num(n);
    }

    /// `n` written with exactly `width` digits (zero-padded).
    fn fixed(&mut self, n: u64, width: usize) {
        let mut n = n;
        let start = self.buf.len();
        self.buf.resize(start + width, b'0');
        for b in self.buf[start..].iter_mut().rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }

    fn date(&mut self, d: Date) {
        self.fixed(u64::from(d.y), 4);
        self.fixed(u64::from(d.m), 2);
        self.fixed(u64::from(d.d), 2);
    }

    fn el_date(&mut self, d: Date) {
        self.buf.push(b'*');
        self.date(d);
    }

    /// Segment terminator (plus a newline for readability); counts the segment.
    fn end(&mut self) {
        self.buf.extend_from_slice(b"~\n");
        self.segs += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// A whole segment given as literal text without its terminator.
    fn seg(&mut self, s: &[u8]) {
        self.raw(s);
        self.end();
    }

    /// 999 position (ST = 1) of the next segment to be written.
    fn pos(&self) -> u64 {
        self.segs + 1
    }

    fn total(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    fn flush(&mut self) {
        if let (Some(w), None) = (self.sink.as_mut(), self.error.as_ref()) {
            if let Err(e) = w.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
    }

    fn finish(mut self) -> io::Result<u64> {
        self.flush();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if let Some(w) = self.sink.as_mut() {
            w.flush()?;
        }
        Ok(self.flushed)
    }
}

// ------------------------------------------------------------------------------------------
// fictional reference data

const FIRST_M: &[&[u8]] = &[
    b"JAMES", b"JOHN", b"ROBERT", b"MICHAEL", b"WILLIAM", b"DAVID", b"RICHARD", b"JOSEPH",
    b"THOMAS", b"CHARLES", b"DANIEL", b"MATTHEW", b"ANTHONY", b"MARK", b"PAUL", b"STEVEN",
    b"ANDREW", b"KENNETH", b"JOSHUA", b"KEVIN", b"BRIAN", b"GEORGE", b"EDWARD", b"RONALD", b"LUIS",
    b"CARLOS", b"JOSE", b"WEI", b"HIROSHI", b"ARJUN", b"TOMASZ", b"KWAME", b"ERIK", b"LIAM",
    b"NOAH", b"ETHAN", b"LUCAS", b"MASON", b"OWEN", b"ELIJAH",
];
const FIRST_F: &[&[u8]] = &[
    b"MARY",
    b"PATRICIA",
    b"JENNIFER",
    b"LINDA",
    b"ELIZABETH",
    b"BARBARA",
    b"SUSAN",
    b"JESSICA",
    b"SARAH",
    b"KAREN",
    b"NANCY",
    b"LISA",
    b"MARGARET",
    b"SANDRA",
    b"ASHLEY",
    b"EMILY",
    b"DONNA",
    b"MICHELLE",
    b"CAROL",
    b"AMANDA",
    b"MELISSA",
    b"DEBORAH",
    b"LAURA",
    b"MARIA",
    b"ANA",
    b"SOFIA",
    b"MEI",
    b"YUKI",
    b"PRIYA",
    b"AGNIESZKA",
    b"AMA",
    b"INGRID",
    b"OLIVIA",
    b"EMMA",
    b"AVA",
    b"ISABELLA",
    b"MIA",
    b"CHLOE",
    b"GRACE",
    b"NORA",
];
const LAST: &[&[u8]] = &[
    b"SMITH",
    b"JOHNSON",
    b"WILLIAMS",
    b"BROWN",
    b"JONES",
    b"GARCIA",
    b"MILLER",
    b"DAVIS",
    b"RODRIGUEZ",
    b"MARTINEZ",
    b"HERNANDEZ",
    b"LOPEZ",
    b"GONZALEZ",
    b"WILSON",
    b"ANDERSON",
    b"THOMAS",
    b"TAYLOR",
    b"MOORE",
    b"JACKSON",
    b"MARTIN",
    b"LEE",
    b"PEREZ",
    b"THOMPSON",
    b"WHITE",
    b"HARRIS",
    b"SANCHEZ",
    b"CLARK",
    b"RAMIREZ",
    b"LEWIS",
    b"ROBINSON",
    b"WALKER",
    b"YOUNG",
    b"ALLEN",
    b"KING",
    b"WRIGHT",
    b"SCOTT",
    b"TORRES",
    b"NGUYEN",
    b"HILL",
    b"FLORES",
    b"KOWALSKI",
    b"NOWAK",
    b"OKAFOR",
    b"MENSAH",
    b"CHEN",
    b"WANG",
    b"PATEL",
    b"SHAH",
    b"TANAKA",
    b"SATO",
    b"OLSEN",
    b"LINDQVIST",
    b"BERGSTROM",
    b"O'BRIEN",
    b"MCCARTHY",
    b"FITZGERALD",
    b"DESROSIERS",
    b"LEBLANC",
    b"ROSSI",
    b"RUSSO",
    b"ESPOSITO",
    b"COSTA",
    b"SILVA",
    b"SANTOS",
    b"MORALES",
    b"RIVERA",
    b"CRUZ",
    b"REYES",
    b"ABERNATHY",
    b"HALVORSEN",
];
const STREETS: &[&[u8]] = &[
    b"MAIN",
    b"ELM",
    b"OAK",
    b"MAPLE",
    b"PARK",
    b"WASHINGTON",
    b"FRANKLIN",
    b"CHURCH",
    b"HIGH",
    b"PEARL",
    b"ASYLUM",
    b"FARMINGTON",
    b"PROSPECT",
    b"BROAD",
    b"STATE",
    b"CHAPEL",
    b"WHITNEY",
    b"ORANGE",
    b"CEDAR",
    b"WALNUT",
    b"BIRCH",
    b"POND",
    b"MILL",
    b"RIVER",
    b"SILAS DEANE",
    b"BOSTON POST",
    b"TALCOTT",
    b"WOLCOTT",
    b"LINCOLN",
    b"JEFFERSON",
];
const SUFFIXES: &[&[u8]] = &[b"ST", b"AVE", b"RD", b"LN", b"DR", b"CT", b"WAY", b"PL"];
/// Connecticut towns and one of their ZIP codes.
const CITIES: &[(&[u8], &[u8])] = &[
    (b"HARTFORD", b"06103"),
    (b"HARTFORD", b"06114"),
    (b"NEW HAVEN", b"06510"),
    (b"NEW HAVEN", b"06511"),
    (b"STAMFORD", b"06901"),
    (b"BRIDGEPORT", b"06604"),
    (b"WATERBURY", b"06702"),
    (b"NORWALK", b"06851"),
    (b"DANBURY", b"06810"),
    (b"NEW BRITAIN", b"06051"),
    (b"WEST HARTFORD", b"06107"),
    (b"MIDDLETOWN", b"06457"),
    (b"BRISTOL", b"06010"),
    (b"MERIDEN", b"06450"),
    (b"MANCHESTER", b"06040"),
    (b"GLASTONBURY", b"06033"),
    (b"ENFIELD", b"06082"),
    (b"MILFORD", b"06460"),
    (b"HAMDEN", b"06514"),
    (b"WETHERSFIELD", b"06109"),
    (b"TORRINGTON", b"06790"),
    (b"NEW LONDON", b"06320"),
    (b"NORWICH", b"06360"),
    (b"SHELTON", b"06484"),
    (b"SOUTHINGTON", b"06489"),
    (b"EAST HARTFORD", b"06108"),
    (b"FAIRFIELD", b"06824"),
    (b"GREENWICH", b"06830"),
    (b"VERNON", b"06066"),
    (b"WALLINGFORD", b"06492"),
];
const AREA_CODES: &[&[u8]] = &[b"860", b"203", b"475", b"959"];
const HLT_PLANS: &[&[u8]] = &[
    b"HLT GOLD 1000",
    b"HLT SILVER 2500",
    b"HLT PLATINUM 500",
    b"HLT BRONZE 5000",
];
const DEN_PLANS: &[&[u8]] = &[b"DENTAL PLUS", b"DENTAL BASIC"];
const VIS_PLANS: &[&[u8]] = &[b"VISION STANDARD", b"VISION PLUS"];
const GROUPS: &[&[u8]] = &[
    b"GRP1001", b"GRP1002", b"GRP1003", b"GRP1004", b"GRP1005", b"GRP1006",
];
const DIVISIONS: &[&[u8]] = &[
    b"ASSEMBLY",
    b"FOUNDRY",
    b"SHIPPING",
    b"ENGINEERING",
    b"SALES",
    b"ADMIN",
    b"QUALITY",
];
const LOCATIONS: &[&[u8]] = &[b"HFD01", b"NBR02", b"WTB03", b"NHV04"];
/// PLA05 reasons for a PCP change.
const PCP_REASONS: &[&[u8]] = &[b"14", b"22", b"AA", b"AC", b"AD", b"AH", b"AI"];

// ------------------------------------------------------------------------------------------
// the members of a family

#[derive(Clone, Copy)]
struct Person {
    first: &'static [u8],
    middle: u8,
    last: &'static [u8],
    dob: Date,
    female: bool,
    rel: &'static [u8],
    id: u64,
}

#[derive(Clone, Copy)]
struct Address {
    number: u64,
    street: &'static [u8],
    suffix: &'static [u8],
    unit: u64,
    city: &'static [u8],
    zip: &'static [u8],
    zip4: u64,
}

impl Address {
    fn random(rng: &mut Rng) -> Address {
        let (city, zip) = rng.pick(CITIES);
        Address {
            number: rng.range(1, 2999),
            street: rng.pick(STREETS),
            suffix: rng.pick(SUFFIXES),
            unit: if rng.pct(20) { rng.range(1, 40) } else { 0 },
            city,
            zip,
            zip4: if rng.pct(30) { rng.range(1, 9999) } else { 0 },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Hlt,
    Den,
    Vis,
}

impl Line {
    fn code(self) -> &'static [u8] {
        match self {
            Line::Hlt => b"HLT",
            Line::Den => b"DEN",
            Line::Vis => b"VIS",
        }
    }
}

#[derive(Clone, Copy)]
struct Coverage {
    line: Line,
    plan: &'static [u8],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Address,
    Name,
    Pcp,
    CoverageTerm,
    Plan,
    AddCoverage,
    IdCard,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Add,
    Change(Change),
    Term,
    Reinstate,
    Audit,
}

struct Family {
    members: [Person; 5],
    n: usize,
    address: Address,
    group: &'static [u8],
    covs: [Coverage; 3],
    n_covs: usize,
    action: Action,
    /// Coverage-level term (HD*024 + DTP*349) in addition to DTP*357 on a member term.
    term_with_hd: bool,
    death: bool,
    cobra: bool,
}

impl Family {
    fn has_spouse(&self) -> bool {
        self.members[1..self.n]
            .iter()
            .any(|p| p.rel == b"01" || p.rel == b"53")
    }

    fn has_children(&self) -> bool {
        self.members[1..self.n]
            .iter()
            .any(|p| p.rel != b"01" && p.rel != b"53")
    }

    /// HD05 coverage level when the whole family is in the set.
    fn tier(&self) -> &'static [u8] {
        match (self.has_spouse(), self.has_children()) {
            (false, false) => b"EMP",
            (true, false) => b"ESP",
            (false, true) => b"ECH",
            (true, true) => b"FAM",
        }
    }

    fn hlt(&self) -> Option<Coverage> {
        self.covs[..self.n_covs]
            .iter()
            .copied()
            .find(|c| c.line == Line::Hlt)
    }
}

fn person(
    rng: &mut Rng,
    female: bool,
    last: &'static [u8],
    dob: Date,
    rel: &'static [u8],
) -> Person {
    Person {
        first: rng.pick(if female { FIRST_F } else { FIRST_M }),
        middle: if rng.pct(30) {
            b'A' + rng.below(26) as u8
        } else {
            0
        },
        last,
        dob,
        female,
        rel,
        id: 0,
    }
}

fn make_family(rng: &mut Rng, index: u64, full: bool) -> Family {
    let last = rng.pick(LAST);
    let sub_female = rng.pct(48);
    let sub_dob = Date::random(rng, 1958, 2003);
    let mut members = [person(rng, sub_female, last, sub_dob, b"18"); 5];
    let n_deps = match rng.below(100) {
        0..=34 => 0,
        35..=59 => 1,
        60..=79 => 2,
        80..=91 => 3,
        _ => 4,
    };
    let mut n = 1;
    if n_deps > 0 && rng.pct(65) {
        let y = (sub_dob.y + rng.range(0, 12) as u32)
            .saturating_sub(6)
            .min(2003);
        let rel: &'static [u8] = if rng.pct(6) { b"53" } else { b"01" };
        let spouse_last = if rng.pct(80) { last } else { rng.pick(LAST) };
        let female = if rng.pct(92) { !sub_female } else { sub_female };
        let dob = Date::random(rng, y, y);
        members[n] = person(rng, female, spouse_last, dob, rel);
        n += 1;
    }
    // children: distinct birth years, so no two dependents share a birth date (no INS17)
    let first_year = (sub_dob.y + 18).max(2000);
    let mut used = [0u32; 4];
    let mut n_used = 0;
    while n < 1 + n_deps {
        let mut y = rng.range(u64::from(first_year), 2024) as u32;
        while used[..n_used].contains(&y) {
            y = if y == 2024 { first_year } else { y + 1 };
        }
        used[n_used] = y;
        n_used += 1;
        let rel: &'static [u8] = match rng.below(100) {
            0..=87 => b"19",
            88..=95 => b"17",
            _ => b"09",
        };
        let dob = Date::random(rng, y, y);
        let female = rng.pct(49);
        members[n] = person(rng, female, last, dob, rel);
        n += 1;
    }
    let base_id = 900_000_000 + (index % 20_000_000) * 5;
    for (k, p) in members[..n].iter_mut().enumerate() {
        p.id = base_id + k as u64;
    }

    let mut covs = [Coverage {
        line: Line::Hlt,
        plan: HLT_PLANS[0],
    }; 3];
    let mut n_covs = 0;
    if rng.pct(92) {
        covs[n_covs] = Coverage {
            line: Line::Hlt,
            plan: rng.pick(HLT_PLANS),
        };
        n_covs += 1;
    }
    if rng.pct(65) {
        covs[n_covs] = Coverage {
            line: Line::Den,
            plan: rng.pick(DEN_PLANS),
        };
        n_covs += 1;
    }
    if n_covs == 0 || rng.pct(35) {
        covs[n_covs] = Coverage {
            line: Line::Vis,
            plan: rng.pick(VIS_PLANS),
        };
        n_covs += 1;
    }

    let action = if full {
        Action::Audit
    } else {
        match rng.below(100) {
            0..=44 => Action::Add,
            45..=74 => Action::Change(match rng.below(100) {
                0..=19 => Change::Address,
                20..=29 => Change::Name,
                30..=44 => Change::Pcp,
                45..=59 => Change::CoverageTerm,
                60..=74 => Change::Plan,
                75..=89 => Change::AddCoverage,
                _ => Change::IdCard,
            }),
            75..=89 => Action::Term,
            _ => Action::Reinstate,
        }
    };
    // changes that need a health coverage fall back to an address change without one
    let action = match action {
        Action::Change(Change::Pcp | Change::Plan | Change::IdCard)
            if n_covs == 0 || covs[0].line != Line::Hlt =>
        {
            Action::Change(Change::Address)
        }
        a => a,
    };
    // subscriber-only changes: the dependents are not in the set
    if matches!(
        action,
        Action::Change(
            Change::Address | Change::Name | Change::Pcp | Change::Plan | Change::IdCard
        )
    ) {
        n = 1;
    }
    Family {
        members,
        n,
        address: Address::random(rng),
        group: rng.pick(GROUPS),
        covs,
        n_covs,
        action,
        term_with_hd: rng.pct(30),
        death: action == Action::Term && rng.pct(4),
        cobra: matches!(action, Action::Add | Action::Audit) && rng.pct(3),
    }
}

// ------------------------------------------------------------------------------------------
// injected errors

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    BadBirthDate,
    BadGender,
    MissingRef0F,
    DeathDateMissing,
    BadState,
    BadZip,
    BadInsuranceLine,
    BadCoverageDate,
    TermWithoutDate,
    NameTooLong,
    IdWithoutQualifierPair,
    BadRelationship,
}

pub const FAULTS: [Fault; 12] = [
    Fault::BadBirthDate,
    Fault::BadGender,
    Fault::MissingRef0F,
    Fault::DeathDateMissing,
    Fault::BadState,
    Fault::BadZip,
    Fault::BadInsuranceLine,
    Fault::BadCoverageDate,
    Fault::TermWithoutDate,
    Fault::NameTooLong,
    Fault::IdWithoutQualifierPair,
    Fault::BadRelationship,
];

impl Fault {
    /// The fault's name, as the manifest and the summary write it.
    pub fn name(self) -> &'static str {
        match self {
            Fault::BadBirthDate => "bad-birth-date",
            Fault::BadGender => "bad-gender-code",
            Fault::MissingRef0F => "missing-ref0f",
            Fault::DeathDateMissing => "ins11-without-ins12",
            Fault::BadState => "bad-state-code",
            Fault::BadZip => "bad-zip",
            Fault::BadInsuranceLine => "bad-insurance-line",
            Fault::BadCoverageDate => "bad-coverage-date",
            Fault::TermWithoutDate => "term-without-date",
            Fault::NameTooLong => "last-name-too-long",
            Fault::IdWithoutQualifierPair => "nm108-without-nm109",
            Fault::BadRelationship => "bad-relationship-code",
        }
    }

    /// What a strict validator puts in the 999 for it (see samples/834/README.md).
    fn expected(self) -> &'static str {
        match self {
            Fault::BadBirthDate => "IK3 DMG 8; IK4*2*1251*8",
            Fault::BadGender => "IK3 DMG 8; IK4*3*1068*7",
            Fault::MissingRef0F => "IK3 REF 3",
            Fault::DeathDateMissing => "IK3 INS 8; IK4*12*1251*2",
            Fault::BadState => "IK3 N4 8; IK4*2*156*7",
            Fault::BadZip => "IK3 N4 8; IK4*3*116*I12",
            Fault::BadInsuranceLine => "IK3 HD 8; IK4*3*1205*7",
            Fault::BadCoverageDate => "IK3 DTP 8; IK4*3*1251*8",
            Fault::TermWithoutDate => "IK3 DTP I6; CTX trigger INS03",
            Fault::NameTooLong => "IK3 NM1 8; IK4*3*1035*5",
            Fault::IdWithoutQualifierPair => "IK3 NM1 8; IK4*9*67*2",
            Fault::BadRelationship => "IK3 INS 8; IK4*2*1069*7",
        }
    }
}

/// What one generation wrote.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub bytes: u64,
    pub sets: u64,
    pub families: u64,
    pub subscribers: u64,
    pub dependents: u64,
    /// Injected errors, by [`FAULTS`] index.
    pub faults: [u64; FAULTS.len()],
}

/// What a member loop will contain (decides which faults are possible).
struct MemberShape {
    dependent: bool,
    dmg: bool,
    n4: bool,
    hd: bool,
    term: bool,
    term_without_hd: bool,
}

fn choose_fault(rng: &mut Rng, shape: &MemberShape) -> Fault {
    let mut ok = [Fault::MissingRef0F; FAULTS.len()];
    let mut n = 0;
    for f in FAULTS {
        let possible = match f {
            Fault::BadBirthDate | Fault::BadGender => shape.dmg,
            Fault::BadState | Fault::BadZip => shape.n4,
            Fault::BadInsuranceLine | Fault::BadCoverageDate => shape.hd,
            Fault::DeathDateMissing => shape.term,
            Fault::TermWithoutDate => shape.term_without_hd,
            Fault::BadRelationship => shape.dependent,
            Fault::MissingRef0F | Fault::NameTooLong | Fault::IdWithoutQualifierPair => true,
        };
        if possible {
            ok[n] = f;
            n += 1;
        }
    }
    ok[rng.below(n as u64) as usize]
}

// ------------------------------------------------------------------------------------------
// the generator

struct Gen<'m> {
    base: u64,
    fault_threshold: u64,
    manifest: Option<Out<'m>>,
    stats: Stats,
    st02: Vec<u8>,
}

/// Counts returned by one family: (INS01 Y, INS01 N).
struct FamilyCount {
    subscribers: u64,
    dependents: u64,
}

impl Gen<'_> {
    fn family_rng(&self, index: u64) -> Rng {
        Rng(self.base ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn note(&mut self, record: bool, pos: u64, seg: &[u8], id: u64, f: Fault) {
        if !record {
            return;
        }
        self.stats.faults[FAULTS.iter().position(|x| *x == f).unwrap_or(0)] += 1;
        if let Some(m) = self.manifest.as_mut() {
            m.raw(&self.st02);
            m.raw(b"\t");
            m.num(pos);
            m.raw(b"\t");
            m.raw(seg);
            m.raw(b"\t");
            m.num(id);
            m.raw(b"\t");
            m.raw(f.name().as_bytes());
            m.raw(b"\t");
            m.raw(f.expected().as_bytes());
            m.raw(b"\n");
            if m.buf.len() >= FLUSH_AT {
                m.flush();
            }
        }
    }

    /// Write family `index`. With `record` false nothing is noted (the counting pass).
    fn family(&mut self, out: &mut Out<'_>, index: u64, full: bool, record: bool) -> FamilyCount {
        let mut rng = self.family_rng(index);
        let fam = make_family(&mut rng, index, full);
        for k in 0..fam.n {
            self.member(out, &mut rng, &fam, k, record);
        }
        FamilyCount {
            subscribers: 1,
            dependents: (fam.n - 1) as u64,
        }
    }

    fn member(&mut self, out: &mut Out<'_>, rng: &mut Rng, fam: &Family, k: usize, record: bool) {
        let p = fam.members[k];
        let sub = fam.members[0];
        let is_sub = k == 0;
        let action = fam.action;
        let change = match action {
            Action::Change(c) => Some(c),
            _ => None,
        };
        let full_data = matches!(action, Action::Add | Action::Audit);
        let with_n4 = (is_sub && full_data) || change == Some(Change::Address);
        let with_dmg = full_data || change == Some(Change::Name);
        let term_hd = action == Action::Term && fam.term_with_hd;
        let with_hd = !matches!(change, Some(Change::Address) | Some(Change::Name))
            && (action != Action::Term || term_hd);
        let shape = MemberShape {
            dependent: !is_sub,
            dmg: with_dmg,
            n4: with_n4,
            hd: with_hd,
            term: action == Action::Term,
            term_without_hd: action == Action::Term && !term_hd,
        };
        let fault = if self.fault_threshold > 0 && rng.next_u64() < self.fault_threshold {
            Some(choose_fault(rng, &shape))
        } else {
            None
        };
        let is = |f: Fault| fault == Some(f);

        // INS
        let pos = out.pos();
        out.raw(b"INS");
        if is_sub {
            out.raw(b"*Y*18");
        } else {
            out.raw(b"*N");
            if is(Fault::BadRelationship) {
                self.note(record, pos, b"INS", sub.id, Fault::BadRelationship);
                out.el(b"99");
            } else {
                out.el(p.rel);
            }
        }
        // INS11/INS12: the subscriber of a death termination, or the injected P1112 error
        let death = (is_sub && fam.death) || is(Fault::DeathDateMissing);
        match action {
            Action::Add => {
                let newborn = !is_sub && p.dob.y == FILE_DATE.y - 1 && p.dob.m >= 11;
                out.raw(if newborn { b"*021*02" } else { b"*021*28" });
            }
            Action::Change(c) => {
                out.raw(b"*001");
                out.el(match c {
                    Change::Address => b"43",
                    Change::Name => b"25",
                    Change::Pcp => b"15",
                    Change::CoverageTerm => b"14",
                    Change::Plan => b"22",
                    Change::AddCoverage => b"29",
                    Change::IdCard => b"",
                });
            }
            Action::Term => out.raw(if death {
                b"*024*03"
            } else if is_sub {
                b"*024*08"
            } else {
                b"*024*07"
            }),
            Action::Reinstate => out.raw(b"*025*41"),
            Action::Audit => out.raw(b"*030*"),
        }
        let cobra = is_sub && fam.cobra;
        if cobra {
            out.raw(b"*C**1*TE");
        } else if is_sub {
            out.raw(if action == Action::Term {
                b"*A***TE"
            } else {
                b"*A***FT"
            });
        } else {
            out.raw(b"*A");
        }
        if death {
            // INS09, INS10 empty (and INS06-INS08 too for a dependent), INS11 = D8
            out.raw(if is_sub { b"***D8" } else { b"******D8" });
            if is(Fault::DeathDateMissing) {
                self.note(record, pos, b"INS", sub.id, Fault::DeathDateMissing);
            } else {
                out.el_date(Date::new(2025, 1, 5));
            }
        }
        out.end();

        // REF*0F, REF*1L
        if is(Fault::MissingRef0F) {
            // REF*0F and REF*1L share position 0200, so the absence shows at the first segment
            // after the REF group (pyx12's convention): the one after REF*1L
            let pos = out.pos() + 1;
            self.note(record, pos, b"REF", sub.id, Fault::MissingRef0F);
        } else {
            out.raw(b"REF*0F");
            out.el_num(sub.id);
            out.end();
        }
        out.raw(b"REF*1L");
        out.el(fam.group);
        out.end();

        // member-level dates
        match action {
            Action::Add if is_sub => {
                if rng.pct(60) {
                    out.raw(b"DTP*336*D8");
                    out.el_date(Date::random(rng, 2024, 2024));
                    out.end();
                }
                out.raw(b"DTP*356*D8");
                out.el_date(EFFECTIVE);
                out.end();
            }
            Action::Audit if is_sub => {
                out.raw(b"DTP*356*D8");
                out.el_date(Date::first_of_month(rng, 2015, FILE_DATE));
                out.end();
            }
            Action::Change(Change::Address | Change::Name) => {
                out.raw(b"DTP*303*D8");
                out.el_date(EFFECTIVE);
                out.end();
            }
            Action::Term => {
                if is_sub && !fam.death && rng.pct(50) {
                    out.raw(b"DTP*337*D8");
                    out.el_date(Date::new(2025, 1, rng.range(2, 24) as u32));
                    out.end();
                }
                if is(Fault::TermWithoutDate) {
                    let pos = out.pos();
                    self.note(record, pos, b"DTP", sub.id, Fault::TermWithoutDate);
                } else {
                    out.raw(b"DTP*357*D8");
                    out.el_date(TERM_END);
                    out.end();
                }
            }
            _ => {}
        }
        if cobra {
            out.raw(b"DTP*340*D8");
            out.el_date(EFFECTIVE);
            out.end();
        }

        // 2100A member name
        let pos = out.pos();
        if change == Some(Change::Name) {
            out.raw(b"NM1*74*1");
            out.el(p.last);
            out.raw(b"-");
            out.raw(rng.pick(LAST));
        } else {
            out.raw(b"NM1*IL*1");
            out.el(p.last);
        }
        if is(Fault::NameTooLong) {
            self.note(record, pos, b"NM1", sub.id, Fault::NameTooLong);
            // pad NM103 beyond its 60 characters
            out.raw(b"-VANDERHOEVEN-MONTGOMERY-WINTERBOTTOM-FITZWILLIAM-ABERCROMBIE");
        }
        out.el(p.first);
        if p.middle != 0 {
            out.raw(b"*");
            out.raw(&[p.middle]);
            out.raw(b"***ZZ");
        } else {
            out.raw(b"****ZZ");
        }
        if is(Fault::IdWithoutQualifierPair) {
            self.note(record, pos, b"NM1", sub.id, Fault::IdWithoutQualifierPair);
        } else {
            out.el_num(p.id);
        }
        out.end();
        if is_sub && full_data && rng.pct(50) {
            out.raw(b"PER*IP**HP*");
            out.raw(rng.pick(AREA_CODES));
            out.raw(b"555");
            out.fixed(rng.range(100, 199), 4);
            out.end();
        }
        if with_n4 {
            let a = if change == Some(Change::Address) {
                Address::random(rng)
            } else {
                fam.address
            };
            out.raw(b"N3");
            out.el_num(a.number);
            out.raw(b" ");
            out.raw(a.street);
            out.raw(b" ");
            out.raw(a.suffix);
            if a.unit > 0 {
                out.raw(b"*APT ");
                out.num(a.unit);
            }
            out.end();
            let pos = out.pos();
            out.raw(b"N4");
            out.el(a.city);
            if is(Fault::BadState) {
                self.note(record, pos, b"N4", sub.id, Fault::BadState);
                out.raw(b"*XX");
            } else {
                out.raw(b"*CT");
            }
            out.el(a.zip);
            if is(Fault::BadZip) {
                self.note(record, pos, b"N4", sub.id, Fault::BadZip);
                out.buf.pop();
            } else if a.zip4 > 0 {
                out.fixed(a.zip4, 4);
            }
            out.end();
        }
        if with_dmg {
            let pos = out.pos();
            out.raw(b"DMG*D8");
            if is(Fault::BadBirthDate) {
                self.note(record, pos, b"DMG", sub.id, Fault::BadBirthDate);
                out.el_num(u64::from(p.dob.y));
                out.raw(b"0230");
            } else {
                out.el_date(p.dob);
            }
            if is(Fault::BadGender) {
                self.note(record, pos, b"DMG", sub.id, Fault::BadGender);
                out.raw(b"*X");
            } else {
                out.raw(if p.female { b"*F" } else { b"*M" });
            }
            if is_sub {
                out.raw(if fam.has_spouse() { b"*M" } else { b"*I" });
            } else if p.rel == b"01" {
                out.raw(b"*M");
            }
            out.end();
        }
        if change == Some(Change::Name) {
            // 2100B: the prior (incorrect) name
            out.raw(b"NM1*70*1");
            out.el(p.last);
            out.el(p.first);
            out.raw(b"****ZZ");
            out.el_num(p.id);
            out.end();
        }

        // 2300 health coverage loops
        if with_hd {
            self.coverages(out, rng, fam, k, fault, record);
        }

        // LS/LE reporting categories on some subscribers
        if is_sub && full_data && rng.pct(30) {
            out.seg(b"LS*2700");
            out.seg(b"LX*1");
            out.seg(b"N1*75*DIVISION");
            out.raw(b"REF*19");
            out.el(rng.pick(DIVISIONS));
            out.end();
            out.raw(b"DTP*007*D8");
            out.el_date(if action == Action::Add {
                EFFECTIVE
            } else {
                Date::first_of_month(rng, 2018, FILE_DATE)
            });
            out.end();
            if rng.pct(40) {
                out.seg(b"LX*2");
                out.seg(b"N1*75*LOCATION");
                out.raw(b"REF*LU");
                out.el(rng.pick(LOCATIONS));
                out.end();
            }
            out.seg(b"LE*2700");
        }
    }

    fn coverages(
        &mut self,
        out: &mut Out<'_>,
        rng: &mut Rng,
        fam: &Family,
        k: usize,
        fault: Option<Fault>,
        record: bool,
    ) {
        let is_sub = k == 0;
        let sub_id = fam.members[0].id;
        let action = fam.action;
        // (HD01, coverage, DTP01, DTP03)
        let mut list: [(&[u8], Coverage, &[u8], Date); 3] = [(b"", fam.covs[0], b"", EFFECTIVE); 3];
        let mut n = 0;
        let audit_start = Date::first_of_month(rng, 2016, FILE_DATE);
        match action {
            Action::Add => {
                for c in &fam.covs[..fam.n_covs] {
                    list[n] = (b"021", *c, b"348", EFFECTIVE);
                    n += 1;
                }
            }
            Action::Audit => {
                for c in &fam.covs[..fam.n_covs] {
                    list[n] = (b"030", *c, b"348", audit_start);
                    n += 1;
                }
            }
            Action::Reinstate => {
                for c in &fam.covs[..fam.n_covs] {
                    list[n] = (b"025", *c, b"348", REINSTATE);
                    n += 1;
                }
            }
            Action::Term => {
                for c in &fam.covs[..fam.n_covs] {
                    list[n] = (b"024", *c, b"349", TERM_END);
                    n += 1;
                }
            }
            Action::Change(Change::CoverageTerm) => {
                list[0] = (b"024", fam.covs[fam.n_covs - 1], b"349", TERM_END);
                n = 1;
            }
            Action::Change(Change::AddCoverage) => {
                let c = Coverage {
                    line: Line::Vis,
                    plan: rng.pick(VIS_PLANS),
                };
                list[0] = (b"021", c, b"348", EFFECTIVE);
                n = 1;
            }
            Action::Change(Change::Plan) => {
                let mut c = fam.hlt().unwrap_or(fam.covs[0]);
                let cur = c.plan;
                while c.plan == cur {
                    c.plan = rng.pick(HLT_PLANS);
                }
                list[0] = (b"001", c, b"303", EFFECTIVE);
                n = 1;
            }
            Action::Change(Change::Pcp | Change::IdCard) => {
                list[0] = (b"001", fam.hlt().unwrap_or(fam.covs[0]), b"303", EFFECTIVE);
                n = 1;
            }
            Action::Change(Change::Address | Change::Name) => {}
        }
        // the tier goes on the subscriber when the whole family is in the set
        let whole_family = matches!(
            action,
            Action::Add | Action::Audit | Action::Reinstate | Action::Change(Change::AddCoverage)
        );
        let mut bad_line_done = false;
        let mut bad_date_done = false;
        for (hd01, cov, qual, date) in &list[..n] {
            let pos = out.pos();
            out.raw(b"HD");
            out.el(hd01);
            out.raw(b"*");
            if fault == Some(Fault::BadInsuranceLine) && !bad_line_done {
                bad_line_done = true;
                self.note(record, pos, b"HD", sub_id, Fault::BadInsuranceLine);
                out.el(b"XYZ");
            } else {
                out.el(cov.line.code());
            }
            out.el(cov.plan);
            if is_sub && whole_family {
                out.el(fam.tier());
            }
            out.end();
            let pos = out.pos();
            out.raw(b"DTP");
            out.el(qual);
            out.raw(b"*D8");
            if fault == Some(Fault::BadCoverageDate) && !bad_date_done {
                bad_date_done = true;
                self.note(record, pos, b"DTP", sub_id, Fault::BadCoverageDate);
                out.el_num(u64::from(date.y));
                out.raw(b"0231");
            } else {
                out.el_date(*date);
            }
            out.end();
            if action == Action::Change(Change::IdCard) {
                out.raw(b"IDC");
                out.el(cov.plan);
                out.raw(b"*H");
                out.el_num(rng.range(1, 3));
                out.raw(b"*RX");
                out.end();
            }
            // PCP (2310) on health coverage
            let pcp_change = action == Action::Change(Change::Pcp);
            let want_pcp = cov.line == Line::Hlt
                && (pcp_change
                    || (matches!(action, Action::Add | Action::Audit | Action::Reinstate)
                        && rng.pct(35)));
            if want_pcp {
                out.seg(b"LX*1");
                out.raw(b"NM1*P3*1");
                out.el(rng.pick(LAST));
                let names = if rng.pct(50) { FIRST_F } else { FIRST_M };
                out.el(rng.pick(names));
                out.raw(b"****XX");
                out.el(&npi(rng.range(100_000_000, 299_999_999)));
                out.el(if pcp_change {
                    b"26"
                } else if action == Action::Add {
                    rng.pick(&[&b"25"[..], b"26", b"72"])
                } else {
                    b"25"
                });
                out.end();
                if pcp_change {
                    out.raw(b"PLA*2*1P");
                    out.el_date(EFFECTIVE);
                    out.raw(b"*");
                    out.el(rng.pick(PCP_REASONS));
                    out.end();
                }
            }
        }
    }
}

/// A 10-digit NPI: 9 digits + Luhn check digit over "80840" + those digits.
fn npi(base9: u64) -> [u8; 10] {
    let mut d = [0u8; 10];
    let mut n = base9;
    for i in (0..9).rev() {
        d[i] = (n % 10) as u8;
        n /= 10;
    }
    // the prefix 80840 contributes 24 to the Luhn sum
    let mut sum = 24u32;
    for (i, &x) in d[..9].iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    d[9] = ((10 - sum % 10) % 10) as u8;
    let mut out = [0u8; 10];
    for (o, x) in out.iter_mut().zip(d) {
        *o = b'0' + x;
    }
    out
}

// ------------------------------------------------------------------------------------------
// envelope and driver

fn isa(out: &mut Out<'_>, control: u64) {
    out.raw(b"ISA*00*          *00*          *ZZ*ACMEHR         *ZZ*ELIGOPLAN      *");
    out.fixed(u64::from(FILE_DATE.y % 100), 2);
    out.fixed(u64::from(FILE_DATE.m), 2);
    out.fixed(u64::from(FILE_DATE.d), 2);
    out.raw(b"*0830*^*00501*");
    out.fixed(control, 9);
    out.raw(b"*0*T*:");
    out.end();
}

struct SetPlan {
    families: u64,
    subscribers: u64,
    dependents: u64,
}

/// Writes one generated file to `out`; see the module documentation.
pub fn generate<W: Write>(o: &GenOptions, out: &mut W) -> io::Result<Stats> {
    generate_with_manifest(o, out, None)
}

/// Like [`generate`], and writes the manifest of injected errors to `manifest`: one
/// tab-separated line per error (ST02, segment position, segment id, REF*0F, kind, expected 999).
pub fn generate_with_manifest(
    o: &GenOptions,
    sink: &mut dyn Write,
    manifest: Option<&mut dyn Write>,
) -> io::Result<Stats> {
    let control = 1 + o.seed % 999_999_999;
    let target = (o.size_mb * 1_048_576.0) as u64;
    let envelope = 250u64;
    let header = 330u64;
    let per_set = (target.saturating_sub(envelope) / u64::from(o.sets)).saturating_sub(header);
    let mut gen = Gen {
        base: mix(o.seed),
        fault_threshold: (o.error_rate / 100.0 * 18_446_744_073_709_551_615.0) as u64,
        manifest: None,
        stats: Stats::default(),
        st02: Vec::new(),
    };

    // pass 1: how many families fit in each set, and the QTY totals
    let mut plans = Vec::with_capacity(o.sets as usize);
    let mut counter = Out::new(None);
    let mut index = 0u64;
    for _ in 0..o.sets {
        let start = counter.total();
        let mut plan = SetPlan {
            families: 0,
            subscribers: 0,
            dependents: 0,
        };
        while plan.families == 0 || counter.total() - start < per_set {
            let c = gen.family(&mut counter, index, o.full, false);
            plan.families += 1;
            plan.subscribers += c.subscribers;
            plan.dependents += c.dependents;
            index += 1;
        }
        plans.push(plan);
    }

    // pass 2: write
    let mut out = Out::new(Some(sink));
    if let Some(w) = manifest {
        let mut m = Out::new(Some(w));
        m.raw(b"st02\tposition\tsegment\tref0f\tkind\texpected_999\n");
        gen.manifest = Some(m);
    }
    isa(&mut out, control);
    out.raw(b"GS*BE*ACMEHR*ELIGOPLAN");
    out.el_date(FILE_DATE);
    out.raw(b"*0830");
    out.el_num(control);
    out.raw(b"*X*005010X220A1");
    out.end();
    let mut index = 0u64;
    for (s, plan) in plans.iter().enumerate() {
        gen.st02 = format!("{:04}", s + 1).into_bytes();
        out.segs = 0;
        out.raw(b"ST*834");
        out.el(&gen.st02);
        out.raw(b"*005010X220A1");
        out.end();
        out.raw(b"BGN*00*EG");
        out.num(o.seed);
        out.raw(b"S");
        out.num(s as u64 + 1);
        out.el_date(FILE_DATE);
        out.raw(if o.full { b"*0830****4" } else { b"*0830****2" });
        out.end();
        out.raw(b"DTP*007*D8");
        out.el_date(EFFECTIVE);
        out.end();
        out.raw(b"QTY*ET");
        out.el_num(plan.subscribers);
        out.end();
        out.raw(b"QTY*DT");
        out.el_num(plan.dependents);
        out.end();
        out.raw(b"QTY*TO");
        out.el_num(plan.subscribers + plan.dependents);
        out.end();
        out.seg(b"N1*P5*ACME MANUFACTURING*FI*069990001");
        out.seg(b"N1*IN*ELIGO HEALTH PLAN*FI*069990002");
        out.seg(b"N1*BO*NUTMEG BENEFITS GROUP*94*4471203");
        for _ in 0..plan.families {
            gen.family(&mut out, index, o.full, true);
            index += 1;
            if out.error.is_some() {
                break;
            }
        }
        gen.stats.sets += 1;
        gen.stats.families += plan.families;
        gen.stats.subscribers += plan.subscribers;
        gen.stats.dependents += plan.dependents;
        out.raw(b"SE");
        let count = out.segs + 1;
        out.el_num(count);
        out.el(&gen.st02);
        out.end();
        if out.error.is_some() {
            break;
        }
    }
    out.raw(b"GE");
    out.el_num(u64::from(o.sets));
    out.el_num(control);
    out.end();
    out.raw(b"IEA*1*");
    out.fixed(control, 9);
    out.end();
    let bytes = out.finish()?;
    if let Some(m) = gen.manifest.take() {
        m.finish()?;
    }

    let mut stats = gen.stats;
    stats.bytes = bytes;
    Ok(stats)
}
