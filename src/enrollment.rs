//! The enrollment model: who a member is and what they are enrolled in, in terms that a plan's
//! administrative system understands without knowing X12 or the employer portal.
//!
//! This module owns the typed values (names, addresses, coverages, providers, ID cards) and the
//! code lists they use. It does no I/O and knows nothing of segments or CSV columns: the 834
//! reader ([`crate::changes`]) and the portal reader ([`crate::portal`]) both fill these types,
//! which is what makes an 834 add and a portal add come out equal.
//!
//! Every code list is an enum. It serializes as a readable snake_case label (`spouse`,
//! `employee_and_spouse`), keeps the X12 code it came from ([`Relationship::code`]), and parses
//! from either. The guide's code lists used here are closed, so there is no `Other(String)`
//! variant: an unknown code is an error the reader reports, never a silently kept string. Open
//! values in the guide (plan descriptions, reporting-category values) are plain strings.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The codes of a code list, found by one multiply, one table load and one compare instead of
/// a chain of string compares ([`Relationship::from_code_bytes`]). Built at compile time: the
/// codes are packed as [`crate::schema::pack`] packs them, and a multiplier is searched for
/// under which the top bytes of `key * mul` all differ (a perfect hash), so that a code's slot
/// holds it alone and one compare of the packed key says whether the input is that code.
pub struct CodeIndex {
    /// The packed codes, in code-list order (the order of `ALL`); unused entries are never
    /// reached (no slot names them).
    keys: [u64; CodeIndex::MAX],
    mul: u64,
    /// For each top byte of `key * mul`, the index of the code whose key gives it;
    /// [`CodeIndex::EMPTY`] for none.
    slot: [u8; 256],
}

impl CodeIndex {
    const MAX: usize = 64;
    const EMPTY: u8 = u8::MAX;

    /// `None` (the list is matched as strings) when a code does not pack (over 7 bytes),
    /// a code is there twice, the list is longer than [`CodeIndex::MAX`], or no multiplier
    /// among the ones tried separates every code.
    pub const fn new(codes: &[&str]) -> Option<CodeIndex> {
        let n = codes.len();
        if n > Self::MAX {
            return None;
        }
        let mut keys = [0u64; Self::MAX];
        let mut i = 0;
        while i < n {
            let b = codes[i].as_bytes();
            if b.len() > 7 {
                return None;
            }
            keys[i] = crate::schema::pack_const(b);
            i += 1;
        }
        // Odd multipliers from a splitmix64 sequence; a list of 50 codes in 256 slots needs
        // some hundred tries on average.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut tries = 0;
        while tries < 20_000 {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let mul = (z ^ (z >> 31)) | 1;
            let mut slot = [Self::EMPTY; 256];
            let mut i = 0;
            while i < n {
                let h = (keys[i].wrapping_mul(mul) >> 56) as usize;
                if slot[h] != Self::EMPTY {
                    break;
                }
                slot[h] = i as u8;
                i += 1;
            }
            if i == n {
                return Some(CodeIndex { keys, mul, slot });
            }
            tries += 1;
        }
        None
    }

    /// The index of the code equal to `code`, if there is one.
    #[inline]
    fn find(&self, code: &[u8]) -> Option<usize> {
        let k = crate::schema::pack(code)?;
        let s = self.slot[(k.wrapping_mul(self.mul) >> 56) as usize] as usize;
        // An empty slot (`EMPTY`, past `MAX`) finds no key.
        (self.keys.get(s) == Some(&k)).then_some(s)
    }
}

