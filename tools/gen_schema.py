#!/usr/bin/env python3
"""Generate eligo's schema files (schemas/) from the pyx12 maps.

Usage (from the repository root):

    python3 tools/gen_schema.py [MAPS_DIR] [--out DIR] [--check]

MAPS_DIR defaults to ../shared/reference/pyx12-maps. The script reads the pyx12 4.0.0 maps
(BSD licence) and writes eligo's own, self-contained schema files:

    schemas/x12/834.005010X220A1.json   834 implementation guide (loops, segments, elements, codes)
    schemas/x12/999.005010X231A1.json   999 implementation guide, same format
    schemas/x12/segment-ids.json        X12 005010 segment identifiers (code source 77)
    schemas/codesets/states.json        external code set for N402 (DE 156)
    schemas/codesets/countries.json     external code set for N404 (DE 26), ISO 3166-1 alpha-2

The corrections applied to pyx12's data (docs/x12-834.md section 6) are code, below, each one
checking that the map still has the defect it fixes, so a changed map fails loudly instead of
being "corrected" twice or in the wrong place. Output is deterministic: same maps, same bytes.

--check regenerates in memory and compares with the files on disk (exit status 1 on any
difference), for CI. Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAPS = Path("../shared/reference/pyx12-maps")
SCHEMA_FORMAT = "eligo-x12-schema/1"
AS_OF = "2026-11-23"  # date the hand-kept code sets below were last reviewed

# pyx12 <valid_codes external="..."> name -> eligo code set id (schemas/codesets/<id>.json)
EXTERNAL_CODESETS = {"states": "states", "country": "countries"}

# Element types whose values are member data (PHI) when they sit inside a PHI loop.
PHI_TYPES = {"AN", "DT", "R"}  # plus every numeric type N, N0..N9 (see is_phi_type)
# ID-typed data elements that are PHI all the same: DE 116 Postal Code (N403) is typed ID in
# the dictionary but is part of the member's address (a HIPAA identifier below state level).
PHI_ID_ELEMENTS = {"116"}


class MapError(Exception):
    """The map does not look the way this generator expects."""


def expect(condition: bool, message: str) -> None:
    """A check that survives python -O (unlike assert)."""
    if not condition:
        raise MapError(message)


# --------------------------------------------------------------------------------------------
# Reading the maps
# --------------------------------------------------------------------------------------------

def field(node: ET.Element, tag: str, default: str | None = None) -> str | None:
    """Value of a map field: a child element <tag> or, as map.xsd also allows, an attribute."""
    child = node.find(tag)
    if child is not None and child.text is not None:
        return child.text.strip()
    if tag in node.attrib:
        return node.attrib[tag].strip()
    return default


def required(node: ET.Element, tag: str, where: str) -> str:
    value = field(node, tag)
    if value is None or value == "":
        raise MapError(f"{where}: missing <{tag}>")
    return value


def count_or_unbounded(value: str, where: str) -> int | None:
    """'>1' means unbounded (null in the schema); otherwise a positive integer."""
    if value == ">1":
        return None
    if not value.isdigit() or int(value) < 1:
        raise MapError(f"{where}: bad repeat/max_use {value!r}")
    return int(value)


def load_dataele(path: Path) -> dict[str, dict]:
    table = {}
    for node in ET.parse(path).getroot().iter("data_ele"):
        num = node.get("ele_num")
        if num is None:
            continue
        table[num] = {
            "type": node.get("data_type"),
            "min": int(node.get("min_len")),
            "max": int(node.get("max_len")),
            "name": node.get("name"),
        }
    return table


def pyx12_version(maps_dir: Path) -> str:
    readme = maps_dir / "README.md"
    if readme.exists():
        m = re.search(r"pyx12 (\d+\.\d+\.\d+)", readme.read_text(encoding="utf-8"))
        if m:
            return m.group(1)
    return "4.0.0"


SYNTAX_RE = re.compile(r"^([PRECL])((?:[0-9]{2}){2,20})$")


def parse_syntax(note: str, where: str) -> dict:
    m = SYNTAX_RE.match(note)
    if not m:
        raise MapError(f"{where}: bad syntax note {note!r}")
    digits = m.group(2)
    return {"kind": m.group(1), "seqs": [int(digits[i:i + 2]) for i in range(0, len(digits), 2)]}


def is_phi_type(data_type: str) -> bool:
    return data_type in PHI_TYPES or re.fullmatch(r"N[0-9]?", data_type) is not None


class Converter:
    """Turns one pyx12 transaction map into the eligo schema tree."""

    def __init__(self, dataele: dict[str, dict], phi_loops: set[str]):
        self.dataele = dataele
        self.phi_loops = phi_loops
        self.warnings: list[str] = []

    # -- loops ----------------------------------------------------------------------------
    def loop(self, node: ET.Element, phi: bool) -> dict:
        loop_id = node.get("xid")
        where = f"loop {loop_id}"
        phi = phi or loop_id in self.phi_loops
        return {"loop": {
            "id": loop_id,
            "name": required(node, "name", where),
            "usage": required(node, "usage", where),
            "pos": int(required(node, "pos", where)),
            "repeat": count_or_unbounded(required(node, "repeat", where), where),
            "children": self.children(node, phi),
        }}

    def children(self, node: ET.Element, phi: bool) -> list[dict]:
        out = []
        for child in node:
            if child.tag == "loop":
                if child.get("type") == "wrapper":
                    # HEADER / DETAIL / FOOTER: table wrappers, not X12 loops.
                    out.extend(self.children(child, phi or child.get("xid") in self.phi_loops))
                else:
                    out.append(self.loop(child, phi))
            elif child.tag == "segment":
                out.append(self.segment(child, phi))
        return out

    # -- segments -------------------------------------------------------------------------
    def segment(self, node: ET.Element, phi: bool) -> dict:
        seg_id = node.get("xid")
        name = required(node, "name", f"segment {seg_id}")
        where = f"segment {seg_id} ({name})"
        elements = [self.element(child, seg_id, phi, where)
                    for child in node if child.tag in ("element", "composite")]
        check_seqs(elements, where)
        set_format_qualifiers(elements)
        return {"segment": {
            "id": seg_id,
            "name": name,
            "usage": required(node, "usage", where),
            "pos": int(required(node, "pos", where)),
            "max_use": count_or_unbounded(required(node, "max_use", where), where),
            "syntax": [parse_syntax(s.text.strip(), where) for s in node.findall("syntax")],
            "elements": elements,
        }}

    # -- elements and composites ------------------------------------------------------------
    def element(self, node: ET.Element, seg_id: str, phi: bool, where: str,
                parent_id: str | None = None) -> dict:
        seq = int(required(node, "seq", where))
        elem_id = node.get("xid") or (f"{parent_id}-{seq:02d}" if parent_id
                                      else f"{seg_id}{seq:02d}")
        where = f"{where} {elem_id}"
        de = required(node, "data_ele", where)
        repeat = count_or_unbounded(field(node, "repeat", "1"), where)
        out = {
            "seq": seq,
            "id": elem_id,
            "de": de,
            "name": required(node, "name", where),
            "usage": required(node, "usage", where),
        }
        if node.tag == "composite":
            components = [self.element(c, seg_id, phi, where, parent_id=elem_id)
                          for c in node.findall("element")]
            check_seqs(components, where)
            set_format_qualifiers(components)
            if node.find("valid_codes") is not None:
                raise MapError(f"{where}: composite with valid_codes")
            out.update({
                "type": "C", "min": 0, "max": 0, "repeat": repeat,
                "codes": None, "external": None,
                # A composite is PHI if any of its components is.
                "phi": any(c["phi"] for c in components),
                "format_qualifier": None,
                "components": components,
            })
            return out
        info = self.dataele.get(de)
        if info is None:
            raise MapError(f"{where}: data element {de} not in dataele.xml")
        codes, external = self.codes(node, where)
        out.update({
            "type": info["type"], "min": info["min"], "max": info["max"], "repeat": repeat,
            "codes": codes, "external": external,
            "phi": phi and (is_phi_type(info["type"]) or de in PHI_ID_ELEMENTS),
            "format_qualifier": None,
            "components": None,
        })
        return out

    def codes(self, node: ET.Element, where: str) -> tuple[list[str] | None, str | None]:
        vc = node.find("valid_codes")
        if vc is None:
            return None, None
        values = [c.text.strip() for c in vc.findall("code") if c.text and c.text.strip()]
        ext = vc.get("external")
        if ext is not None:
            if ext not in EXTERNAL_CODESETS:
                raise MapError(f"{where}: unknown external code set {ext!r}")
            if values:
                raise MapError(f"{where}: external code set and explicit codes")
            return None, EXTERNAL_CODESETS[ext]
        if len(set(values)) != len(values):
            self.warnings.append(f"{where}: duplicate codes removed")
        return (sorted(set(values)) or None), None


def check_seqs(elements: list[dict], where: str) -> None:
    seqs = [e["seq"] for e in elements]
    if seqs != list(range(1, len(seqs) + 1)):
        raise MapError(f"{where}: element sequence {seqs} is not 1..n")


def set_format_qualifiers(elements: list[dict]) -> None:
    """DE 1251 (Date Time Period) is read with the nearest preceding DE 1250 qualifier."""
    for e in elements:
        if e["de"] == "1251":
            quals = [q["seq"] for q in elements if q["de"] == "1250" and q["seq"] < e["seq"]]
            e["format_qualifier"] = max(quals) if quals else None


def find_loop(root: ET.Element, loop_id: str) -> ET.Element:
    found = [n for n in root.iter("loop") if n.get("xid") == loop_id]
    if len(found) != 1:
        raise MapError(f"expected one {loop_id} loop, found {len(found)}")
    return found[0]


# --------------------------------------------------------------------------------------------
# Walking the generated tree
# --------------------------------------------------------------------------------------------

def walk(loop: dict, path: tuple[str, ...] = ()):
    """Yield (loop path, segment) for every segment, in schema order."""
    path = path + (loop["id"],)
    for child in loop["children"]:
        if "loop" in child:
            yield from walk(child["loop"], path)
        else:
            yield path, child["segment"]


def all_loops(loop: dict):
    yield loop
    for child in loop["children"]:
        if "loop" in child:
            yield from all_loops(child["loop"])


def find_segment(root: dict, loop_id: str, seg_id: str, qualifier: str | None = None) -> dict:
    """The segment seg_id directly in loop_id; qualifier picks by a code of its first element."""
    hits = []
    for path, seg in walk(root):
        if path[-1] != loop_id or seg["id"] != seg_id:
            continue
        first = seg["elements"][0]["codes"] or []
        if qualifier is None or qualifier in first:
            hits.append(seg)
    if len(hits) != 1:
        raise MapError(f"expected one {seg_id} in {loop_id} (qualifier {qualifier}), "
                       f"found {len(hits)}")
    return hits[0]


def element_by_id(seg: dict, elem_id: str) -> dict:
    for e in seg["elements"]:
        if e["id"] == elem_id:
            return e
        for c in e["components"] or []:
            if c["id"] == elem_id:
                return c
    raise MapError(f"{seg['id']}: no element {elem_id}")


# --------------------------------------------------------------------------------------------
# Corrections (docs/x12-834.md section 6). Each returns the human-readable line for the
# schema's "corrections" list and fails if the map no longer has the defect.
# --------------------------------------------------------------------------------------------

def fix_2100f_per07_fx(root: dict) -> str:
    per = find_segment(root, "2100F", "PER")
    per03, per07 = element_by_id(per, "PER03"), element_by_id(per, "PER07")
    if "FX" in per07["codes"] or "FX" not in per03["codes"]:
        raise MapError("2100F PER07/FX correction no longer applies; review it")
    per07["codes"] = sorted(per07["codes"] + ["FX"])
    return ("2100F PER07 (Communication Number Qualifier): added FX (Facsimile); pyx12 omits it "
            "although PER03/PER05 of the same segment and stupidedi X220A1 allow it "
            "(docs/x12-834.md section 6)")


def fix_2100e_per_name(root: dict) -> str:
    per = find_segment(root, "2100E", "PER")
    if per["name"] != "Member School Commmunications Numbers":
        raise MapError("2100E PER name correction no longer applies; review it")
    per["name"] = "Member School Communications Numbers"
    return "2100E PER name: corrected the typo 'Commmunications' to 'Communications'"


def note_states(root: dict) -> str:
    uses = [e["id"] for _, seg in walk(root) for e in seg["elements"]
            if e["external"] == "states"]
    if not uses:
        raise MapError("no element uses the states code set")
    return ("external code set 'states' (N402): schemas/codesets/states.json is pyx12's list "
            "with PW, UM, NL, NU, QC added and the superseded NF, PQ removed "
            "(docs/x12-834.md section 6, docs/snip-levels.md section 6)")


def note_countries(root: dict) -> str:
    uses = [e["id"] for _, seg in walk(root) for e in seg["elements"]
            if e["external"] == "countries"]
    if not uses:
        raise MapError("no element uses the countries code set")
    return ("external code set 'country' (N404) renamed 'countries': "
            "schemas/codesets/countries.json is the current ISO 3166-1 alpha-2 list, "
            "not pyx12's outdated codes.xml list")


CORRECTIONS_834 = [fix_2100f_per07_fx, fix_2100e_per_name, note_states, note_countries]


# --------------------------------------------------------------------------------------------
# Checks of the generated 834 against docs/x12-834.md section 1 (the guide's structure)
# --------------------------------------------------------------------------------------------

# (loop id, repeat, child loops) -- repeat None = unbounded
EXPECTED_834_LOOPS = ("ST_LOOP", None, [
    ("1000A", 1, []),
    ("1000B", 1, []),
    ("1000C", 2, [("1100C", 1, [])]),
    ("2000", None, [
        ("2100A", 1, []), ("2100B", 1, []), ("2100C", 1, []), ("2100D", 3, []),
        ("2100E", 3, []), ("2100F", 1, []), ("2100G", 13, []), ("2100H", 1, []),
        ("2200", None, []),
        ("2300", 99, [("2310", 30, []), ("2320", 5, [("2330", 3, [])])]),
        ("LS_LOOP", 1, [("2700", None, [("2750", 1, [])])]),
    ]),
])


def loop_shape(loop: dict):
    return (loop["id"], loop["repeat"],
            [loop_shape(c["loop"]) for c in loop["children"] if "loop" in c])


def check_834(root: dict) -> None:
    if loop_shape(root) != EXPECTED_834_LOOPS:
        raise MapError(f"834 loop tree differs from docs/x12-834.md section 1: {loop_shape(root)}")
    segs = [c["segment"]["id"] for c in root["children"] if "segment" in c]
    if segs != ["ST", "BGN", "REF", "DTP", "QTY", "SE"] or root["children"][0].get(
            "segment", {}).get("id") != "ST" or root["children"][-1].get(
            "segment", {}).get("id") != "SE":
        raise MapError(f"834 ST_LOOP segments unexpected: {segs}")
    ins = find_segment(root, "2000", "INS")
    expect(ins["syntax"] == [{"kind": "P", "seqs": [11, 12]}], f"INS syntax {ins['syntax']}")
    expect(element_by_id(ins, "INS12")["format_qualifier"] == 11, "INS12 format_qualifier")
    dmg = find_segment(root, "2100A", "DMG")
    dmg05 = element_by_id(dmg, "DMG05")
    expect(dmg05["type"] == "C" and dmg05["repeat"] == 10 and len(dmg05["components"]) == 3,
           "DMG05 must be a composite of 3 components repeating 10 times")
    expect(element_by_id(dmg, "DMG02")["format_qualifier"] == 1, "DMG02 format_qualifier")
    expect(element_by_id(find_segment(root, "2320", "COB"), "COB04")["repeat"] == 9,
           "COB04 repeat")
    for path, seg in walk(root):
        if seg["id"] == "DTP":
            expect(element_by_id(seg, "DTP03")["format_qualifier"] == 2,
                   f"{path[-1]} DTP03 format_qualifier")
    expect("FX" in element_by_id(find_segment(root, "2100F", "PER"), "PER07")["codes"],
           "2100F PER07 FX")
    nm1 = find_segment(root, "2100A", "NM1")
    expect(element_by_id(nm1, "NM103")["phi"] and not element_by_id(nm1, "NM101")["phi"],
           "2100A NM1 phi flags")
    expect(element_by_id(find_segment(root, "2100A", "N4"), "N403")["phi"], "N403 phi")
    expect(not any(e["phi"] for path, seg in walk(root) if "2000" not in path
                   for e in seg["elements"]), "phi outside loop 2000")


def check_999(root: dict) -> None:
    segs = [c["segment"]["id"] for c in root["children"] if "segment" in c]
    if segs[0] != "ST" or segs[-1] != "SE":
        raise MapError(f"999 ST_LOOP must start with ST and end with SE: {segs}")
    expect(not any(e["phi"] for _, s in walk(root) for e in s["elements"]), "999 phi")


# --------------------------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------------------------

TRANSACTIONS = [
    {
        "map": "834.5010.X220.A1.xml",
        "out": "x12/834.005010X220A1.json",
        "transaction": "834",
        "implementation": "005010X220A1",
        "functional_id": "BE",
        "phi_loops": {"2000"},  # member data: loop 2000 and everything inside it
        "corrections": CORRECTIONS_834,
        "check": check_834,
    },
    {
        "map": "999.5010X231.A1.xml",
        "out": "x12/999.005010X231A1.json",
        "transaction": "999",
        "implementation": "005010X231A1",
        "functional_id": "FA",
        "phi_loops": set(),
        "corrections": [],
        "check": check_999,
    },
]


def build_transaction(maps_dir: Path, spec: dict, dataele: dict, version: str,
                      warnings: list[str]) -> dict:
    tree = ET.parse(maps_dir / spec["map"]).getroot()
    name = required(tree, "name", spec["map"])
    xid = tree.get("xid", "")
    if xid and name.endswith(" " + xid):
        name = name[: -len(xid) - 1]
    if spec["implementation"] not in name:
        name = f"{name} {spec['implementation']}"

    conv = Converter(dataele, spec["phi_loops"])
    root = conv.loop(find_loop(tree, "ST_LOOP"), phi=False)["loop"]
    warnings.extend(f"{spec['map']}: {w}" for w in conv.warnings)

    st = find_segment(root, "ST_LOOP", "ST")
    if element_by_id(st, "ST01")["codes"] != [spec["transaction"]] or \
            element_by_id(st, "ST03")["codes"] != [spec["implementation"]]:
        raise MapError(f"{spec['map']}: ST01/ST03 do not match {spec['transaction']}"
                       f"/{spec['implementation']}")

    corrections = [fix(root) for fix in spec["corrections"]]
    spec["check"](root)
    return {
        "format": SCHEMA_FORMAT,
        "transaction": spec["transaction"],
        "implementation": spec["implementation"],
        "functional_id": spec["functional_id"],
        "name": name,
        "source": (f"generated by tools/gen_schema.py from pyx12 {version} {spec['map']} (BSD) "
                   f"and dataele.xml, with the corrections listed in corrections"),
        "corrections": corrections,
        "root": root,
    }


# --------------------------------------------------------------------------------------------
# External code sets
# --------------------------------------------------------------------------------------------

def load_codeset(path: Path, codeset_id: str) -> list[str]:
    for cs in ET.parse(path).getroot().iter("codeset"):
        if field(cs, "id") == codeset_id:
            return [c.text.strip() for c in cs.iter("code") if c.text and c.text.strip()]
    raise MapError(f"codes.xml: no code set {codeset_id!r}")


STATES_ADD = {
    "PW": "Palau",
    "UM": "U.S. Minor Outlying Islands",
    "NL": "Newfoundland and Labrador (replaced NF in 2002)",
    "NU": "Nunavut (created 1999)",
    "QC": "Quebec (replaced PQ)",
}
STATES_DROP = {"NF": "Newfoundland, now NL", "PQ": "Quebec, now QC"}


def build_states(pyx12_states: list[str], version: str) -> dict:
    missing = set(STATES_DROP) - set(pyx12_states)
    present = set(STATES_ADD) & set(pyx12_states)
    if missing or present:
        raise MapError(f"states correction no longer applies (missing {missing}, "
                       f"already present {present})")
    codes = sorted((set(pyx12_states) - set(STATES_DROP)) | set(STATES_ADD))
    return {
        "id": "states",
        "name": "US State, Territory, Military and Canadian Province Codes (X12 DE 156)",
        "as_of": AS_OF,
        "source": (f"pyx12 {version} codes.xml 'states', corrected per docs/x12-834.md section 6 "
                   "and docs/snip-levels.md section 6: added PW (Palau), UM (U.S. Minor Outlying "
                   "Islands), NL (Newfoundland and Labrador), NU (Nunavut), QC (Quebec); removed "
                   "NF and PQ, the superseded codes for Newfoundland and Quebec (replaced by NL "
                   "and QC). Generated by tools/gen_schema.py."),
        "codes": codes,
    }


# ISO 3166-1 alpha-2, all officially assigned codes (249). Kept by hand; cross-checked against
# pyx12's codes.xml at generation time. User-assigned codes (e.g. XK) are not included.
ISO_3166_1_ALPHA2 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
DE DJ DK DM DO DZ
EC EE EG EH ER ES ET
FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
HK HM HN HR HT HU
ID IE IL IM IN IO IQ IR IS IT
JE JM JO JP
KE KG KH KI KM KN KP KR KW KY KZ
LA LB LC LI LK LR LS LT LU LV LY
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
NA NC NE NF NG NI NL NO NP NR NU NZ
OM
PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA
RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
UA UG UM US UY UZ
VA VC VE VG VI VN VU
WF WS
YE YT
ZA ZM ZW
""".split()

