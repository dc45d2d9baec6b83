//! Findings: what the validator says about the input, as data.
//!
//! A finding is a value with a stable rule id, a severity, a SNIP level, the exact position (down
//! to component and repetition), the acknowledgement code it maps to, and the offending value.
//! Human text is rendered from it by the report layers; the 999/TA1 writer maps it to segments
//! without re-validating anything. Values that are member data are flagged `phi` and must be
//! masked wherever people (not the sender) read them.

use serde::Serialize;

/// How much a finding weighs for the disposition of its set or member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported only; never changes a disposition.
    Warning,
    /// Rejects the set (X12 / guide findings) or the member (business rules).
    Error,
}

/// The acknowledgement code a finding maps to. Each variant names the segment and element of the
/// 999 or TA1 that carries the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "ack", content = "code", rename_all = "snake_case")]
pub enum Ack {
    /// TA105 interchange note code; the TA1 is `R` for it.
    Ta1(&'static str),
    /// AK905 functional group syntax error code.
    Group(&'static str),
    /// IK502 transaction set syntax error code.
    Set(&'static str),
    /// IK304 segment syntax error code (an IK3 loop).
    Segment(&'static str),
    /// IK403 element syntax error code (an IK4 under an IK3 `8`).
    Element(&'static str),
    /// Not reported in the 999: business rules go to the reject report only.
    Report,
}

impl Ack {
    pub fn code(&self) -> &'static str {
        match self {
            Ack::Ta1(c) | Ack::Group(c) | Ack::Set(c) | Ack::Segment(c) | Ack::Element(c) => c,
            Ack::Report => "",
        }
    }

    /// True for codes defined by the implementation guide (the `I` codes) rather than by the X12
    /// standard; decides IK502 `I5` versus `5`.
    pub fn is_implementation(&self) -> bool {
        self.code().starts_with('I')
    }

    /// Short form used in human output: `[IK403 7]`.
    pub fn label(&self) -> String {
        match self {
            Ack::Ta1(c) => format!("TA105 {c}"),
            Ack::Group(c) => format!("AK905 {c}"),
            Ack::Set(c) => format!("IK502 {c}"),
            Ack::Segment(c) => format!("IK304 {c}"),
            Ack::Element(c) => format!("IK403 {c}"),
            Ack::Report => "report".to_string(),
        }
    }
}

/// Position of an element inside its segment, 1-based, as in IK401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct ElementPos {
    pub element: u8,
    pub component: Option<u8>,
    pub repetition: Option<u16>,
}

impl std::fmt::Display for ElementPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.element)?;
        match (self.component, self.repetition) {
            (Some(c), Some(r)) => write!(f, ":{c}:{r}"),
            (Some(c), None) => write!(f, ":{c}"),
            (None, Some(r)) => write!(f, "::{r}"),
            (None, None) => Ok(()),
        }
    }
}

/// Where a finding is. Envelope findings leave the inner fields empty.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Location {
    pub line: u64,
    pub offset: u64,
    pub isa13: Option<Text>,
    pub gs06: Option<Text>,
    pub st02: Option<Text>,
    /// Position of the segment in its set, ST = 1 (IK302).
    pub segment_position: Option<u32>,
    pub segment_id: Option<Text>,
    /// Implementation-guide loop id (2000, 2100A, ...).
    pub loop_id: Option<Text>,
    pub element: Option<ElementPos>,
    /// Data element dictionary number (IK402).
    pub data_element: Option<String>,
    /// REF*0F of the member the finding belongs to (PHI).
    pub member: Option<Text>,
}

/// Text of a [`Location`]: a constant, or a string that the findings holding it share.
///
/// Why: the business rules point every finding at a segment id and loop id that are constants,
/// and at a set key and member that are the same for all the findings of a set or member. As
/// owned strings that was six allocations, copies and frees per finding (a tenth of a million
/// per 10 MB in `eligo run`, docs/performance.md, runperf13). It reads, compares, prints and
/// serializes as the `str` it holds, so no output depends on which kind it is. It takes the
/// room of a `String`, so a [`Location`] is no larger than it was.
#[derive(Clone)]
pub enum Text {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
}

impl Text {
    /// A text to share: clones of it cost no copy of the string.
    pub fn shared(s: &str) -> Text {
        Text::Shared(s.into())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Shared(s.into())
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The trigger of a situational rule (999 CTX segment/element context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    pub segment_id: String,
    pub segment_position: u32,
    pub element: Option<ElementPos>,
}

/// One thing the validator or the business rules found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Stable id: severities are configured by it and `eligo check --explain` explains it.
    pub id: &'static str,
    pub severity: Severity,
    /// WEDI SNIP level 1..7.
    pub snip: u8,
    pub ack: Ack,
    pub location: Location,
    /// The offending value as received (if any). Member data when `phi` is true.
    pub value: Option<String>,
    pub phi: bool,
    pub message: String,
    pub trigger: Option<Trigger>,
}

impl Finding {
    pub fn new(id: &'static str, snip: u8, ack: Ack, message: impl Into<String>) -> Finding {
        Finding {
            id,
            severity: Severity::Error,
            snip,
            ack,
            location: Location::default(),
            value: None,
            phi: false,
            message: message.into(),
            trigger: None,
        }
    }

    pub fn with_value(mut self, v: &[u8], phi: bool) -> Finding {
        self.value = Some(String::from_utf8_lossy(v).into_owned());
        self.phi = phi;
        self
    }

    /// The value as people may see it: member data is masked, keeping only its length and last
    /// character class so that an analyst can still tell "empty" from "wrong length".
    pub fn display_value(&self) -> Option<String> {
        self.value
            .as_ref()
            .map(|v| if self.phi { mask(v) } else { v.clone() })
    }
}

/// Masks member data: every letter becomes `X` and every digit `9`, so shape survives and
/// content does not.
pub fn mask(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                '9'
            } else if c.is_alphabetic() {
                'X'
            } else {
                c
            }
        })
        .collect()
}

/// Receives findings and structure events as a set is checked. The 999 writer, the change
/// normalizer and the report printers are sinks; the validator knows none of them.
pub trait Sink {
    fn finding(&mut self, f: Finding);
}

impl Sink for Vec<Finding> {
    fn finding(&mut self, f: Finding) {
        self.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_shape_only() {
        assert_eq!(mask("DOE, JANE 1985-02-14"), "XXX, XXXX 9999-99-99");
    }

    #[test]
    fn element_position_renders_like_ik401() {
        let p = ElementPos {
            element: 5,
            component: Some(3),
            repetition: Some(2),
        };
        assert_eq!(p.to_string(), "5:3:2");
        assert_eq!(
            ElementPos {
                element: 2,
                ..Default::default()
            }
            .to_string(),
            "2"
        );
    }

    #[test]
    fn texts_read_print_and_serialize_as_their_strings() {
        for v in ["NM1", "", "a\"b\\c\u{1}é"] {
            let kinds = [
                Text::shared(v),
                Text::from(v.to_string()),
                Text::from(Box::leak(v.to_string().into_boxed_str()) as &'static str),
            ];
            for t in &kinds {
                assert_eq!(t.as_str(), v);
                assert_eq!(format!("{t:?}"), format!("{v:?}"));
                assert_eq!(t.to_string(), v);
                assert_eq!(
                    serde_json::to_string(t).unwrap(),
                    serde_json::to_string(v).unwrap()
                );
                assert_eq!(t, &kinds[0]);
            }
        }
        assert_eq!(
            std::mem::size_of::<Option<Text>>(),
            std::mem::size_of::<Option<String>>()
        );
    }
}