/// Declares a closed code list: variant, X12 code, label.
macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident = $code:literal => $label:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($var),+ }

        impl $name {
            /// Every value, in code-list order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The value for an X12 code.
            pub fn from_code(code: &str) -> Option<$name> {
                $name::from_code_bytes(code.as_bytes())
            }
            /// [`Self::from_code`] for the bytes of an element as they lie in the input: the
            /// member reader looks up a dozen codes a member, and a `match` on strings is a
            /// chain of compares (dozens for a long list, each a branch to predict). Bytes
            /// that are not UTF-8 are no code.
            pub fn from_code_bytes(code: &[u8]) -> Option<$name> {
                static INDEX: Option<CodeIndex> = CodeIndex::new(&[$($code),+]);
                match &INDEX {
                    Some(ix) => ix.find(code).and_then(|i| $name::ALL.get(i).copied()),
                    None => std::str::from_utf8(code).ok().and_then(|code| match code {
                        $($code => Some($name::$var),)+
                        _ => None,
                    }),
                }
            }
            /// Whether [`Self::from_code_bytes`] finds codes through a [`CodeIndex`].
            #[cfg(test)]
            const INDEXED: bool = CodeIndex::new(&[$($code),+]).is_some();
            /// The X12 code.
            pub fn code(self) -> &'static str {
                match self { $($name::$var => $code),+ }
            }
            /// The normalized label (what the JSON output says).
            pub fn label(self) -> &'static str {
                match self { $($name::$var => $label),+ }
            }
            /// The label as a JSON string, quotes included: written as one copy (a record
            /// holds a dozen labels).
            pub fn json_label(self) -> &'static str {
                match self { $($name::$var => concat!("\"", $label, "\"")),+ }
            }
            /// The value whose label is exactly `text` (what eligo itself writes).
            pub fn from_exact_label(text: &str) -> Option<$name> {
                match text { $($label => Some($name::$var),)+ _ => None }
            }
            /// Parses a label written by people: case, spaces and hyphens do not matter and `+`
            /// reads as `and` (see [`normalize_label`]).
            pub fn from_label(text: &str) -> Option<$name> {
                let key = normalize_label(text);
                $name::ALL.iter().copied().find(|v| v.label() == key)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.label())
            }
        }

        /// Read from the string as it lies in the input (no copy), the exact label first:
        /// a record read back holds a dozen labels, all of them as eligo wrote them.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                struct Label;
                impl serde::de::Visitor<'_> for Label {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a string")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        $name::from_exact_label(s)
                            .or_else(|| $name::from_label(s))
                            .ok_or_else(|| {
                                E::custom(format!(
                                    concat!("unknown ", stringify!($name), " {:?}"),
                                    s
                                ))
                            })
                    }
                }
                d.deserialize_str(Label)
            }
        }
    };
}

/// A date in the JSON form of a record (`YYYY-MM-DD`), as chrono's `FromStr` reads it. The
/// plain ten-byte form, the only one eligo writes for years 0 to 9999, is read directly: chrono's
/// general parser is most of the cost of the half-dozen dates a record read back holds.
pub fn read_date(s: &str) -> Result<NaiveDate, chrono::ParseError> {
    let b = s.as_bytes();
    if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *b {
        let digits = [y0, y1, y2, y3, m0, m1, d0, d1];
        if digits.iter().all(u8::is_ascii_digit) {
            let n = |ds: &[u8]| ds.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'));
            let (y, m, d) = (n(&digits[..4]), n(&digits[4..6]), n(&digits[6..]));
            if let Some(date) = NaiveDate::from_ymd_opt(y as i32, m, d) {
                return Ok(date);
            }
        }
    }
    s.parse()
}

/// `deserialize_with` for dates: chrono's `Deserialize` (same input accepted, same errors)
/// through [`read_date`].
pub mod date_de {
    use chrono::NaiveDate;
    use serde::de::{Deserializer, Error, Visitor};
    use std::fmt;

    struct Date;

    impl Visitor<'_> for Date {
        type Value = NaiveDate;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a formatted date string")
        }
        fn visit_str<E: Error>(self, s: &str) -> Result<NaiveDate, E> {
            super::read_date(s).map_err(E::custom)
        }
    }

    struct OptDate;

    impl<'de> Visitor<'de> for OptDate {
        type Value = Option<NaiveDate>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("option")
        }
        fn visit_none<E: Error>(self) -> Result<Option<NaiveDate>, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Option<NaiveDate>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<NaiveDate>, D::Error> {
            d.deserialize_str(Date).map(Some)
        }
    }

    /// For a `NaiveDate` field.
    pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        d.deserialize_str(Date)
    }

    /// For an `Option<NaiveDate>` field (with `#[serde(default)]`, as a missing `Option` is
    /// `None` without `deserialize_with`).
    pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        d.deserialize_option(OptDate)
    }
}