# Codes pyx12 still lists that ISO has withdrawn (transitionally reserved, not assigned).
ISO_WITHDRAWN = {
    "AN": "Netherlands Antilles (withdrawn 2010: BQ, CW, SX)",
    "TP": "East Timor (now TL)",
    "YU": "Yugoslavia (withdrawn 2003)",
    "CS": "Serbia and Montenegro (withdrawn 2006: RS, ME)",
    "ZR": "Zaire (now CD)",
}


def build_countries(pyx12_countries: list[str], version: str) -> tuple[dict, list[str]]:
    codes = sorted(set(ISO_3166_1_ALPHA2))
    if len(codes) != len(ISO_3166_1_ALPHA2) or len(codes) != 249:
        raise MapError(f"ISO 3166-1 list: expected 249 unique codes, have {len(codes)}")
    ours, theirs = set(codes), set(pyx12_countries)
    unexplained = theirs - ours - set(ISO_WITHDRAWN)
    if unexplained:
        raise MapError(f"codes.xml countries not in the ISO list: {sorted(unexplained)}")
    removed = sorted(theirs - ours)
    added = sorted(ours - theirs)
    notes = [f"countries: pyx12 has {len(theirs)}, ISO list {len(ours)}; "
             f"not in pyx12: {' '.join(added)}; withdrawn, kept by pyx12: {' '.join(removed)}"]
    return {
        "id": "countries",
        "name": "Country Codes (ISO 3166-1 alpha-2, X12 DE 26)",
        "as_of": AS_OF,
        "source": (f"ISO 3166-1 alpha-2, all {len(codes)} officially assigned codes, kept in "
                   f"tools/gen_schema.py and cross-checked against pyx12 {version} codes.xml "
                   f"'country' (outdated: it lacks {' '.join(added)} and still has the withdrawn "
                   f"{' '.join(removed)}). User-assigned codes such as XK are not included."),
        "codes": codes,
    }, notes