/// Lower-cases a label and turns runs of spaces, hyphens, slashes and `&` into `_`, so that
/// `Pending - awaiting Family Health Statement` becomes
/// `pending_awaiting_family_health_statement`.
pub fn normalize_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.trim().chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else if c == '+' {
            if !out.is_empty() {
                out.push_str("_and");
            }
            gap = true;
        } else {
            gap = true;
        }
    }
    out
}

code_enum! {
    /// INS02: the member's relationship to the subscriber (DE 1069).
    Relationship {
        Spouse = "01" => "spouse",
        Parent = "03" => "parent",
        Grandparent = "04" => "grandparent",
        Grandchild = "05" => "grandchild",
        UncleOrAunt = "06" => "uncle_or_aunt",
        NephewOrNiece = "07" => "nephew_or_niece",
        Cousin = "08" => "cousin",
        AdoptedChild = "09" => "adopted_child",
        FosterChild = "10" => "foster_child",
        ChildInLaw = "11" => "child_in_law",
        SiblingInLaw = "12" => "sibling_in_law",
        ParentInLaw = "13" => "parent_in_law",
        Sibling = "14" => "sibling",
        Ward = "15" => "ward",
        Stepparent = "16" => "stepparent",
        Stepchild = "17" => "stepchild",
        SelfSubscriber = "18" => "self",
        Child = "19" => "child",
        SponsoredDependent = "23" => "sponsored_dependent",
        DependentOfMinorDependent = "24" => "dependent_of_minor_dependent",
        ExSpouse = "25" => "ex_spouse",
        Guardian = "26" => "guardian",
        CourtAppointedGuardian = "31" => "court_appointed_guardian",
        MotherOrFatherOfChild = "38" => "parent_of_child",
        LifePartner = "53" => "life_partner",
        AnnuitantOrBeneficiary = "60" => "annuitant",
        TrustOrCapitalDebtor = "D2" => "trustee",
        OtherRelationship = "G8" => "other_relationship",
        OtherRelative = "G9" => "other_relative",
    }
}

code_enum! {
    /// DMG03 (DE 1068).
    Gender { Female = "F" => "female", Male = "M" => "male", Unknown = "U" => "unknown" }
}

code_enum! {
    /// DMG04 (DE 1067).
    MaritalStatus {
        RegisteredDomesticPartner = "B" => "registered_domestic_partner",
        Divorced = "D" => "divorced",
        Single = "I" => "single",
        Married = "M" => "married",
        Unreported = "R" => "unreported",
        Separated = "S" => "separated",
        Unmarried = "U" => "unmarried",
        Widowed = "W" => "widowed",
        LegallySeparated = "X" => "legally_separated",
    }
}

code_enum! {
    /// INS08 (DE 584).
    EmploymentStatus {
        Active = "AC" => "active",
        ActiveMilitaryOverseas = "AO" => "active_military_overseas",
        ActiveMilitaryUsa = "AU" => "active_military_usa",
        FullTime = "FT" => "full_time",
        LeaveOfAbsence = "L1" => "leave_of_absence",
        PartTime = "PT" => "part_time",
        Retired = "RT" => "retired",
        Terminated = "TE" => "terminated",
    }
}

code_enum! {
    /// INS09 (DE 1220).
    StudentStatus { FullTime = "F" => "full_time", NotAStudent = "N" => "not_a_student", PartTime = "P" => "part_time" }
}

code_enum! {
    /// INS03 / HD01 (DE 875).
    MaintenanceType {
        Change = "001" => "change",
        Delete = "002" => "delete",
        Addition = "021" => "addition",
        Termination = "024" => "termination",
        Reinstatement = "025" => "reinstatement",
        Correction = "026" => "correction",
        Audit = "030" => "audit",
        EmployeeInformationNotApplicable = "032" => "employee_information_not_applicable",
    }
}

code_enum! {
    /// INS04 and PLA05 (DE 1203).
    MaintenanceReason {
        Divorce = "01" => "divorce",
        Birth = "02" => "birth",
        Death = "03" => "death",
        Retirement = "04" => "retirement",
        Adoption = "05" => "adoption",
        Strike = "06" => "strike",
        TerminationOfBenefits = "07" => "termination_of_benefits",
        TerminationOfEmployment = "08" => "termination_of_employment",
        Cobra = "09" => "cobra",
        CobraPremiumPaid = "10" => "cobra_premium_paid",
        SurvivingSpouse = "11" => "surviving_spouse",
        VoluntaryWithdrawal = "14" => "voluntary_withdrawal",
        PcpChange = "15" => "pcp_change",
        Quit = "16" => "quit",
        Fired = "17" => "fired",
        Suspended = "18" => "suspended",
        Active = "20" => "active",
        Disability = "21" => "disability",
        PlanChange = "22" => "plan_change",
        IdentifyingDataChange = "25" => "change_in_identifying_data",
        DeclinedCoverage = "26" => "declined_coverage",
        PreEnrollment = "27" => "pre_enrollment",
        InitialEnrollment = "28" => "initial_enrollment",
        BenefitSelection = "29" => "benefit_selection",
        LegalSeparation = "31" => "legal_separation",
        Marriage = "32" => "marriage",
        PersonnelData = "33" => "personnel_data",
        LeaveWithBenefits = "37" => "leave_of_absence_with_benefits",
        LeaveWithoutBenefits = "38" => "leave_of_absence_without_benefits",
        LayOffWithBenefits = "39" => "lay_off_with_benefits",
        LayOffWithoutBenefits = "40" => "lay_off_without_benefits",
        ReEnrollment = "41" => "re_enrollment",
        ChangeOfLocation = "43" => "change_of_location",
        CustomerFileInError = "46" => "customer_file_in_error",
        NonPayment = "59" => "non_payment",
        OfficeStaff = "AA" => "dissatisfaction_with_office_staff",
        MedicalCare = "AB" => "dissatisfaction_with_medical_care",
        OfficeLocation = "AC" => "inconvenient_office_location",
        OfficeHours = "AD" => "dissatisfaction_with_office_hours",
        Appointments = "AE" => "unable_to_schedule_appointments",
        ReferralPolicy = "AF" => "dissatisfaction_with_referral_policy",
        LessRespect = "AG" => "less_respect_and_attention",
        PatientMoved = "AH" => "patient_moved",
        NoReason = "AI" => "no_reason_given",
        AppointmentTimes = "AJ" => "appointment_times_not_met",
        AlgorithmAssigned = "AL" => "algorithm_assigned_benefit_selection",
        MemberBenefitSelection = "EC" => "member_benefit_selection",
        NotificationOnly = "XN" => "notification_only",
        Transfer = "XT" => "transfer",
    }
}

code_enum! {
    /// HD03 (DE 1205).
    InsuranceLine {
        PreventiveCare = "AG" => "preventive_care",
        TwentyFourHourCare = "AH" => "24_hour_care",
        MedicareRisk = "AJ" => "medicare_risk",
        MentalHealth = "AK" => "mental_health",
        DentalCapitation = "DCP" => "dental_capitation",
        Dental = "DEN" => "dental",
        Epo = "EPO" => "epo",
        Facility = "FAC" => "facility",
        Hearing = "HE" => "hearing",
        Health = "HLT" => "health",
        Hmo = "HMO" => "hmo",
        LongTermCare = "LTC" => "long_term_care",
        LongTermDisability = "LTD" => "long_term_disability",
        MajorMedical = "MM" => "major_medical",
        MailOrderDrug = "MOD" => "mail_order_drug",
        PrescriptionDrug = "PDG" => "prescription_drug",
        Pos = "POS" => "pos",
        Ppo = "PPO" => "ppo",
        Practitioners = "PRA" => "practitioners",
        ShortTermDisability = "STD" => "short_term_disability",
        UtilizationReview = "UR" => "utilization_review",
        Vision = "VIS" => "vision",
    }
}