# --------------------------------------------------------------------------------------------
# X12 segment identifiers (code source 77)
# --------------------------------------------------------------------------------------------

# Segment IDs beyond those read from the maps. Grouped by where they are used; every group is
# a set of 005010 segment IDs known from the X12 directory, the HIPAA TR3s and stupidedi's
# 005010 segment definitions. Not exhaustive: the X12 directory has more.
SEGMENT_GROUPS = {
    "envelope and acknowledgments (997, 999, TA1)":
        "ISA IEA GS GE ST SE TA1 BIN BDS AK1 AK2 AK3 AK4 AK5 AK9 IK3 IK4 IK5 CTX",
    "270/271 eligibility":
        "BHT HL TRN NM1 REF N3 N4 PRV DMG INS HI DTP EQ AMT III AAA PER EB HSD MSG LS LE MPI",
    "276/277 claim status, 277CA":
        "BHT HL TRN NM1 REF DMG DTP SVC STC QTY AMT PER",
    "278 services review":
        "BHT HL UM HCR REF DTP HI HSD CRC CL1 CR1 CR2 CR5 CR6 CR7 CR8 PWK MSG NM1 N3 N4 PER "
        "AAA PRV DMG INS SV1 SV2 SV3 TOO TRN",
    "820 payment order/remittance":
        "BPR TRN CUR REF DTM N1 N2 N3 N4 PER ENT NM1 RMR IT1 ADX NTE DED TXP RYL SAC",
    "834 (TR3 and base standard)":
        "BGN REF DTP QTY N1 N2 N3 N4 PER ACT INS NM1 DMG PM EC ICM AMT HLH HI LUI DSB AD1 HD IDC "
        "LX PRV PLA COB LC BEN FSA RP INV K3 REL NX1 FC ENT AIN LS LE",
    "835 payment/advice":
        "BPR TRN CUR REF DTM N1 N3 N4 PER RDM LX TS3 TS2 CLP CAS NM1 MIA MOA AMT QTY SVC LQ PLB",
    "837 claims (P/I/D)":
        "BHT HL PRV CUR NM1 N2 N3 N4 REF PER SBR PAT DMG CLM DTP CL1 DN1 DN2 PWK CN1 AMT K3 NTE "
        "CR1 CR2 CR3 CR4 CRC HI HCP OI MIA MOA LX SV1 SV2 SV3 SV4 SV5 SV6 SV7 TOO PS1 MEA LIN "
        "CTP SVD CAS LQ FRM QTY",
    "275 attachments, 824 application advice, 864 text message":
        "EFI OTI TED RED BMG MIT",
    "other segments defined in stupidedi 005010":
        "ASM ATN EMS FA1 FA2 G53 G61 G62 H1 IMM L0 L5 LOC PCT PEN PID PYD RPA SLN TXI UR VEH",
    "orders, invoices, ship notices, catalogs, planning (850/855/860/865/810/856/832/846/830/"
    "862/867/870/852)":
        "BEG BAK BCH BCA BIG BSN BCT BIA BFR BSS BPT BSR BQT BQR BRA BCD CDD XQ ZA "
        "PO1 PO3 PO4 POC ACK CTT ISS TDS CAD IT3 IT8 ITD FOB TAX CSH TC2 DIS INC LDT SI PKG PAL "
        "TD1 TD3 TD4 TD5 MAN CTB N9 NX2 SCH SDQ SHP FST ATH JIT PRF SN1 CLD TSD ETD GF YNQ LM "
        "SPI ADV PAM BAL DTM PTD",
    "transportation and warehouse (204/210/214/990/940/943/944/945/947/315)":
        "B1 B2 B2A B3 B4 B10 L1 L3 L4 L7 L11 LAD MS1 MS2 MS3 AT5 AT7 AT8 N7 S5 OID PLD G69 G72 K1 "
        "Q2 Q7 R4 V1 H3 SPO W01 W03 W04 W05 W06 W07 W12 W14 W15 W17 W19 W27 W66 W76 "
        "LH1 LH2 LH3 LH4 LHR LHT LFH LEP",
}