code_enum! {
    /// HD05 (DE 1207).
    CoverageLevel {
        ChildrenOnly = "CHD" => "children_only",
        DependentsOnly = "DEP" => "dependents_only",
        EmployeeAndOneDependent = "E1D" => "employee_and_one_dependent",
        EmployeeAndTwoDependents = "E2D" => "employee_and_two_dependents",
        EmployeeAndThreeDependents = "E3D" => "employee_and_three_dependents",
        EmployeeAndOneOrMore = "E5D" => "employee_and_one_or_more_dependents",
        EmployeeAndTwoOrMore = "E6D" => "employee_and_two_or_more_dependents",
        EmployeeAndThreeOrMore = "E7D" => "employee_and_three_or_more_dependents",
        EmployeeAndFourOrMore = "E8D" => "employee_and_four_or_more_dependents",
        EmployeeAndFiveOrMore = "E9D" => "employee_and_five_or_more_dependents",
        EmployeeAndChildren = "ECH" => "employee_and_children",
        EmployeeOnly = "EMP" => "employee_only",
        EmployeeAndSpouse = "ESP" => "employee_and_spouse",
        Family = "FAM" => "family",
        Individual = "IND" => "individual",
        SpouseAndChildren = "SPC" => "spouse_and_children",
        SpouseOnly = "SPO" => "spouse_only",
        TwoParty = "TWO" => "two_party",
    }
}

code_enum! {
    /// IDC02 (DE 1215).
    CardType { Dental = "D" => "dental", Health = "H" => "health", PrescriptionDrug = "P" => "prescription_drug" }
}

code_enum! {
    /// IDC04 (DE 306).
    CardAction { Add = "1" => "add", Change = "2" => "change", Replace = "RX" => "replace" }
}

code_enum! {
    /// PER03/05/07 (DE 365).
    ContactKind {
        AlternatePhone = "AP" => "alternate_phone",
        Beeper = "BN" => "beeper",
        CellPhone = "CP" => "cell_phone",
        Email = "EM" => "email",
        Extension = "EX" => "extension",
        Fax = "FX" => "fax",
        HomePhone = "HP" => "home_phone",
        Telephone = "TE" => "telephone",
        WorkPhone = "WP" => "work_phone",
    }
}

code_enum! {
    /// DSB02 (DE 1146).
    DisabilityType {
        ShortTerm = "1" => "short_term",
        LongTerm = "2" => "long_term",
        PermanentOrTotal = "3" => "permanent_or_total",
        NoDisability = "4" => "no_disability",
    }
}

code_enum! {
    /// The employer/broker portal's transaction status (not an X12 code list: the "codes" are
    /// the portal's own words).
    PortalStatus {
        Pending = "Pending" => "pending",
        Submitted = "Submitted" => "submitted",
        Completed = "Completed" => "completed",
        Incomplete = "Incomplete" => "incomplete",
        PendingFamilyHealthStatement = "Pending - awaiting Family Health Statement"
            => "pending_awaiting_family_health_statement",
        Withdrawn = "Withdrawn" => "withdrawn",
    }
}

/// Every code list declared above, handed to the macro `$m` after the `$first` ones (the JSON
/// writer's list adds [`crate::changes::ChangeKind`]; the tests take them all).
macro_rules! code_enums {
    ($m:ident $(, $first:ident)*) => {
        $m!(
            $($first,)*
            Relationship,
            Gender,
            MaritalStatus,
            EmploymentStatus,
            StudentStatus,
            MaintenanceType,
            MaintenanceReason,
            InsuranceLine,
            CoverageLevel,
            CardType,
            CardAction,
            ContactKind,
            DisabilityType,
            PortalStatus
        );
    };
}
pub(crate) use code_enums;

/// A person's name (NM103..NM107).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PersonName {
    pub last: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// DMG: birth date, gender, marital status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Demographics {
    #[serde(
        default,
        deserialize_with = "date_de::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub birth_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marital_status: Option<MaritalStatus>,
}

impl Demographics {
    pub fn is_empty(&self) -> bool {
        self == &Demographics::default()
    }
}

/// N3/N4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// One communication number (PER).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub kind: ContactKind,
    pub value: String,
}

/// 2200 DSB with its dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disability {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DisabilityType>,
    #[serde(
        default,
        deserialize_with = "date_de::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub start: Option<NaiveDate>,
    #[serde(
        default,
        deserialize_with = "date_de::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<NaiveDate>,
}

/// A primary care provider (2310 NM1*P3, PLA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Provider {
    /// Person (last, first) or organisation (last only) name.
    pub name: PersonName,
    /// National Provider Identifier (NM108 `XX`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npi: Option<String>,
    /// Any other identifier (NM108 `SV`, `24`, `34`, `FI`): the plan's own provider number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// PLA05.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_reason: Option<MaintenanceReason>,
}

/// An ID card request (IDC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdCard {
    pub card_type: CardType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<CardAction>,
}

/// One coverage (2300) as it stands after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub insurance_line: InsuranceLine,
    /// HD04: the plan code agreed with the payer (open value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_level: Option<CoverageLevel>,
    #[serde(
        default,
        deserialize_with = "date_de::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub begin: Option<NaiveDate>,
    #[serde(
        default,
        deserialize_with = "date_de::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcp: Option<Provider>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub id_cards: Vec<IdCard>,
}

impl Coverage {
    pub fn new(insurance_line: InsuranceLine) -> Coverage {
        Coverage {
            insurance_line,
            plan: None,
            coverage_level: None,
            begin: None,
            end: None,
            pcp: None,
            id_cards: Vec::new(),
        }
    }
}

/// A reporting category (2700/2750): a name (N102) and its value (REF02).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingCategory {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(
        default,
        deserialize_with = "date_de::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub date: Option<NaiveDate>,
}

/// The member values a change carries: what is new (or, in `old`, what it replaces). Every field
/// is optional: a change fills only the fields it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MemberData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographics: Option<Demographics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residence: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailing: Option<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Contact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employment_status: Option<EmploymentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_status: Option<StudentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handicapped: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabilities: Vec<Disability>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coverages: Vec<Coverage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
}

impl MemberData {
    pub fn is_empty(&self) -> bool {
        self == &MemberData::default()
    }
}

/// A [`PersonName`] borrowed: from a name, or from the elements of the NM1 segment a member
/// loop was read from ([`crate::changes::member_loop`]), without copying them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NameView<'a> {
    pub last: &'a str,
    pub first: Option<&'a str>,
    pub middle: Option<&'a str>,
    pub prefix: Option<&'a str>,
    pub suffix: Option<&'a str>,
}

impl<'a> From<&'a PersonName> for NameView<'a> {
    fn from(n: &'a PersonName) -> NameView<'a> {
        NameView {
            last: &n.last,
            first: n.first.as_deref(),
            middle: n.middle.as_deref(),
            prefix: n.prefix.as_deref(),
            suffix: n.suffix.as_deref(),
        }
    }
}

impl NameView<'_> {
    /// The owned name.
    pub fn to_name(&self) -> PersonName {
        PersonName {
            last: self.last.to_string(),
            first: self.first.map(str::to_string),
            middle: self.middle.map(str::to_string),
            prefix: self.prefix.map(str::to_string),
            suffix: self.suffix.map(str::to_string),
        }
    }
}

/// An [`Address`] borrowed, as [`NameView`] borrows a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressView<'a> {
    pub line1: &'a str,
    pub line2: Option<&'a str>,
    pub city: &'a str,
    pub state: Option<&'a str>,
    pub postal_code: Option<&'a str>,
    pub country: Option<&'a str>,
}

impl<'a> From<&'a Address> for AddressView<'a> {
    fn from(a: &'a Address) -> AddressView<'a> {
        AddressView {
            line1: &a.line1,
            line2: a.line2.as_deref(),
            city: &a.city,
            state: a.state.as_deref(),
            postal_code: a.postal_code.as_deref(),
            country: a.country.as_deref(),
        }
    }
}

impl AddressView<'_> {
    /// The owned address.
    pub fn to_address(&self) -> Address {
        Address {
            line1: self.line1.to_string(),
            line2: self.line2.map(str::to_string),
            city: self.city.to_string(),
            state: self.state.map(str::to_string),
            postal_code: self.postal_code.map(str::to_string),
            country: self.country.map(str::to_string),
        }
    }
}