SEGMENT_ID_RE = re.compile(r"^[A-Z][A-Z0-9]{1,2}$")


def build_segment_ids(map_segment_ids: set[str]) -> dict:
    ids = set(map_segment_ids)
    for group in SEGMENT_GROUPS.values():
        ids.update(group.split())
    bad = sorted(i for i in ids if not SEGMENT_ID_RE.match(i))
    if bad:
        raise MapError(f"malformed segment IDs: {bad}")
    return {
        "source": ("X12 005010 segment identifiers (code source 77), compiled by "
                   "tools/gen_schema.py: every segment of the pyx12 834, 999 and 00501 control "
                   "maps, plus hand-kept lists of the segments of the HIPAA 5010 transactions "
                   "(270/271, 275, 276/277, 278, 820, 834 TR3 and base standard, 835, 837 P/I/D, "
                   "997, 999, TA1) and common X12 supply-chain and transportation segments. "
                   "Not exhaustive: an ID missing here may still be an X12 segment."),
        "ids": sorted(ids),
    }


def map_segment_ids(path: Path) -> set[str]:
    return {n.get("xid") for n in ET.parse(path).getroot().iter("segment")}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def render(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def counts(root: dict) -> dict:
    loops = sum(1 for _ in all_loops(root)) - 1  # not counting ST_LOOP itself
    segments = elements = components = 0
    for _, seg in walk(root):
        segments += 1
        for e in seg["elements"]:
            elements += 1
            components += len(e["components"] or [])
    return {"loops": loops, "segments": segments, "elements": elements,
            "components": components}


def generate(maps_dir: Path) -> tuple[dict[str, str], list[str]]:
    """Returns {relative output path: file text} and informational notes."""
    version = pyx12_version(maps_dir)
    dataele = load_dataele(maps_dir / "dataele.xml")
    files: dict[str, str] = {}
    notes: list[str] = []
    seg_ids: set[str] = set()
    for spec in TRANSACTIONS:
        schema = build_transaction(maps_dir, spec, dataele, version, notes)
        files[spec["out"]] = render(schema)
        c = counts(schema["root"])
        notes.append(f"{spec['out']}: {c['loops']} loops, {c['segments']} segments, "
                     f"{c['elements']} elements, {c['components']} components, "
                     f"{len(schema['corrections'])} corrections")
        seg_ids |= map_segment_ids(maps_dir / spec["map"])
    seg_ids |= map_segment_ids(maps_dir / "x12.control.00501.xml")

    codes_xml = maps_dir / "codes.xml"
    states = build_states(load_codeset(codes_xml, "states"), version)
    countries, country_notes = build_countries(load_codeset(codes_xml, "country"), version)
    notes.extend(country_notes)
    notes.append(f"states: {len(states['codes'])} codes")
    files["codesets/states.json"] = render(states)
    files["codesets/countries.json"] = render(countries)
    segment_ids = build_segment_ids(seg_ids)
    notes.append(f"segment-ids: {len(segment_ids['ids'])} ids")
    files["x12/segment-ids.json"] = render(segment_ids)
    return files, notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("maps", nargs="?", type=Path, default=None,
                    help=f"pyx12 maps directory (default: {DEFAULT_MAPS})")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "schemas",
                    help="output directory (default: schemas/ of this repository)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the files on disk differ from the output")
    args = ap.parse_args(argv)
    maps_dir = args.maps if args.maps is not None else DEFAULT_MAPS
    if not maps_dir.is_dir() and args.maps is None:
        maps_dir = REPO_ROOT / DEFAULT_MAPS
    if not (maps_dir / "dataele.xml").is_file():
        print(f"gen_schema: {maps_dir}: not a pyx12 maps directory", file=sys.stderr)
        return 2
    try:
        files, notes = generate(maps_dir)
    except MapError as exc:
        print(f"gen_schema: {exc}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"gen_schema: {note}", file=sys.stderr)
    stale = []
    for rel, text in sorted(files.items()):
        path = args.out / rel
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    if stale:
        print(f"gen_schema: out of date: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