/// [`MemberData`] borrowed: the values a change carries, pointing into the member loop they
/// were read from. Deriving changes gives views, so that a member's values are not copied into
/// every record only to be written and dropped; the JSON of a view is the JSON of the
/// [`MemberData`] with the same values ([`MemberData`]'s own JSON is written through its view).
#[derive(Debug, Clone, Copy, Default)]
pub struct DataView<'a> {
    pub name: Option<NameView<'a>>,
    pub ssn: Option<&'a str>,
    pub demographics: Option<&'a Demographics>,
    pub residence: Option<AddressView<'a>>,
    pub mailing: Option<AddressView<'a>>,
    pub contacts: &'a [Contact],
    pub employment_status: Option<EmploymentStatus>,
    pub student_status: Option<StudentStatus>,
    pub handicapped: Option<bool>,
    pub disabilities: &'a [Disability],
    pub coverages: &'a [Coverage],
    pub division: Option<&'a str>,
}

impl<'a> From<&'a MemberData> for DataView<'a> {
    fn from(d: &'a MemberData) -> DataView<'a> {
        DataView {
            name: d.name.as_ref().map(NameView::from),
            ssn: d.ssn.as_deref(),
            demographics: d.demographics.as_ref(),
            residence: d.residence.as_ref().map(AddressView::from),
            mailing: d.mailing.as_ref().map(AddressView::from),
            contacts: &d.contacts,
            employment_status: d.employment_status,
            student_status: d.student_status,
            handicapped: d.handicapped,
            disabilities: &d.disabilities,
            coverages: &d.coverages,
            division: d.division.as_deref(),
        }
    }
}

impl DataView<'_> {
    /// The owned values.
    pub fn to_data(&self) -> MemberData {
        MemberData {
            name: self.name.map(|n| n.to_name()),
            ssn: self.ssn.map(str::to_string),
            demographics: self.demographics.cloned(),
            residence: self.residence.map(|a| a.to_address()),
            mailing: self.mailing.map(|a| a.to_address()),
            contacts: self.contacts.to_vec(),
            employment_status: self.employment_status,
            student_status: self.student_status,
            handicapped: self.handicapped,
            disabilities: self.disabilities.to_vec(),
            coverages: self.coverages.to_vec(),
            division: self.division.map(str::to_string),
        }
    }
}

/// One member (subscriber or dependent) as a sender describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// REF*0F: the subscriber's identifier, carried by every member of the family.
    pub subscriber_id: String,
    /// The member's own identifier (NM109 unless it is an SSN); the subscriber id for a
    /// subscriber that has none.
    pub member_id: String,
    pub relationship: Relationship,
    /// INS03.
    pub maintenance: MaintenanceType,
    /// INS04.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<MaintenanceReason>,
    /// The member's values as sent (2100A and the 2300 loops).
    pub data: MemberData,
    /// 2100B: the name as the receiver has it (before a correction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_name: Option<PersonName>,
    /// 2100B DMG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_demographics: Option<Demographics>,
    /// 2000 REF*17 (client reporting category) and the 2700/2750 loops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reporting_categories: Vec<ReportingCategory>,
}

impl Member {
    pub fn is_subscriber(&self) -> bool {
        self.relationship == Relationship::SelfSubscriber
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_labels_round_trip() {
        for r in Relationship::ALL {
            assert_eq!(Relationship::from_code(r.code()), Some(*r));
            assert_eq!(Relationship::from_label(r.label()), Some(*r));
        }
        assert_eq!(
            CoverageLevel::from_label("Employee + Spouse"),
            Some(CoverageLevel::EmployeeAndSpouse)
        );
        assert_eq!(
            normalize_label(" Pending - awaiting Family Health Statement "),
            "pending_awaiting_family_health_statement"
        );
        assert_eq!(Gender::from_code("X"), None);
    }

    /// The index finds exactly what a `match` on the code strings finds: every code, and no
    /// other input (short values of every byte, codes with a byte more or less, a byte
    /// changed, NUL padding, values too long to pack, bytes that are not UTF-8).
    #[test]
    fn codes_found_by_the_index_are_the_codes_matched() {
        fn matched<T: Copy>(all: &[T], code: fn(T) -> &'static str, v: &[u8]) -> Option<T> {
            all.iter().copied().find(|t| code(*t).as_bytes() == v)
        }
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            code: fn(T) -> &'static str,
            found: fn(&[u8]) -> Option<T>,
            indexed: bool,
        ) {
            let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![0xFF, 0xFE], b"\xC3\xA9".to_vec()];
            for a in 0..=255u8 {
                inputs.push(vec![a]);
                for b in (0..=255u8).step_by(3).chain(b'0'..=b'Z') {
                    inputs.push(vec![a, b]);
                }
            }
            for t in all {
                let c = code(*t).as_bytes();
                let mut more = c.to_vec();
                more.push(b'0');
                inputs.push(more.clone());
                more.pop();
                more.push(0);
                inputs.push(more);
                inputs.push(c[..c.len() - 1].to_vec());
                inputs.push([c, c].concat());
                for i in 0..c.len() {
                    let mut v = c.to_vec();
                    v[i] ^= 1;
                    inputs.push(v);
                }
                inputs.push(c.to_vec());
                assert_eq!(found(c), Some(*t), "{:?}", code(*t));
            }
            for v in &inputs {
                assert_eq!(found(v), matched(all, code, v), "{v:?}");
            }
            // Every list of X12 codes is indexed (only the portal's words are too long).
            assert_eq!(all.iter().all(|t| code(*t).len() <= 7), indexed);
        }
        macro_rules! each {
            ($($t:ident),+) => {$(
                check($t::ALL, $t::code, $t::from_code_bytes, $t::INDEXED);
            )+};
        }
        code_enums!(each);
    }

    #[test]
    fn dates_read_as_chrono_reads_them() {
        for s in [
            "2025-02-01",
            "0000-01-01",
            "9999-12-31",
            "2024-02-29",
            "2025-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-01-32",
            "2025-1-01",
            "+12025-01-01",
            "-0044-03-15",
            " 2025-02-01",
            "2025-02-01 ",
            "2025/02/01",
            "20250201",
            "",
        ] {
            let want = s.parse::<NaiveDate>();
            assert_eq!(read_date(s), want, "{s:?}");
            let json = serde_json::to_string(s).unwrap();
            let ours = date_de::date(&mut serde_json::Deserializer::from_str(&json));
            let theirs: Result<NaiveDate, _> = serde_json::from_str(&json);
            assert_eq!(
                ours.map_err(|e| e.to_string()),
                theirs.map_err(|e| e.to_string())
            );
        }
        for j in ["null", "\"2025-02-01\"", "\"x\"", "7"] {
            let ours = date_de::opt(&mut serde_json::Deserializer::from_str(j));
            let theirs: Result<Option<NaiveDate>, _> = serde_json::from_str(j);
            assert_eq!(
                ours.map_err(|e| e.to_string()),
                theirs.map_err(|e| e.to_string()),
                "{j}"
            );
        }
    }

    #[test]
    fn labels_read_back_exactly_or_as_people_write_them() {
        for r in CoverageLevel::ALL {
            let j = serde_json::to_string(r).unwrap();
            assert_eq!(serde_json::from_str::<CoverageLevel>(&j).unwrap(), *r);
        }
        let back: CoverageLevel = serde_json::from_str("\"Employee + Spouse\"").unwrap();
        assert_eq!(back, CoverageLevel::EmployeeAndSpouse);
        let err = serde_json::from_str::<Gender>("\"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown Gender \"x\""), "{err}");
        let err = serde_json::from_str::<Gender>("1").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid type: integer `1`, expected a string"),
            "{err}"
        );
    }

    #[test]
    fn enums_serialize_as_labels() {
        let j = serde_json::to_string(&InsuranceLine::Health).unwrap();
        assert_eq!(j, "\"health\"");
        let back: InsuranceLine = serde_json::from_str("\"dental\"").unwrap();
        assert_eq!(back, InsuranceLine::Dental);
    }
}
