#!/usr/bin/env python3
"""Write eligo's own X12 834 sample files under samples/834/.

Everything here is fictional: employer ACME MANUFACTURING (ISA06/GS02 ACMEHR), receiver
ELIGO HEALTH PLAN (ISA08/GS03 ELIGOPLAN), groups GRP1001.., Connecticut addresses, member
identifiers in the 9xx area (900112222 ...), which no real SSN uses. Member identifiers are sent
with NM108 = ZZ (mutually defined), not 34 (SSN): the 9xx area is not a valid SSN area
(snip-levels.md section 6), so sending them as SSNs would trigger the level-5 SSN check.

The script is deterministic and uses the standard library only. It computes ISA padding, SE01,
GE01 and IEA01, then asserts that each clean envelope is consistent; the error files are built by
overriding exactly one thing. Run from anywhere:

    python3 tools/make_samples.py              # (re)write samples/834/
    python3 tools/make_samples.py --positions  # also print segment positions per set

Delimiters: element '*', component ':', repetition '^', segment terminator '~' followed by LF.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "samples", "834")
ERR = os.path.join(OUT, "errors")

SENDER = "ACMEHR"
RECEIVER = "ELIGOPLAN"
DATE8 = "20250110"
DATE6 = "250110"
TIME = "0830"
GROUP = "GRP1001"
SPONSOR = "N1*P5*ACME MANUFACTURING*FI*069990001"
PAYER = "N1*IN*ELIGO HEALTH PLAN*FI*069990002"
# 7-digit broker licence (level-7 rule T14 pads it to 9 digits with "00"; not an X12 error).
BROKER = "N1*BO*NUTMEG BENEFITS GROUP*94*4471203"


# --------------------------------------------------------------------------------------------
# helpers


def npi(base9):
    """Return a 10-digit NPI: base9 + Luhn check digit computed over '80840' + base9."""
    assert len(base9) == 9 and base9.isdigit()
    digits = [int(c) for c in "80840" + base9]
    total = 0
    # Luhn: double every second digit from the right of the payload (check digit excluded).
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    check = (10 - total % 10) % 10
    return base9 + str(check)


NPI_WELBY = npi("199000001")
NPI_LINDQVIST = npi("199000002")
NPI_PATEL = npi("199000003")
NPI_CLINIC = npi("199000004")


def check_segment(s):
    assert not s.endswith("*"), "trailing element separator: " + s
    assert "~" not in s and "\n" not in s, s
    assert s.split("*")[0].isalnum(), s


def isa(ctl, ack="1", usage="T"):
    s = (
        "ISA*00*" + " " * 10 + "*00*" + " " * 10
        + "*ZZ*" + SENDER.ljust(15) + "*ZZ*" + RECEIVER.ljust(15)
        + "*" + DATE6 + "*" + TIME + "*^*00501*" + "%09d" % ctl + "*" + ack + "*" + usage + "*:"
    )
    assert len(s) + 1 == 106, len(s)
    return s


def transaction(st02, body, ts="834", conv="005010X220A1", se01=None):
    segs = ["ST*%s*%s*%s" % (ts, st02, conv)] + list(body)
    count = len(segs) + 1
    segs.append("SE*%d*%s" % (count if se01 is None else se01, st02))
    return segs


def group(gs06, sets, gs01="BE", version="005010X220A1", ge01=None, ge02=None):
    segs = ["GS*%s*%s*%s*%s*%s*%d*X*%s" % (gs01, SENDER, RECEIVER, DATE8, TIME, gs06, version)]
    for s in sets:
        segs.extend(s)
    segs.append("GE*%d*%d" % (len(sets) if ge01 is None else ge01, gs06 if ge02 is None else ge02))
    return segs


def interchange(ctl, groups, iea01=None, iea02=None, omit_iea=False):
    segs = [isa(ctl)]
    for g in groups:
        segs.extend(g)
    if not omit_iea:
        segs.append("IEA*%d*%09d" % (len(groups) if iea01 is None else iea01,
                                     ctl if iea02 is None else iea02))
    return segs


def render(segs):
    for s in segs:
        check_segment(s)
    return "".join(s + "~\n" for s in segs)


def qty(members):
    """QTY control totals computed from the INS segments of the member loops."""
    ins = [s for s in members if s.startswith("INS*")]
    et = sum(1 for s in ins if s.split("*")[1] == "Y")
    dt = sum(1 for s in ins if s.split("*")[1] == "N")
    return ["QTY*ET*%d" % et, "QTY*DT*%d" % dt, "QTY*TO*%d" % len(ins)]


def header(bgn02, action="2", dtp007=None, totals=None, broker=False, ref38=True):
    segs = ["BGN*00*%s*%s*%s****%s" % (bgn02, DATE8, TIME, action)]
    if ref38:
        segs.append("REF*38*" + GROUP)
    if dtp007:
        segs.append("DTP*007*D8*" + dtp007)
    if totals:
        segs.extend(totals)
    segs.append(SPONSOR)
    segs.append(PAYER)
    if broker:
        segs.append(BROKER)
    return segs


def n1_p3(last, first, npi10, relationship):
    return "NM1*P3*1*%s*%s****XX*%s*%s" % (last, first, npi10, relationship)


# --------------------------------------------------------------------------------------------
# clean-change.x12 : set 0001 (new family) and set 0002 (maintenance)


def set1_new_family():
    sub = "900112222"
    members = [
        # subscriber
        "INS*Y*18*021*28*A***FT",
        "REF*0F*" + sub,
        "DTP*336*D8*20250106",
        "DTP*356*D8*20250201",
        "NM1*IL*1*KOWALSKI*DANIEL*J***ZZ*" + sub,
        "PER*IP**HP*8605550142",
        "N3*118 FRANKLIN AVE*APT 3",
        "N4*HARTFORD*CT*06114",
        "DMG*D8*19840303*M*M",
        "HD*021**HLT*HLT GOLD 1000*FAM",
        "DTP*348*D8*20250201",
        "LX*1",
        n1_p3("WELBY", "MARCUS", NPI_WELBY, "72"),
        "HD*021**DEN*DENTAL PLUS*FAM",
        "DTP*348*D8*20250201",
        "LS*2700",
        "LX*1",
        "N1*75*DIVISION",
        "REF*19*ASSEMBLY",
        "DTP*007*D8*20250201",
        "LE*2700",
        # spouse
        "INS*N*01*021*28*A",
        "REF*0F*" + sub,
        "NM1*IL*1*KOWALSKI*MARIA****ZZ*900113333",
        "DMG*D8*19860911*F*M",
        "HD*021**HLT*HLT GOLD 1000",
        "DTP*348*D8*20250201",
        "LX*1",
        n1_p3("WELBY", "MARCUS", NPI_WELBY, "72"),
        "HD*021**DEN*DENTAL PLUS",
        "DTP*348*D8*20250201",
        # child
        "INS*N*19*021*28*A",
        "REF*0F*" + sub,
        "NM1*IL*1*KOWALSKI*SOFIA****ZZ*900114444",
        "DMG*D8*20160522*F",
        "HD*021**HLT*HLT GOLD 1000",
        "DTP*348*D8*20250201",
        "LX*1",
        n1_p3("LINDQVIST", "ASTRID", NPI_LINDQVIST, "72"),
        "HD*021**DEN*DENTAL PLUS",
        "DTP*348*D8*20250201",
    ]
    body = header("ACME250110CHG1", "2", dtp007="20250201", totals=qty(members), broker=True)
    return transaction("0001", body + members)


def set2_maintenance():
    members = [
        # (a) address change - no 2300, member-level DTP*303
        "INS*Y*18*001*43*A***FT",
        "REF*0F*900221111",
        "DTP*303*D8*20250201",
        "NM1*IL*1*OKAFOR*GRACE****ZZ*900221111",
        "N3*77 WASHINGTON ST",
        "N4*MIDDLETOWN*CT*06457",
        # (b) name change - corrected name in 2100A (NM1*74), prior name in 2100B (NM1*70)
        "INS*Y*18*001*25*A***FT",
        "REF*0F*900222222",
        "DTP*303*D8*20250201",
        "NM1*74*1*NGUYEN-BRADLEY*LINDA****ZZ*900222222",
        "DMG*D8*19910717*F*M",
        "NM1*70*1*NGUYEN*LINDA****ZZ*900222222",
        # (c) PCP change - HD*001 + 2310 NM1*P3 + PLA
        "INS*Y*18*001*15*A***FT",
        "REF*0F*900223333",
        "NM1*IL*1*RIVERA*CARLOS****ZZ*900223333",
        "HD*001**HLT*HLT GOLD 1000*EMP",
        "DTP*303*D8*20250301",
        "LX*1",
        n1_p3("PATEL", "ANJALI", NPI_PATEL, "26"),
        "N3*45 CHURCH ST",
        "N4*NEW HAVEN*CT*06510",
        "PLA*2*1P*20250301**AH",
        # (d) coverage termination - HD*024 + DTP*349
        "INS*Y*18*001*14*A***FT",
        "REF*0F*900224444",
        "NM1*IL*1*BERGSTROM*ERIK****ZZ*900224444",
        "HD*024**DEN*DENTAL BASIC*EMP",
        "DTP*349*D8*20250228",
        # (e) member termination - INS03 024 + DTP*357, no 2300
        "INS*Y*18*024*08*A***TE",
        "REF*0F*900225555",
        "DTP*337*D8*20250214",
        "DTP*357*D8*20250228",
        "NM1*IL*1*CHEN*WEI****ZZ*900225555",
        # (f) reinstatement - INS03 025 + HD*025 + DTP*348
        "INS*Y*18*025*41*A***FT",
        "REF*0F*900226666",
        "NM1*IL*1*MORALES*ANA****ZZ*900226666",
        "HD*025**HLT*HLT GOLD 1000*EMP",
        "DTP*348*D8*20250101",
        # (g) ID card order - HD*001 + IDC
        "INS*Y*18*001**A***FT",
        "REF*0F*900227777",
        "NM1*IL*1*FITZGERALD*PATRICK****ZZ*900227777",
        "HD*001**HLT*HLT SILVER 2500*EMP",
        "DTP*303*D8*20250115",
        "IDC*HLT SILVER 2500*H*1*RX",
        # (h) plan and coverage-level change (EMP -> ESP) + the spouse being added
        "INS*Y*18*001*22*A***FT",
        "REF*0F*900228888",
        "NM1*IL*1*OLSEN*THOMAS****ZZ*900228888",
        "HD*001**HLT*HLT PLATINUM 500*ESP",
        "DTP*303*D8*20250201",
        "INS*N*01*021*32*A",
        "REF*0F*900228888",
        "NM1*IL*1*OLSEN*KAREN****ZZ*900228899",
        "DMG*D8*19900402*F*M",
        "HD*021**HLT*HLT PLATINUM 500",
        "DTP*348*D8*20250201",
    ]
    body = header("ACME250110CHG2", "2", totals=qty(members))
    return transaction("0002", body + members)


# --------------------------------------------------------------------------------------------
# clean-full.x12 : BGN08 4, three families, INS03/HD01 030


def full_set():
    members = []

    def sub(ref, last, first, mid, addr, city, zip_, dob, sex, marital, cov):
        name = "%s*%s*%s" % (last, first, mid)  # NM103*NM104*NM105 (NM105 may be empty)
        members.extend([
            "INS*Y*18*030**A***FT",
            "REF*0F*" + ref,
            "NM1*IL*1*%s***ZZ*%s" % (name, ref),
            "N3*" + addr,
            "N4*%s*CT*%s" % (city, zip_),
            "DMG*D8*%s*%s*%s" % (dob, sex, marital),
        ])
        for line, plan, tier, begin in cov:
            members.append("HD*030**%s*%s*%s" % (line, plan, tier))
            members.append("DTP*348*D8*" + begin)

    def dep(ref, rel, last, first, member_id, dob, sex, cov):
        members.extend([
            "INS*N*%s*030**A" % rel,
            "REF*0F*" + ref,
            "NM1*IL*1*%s*%s****ZZ*%s" % (last, first, member_id),
            "DMG*D8*%s*%s" % (dob, sex),
        ])
        for line, plan, begin in cov:
            members.append("HD*030**%s*%s" % (line, plan))
            members.append("DTP*348*D8*" + begin)

    # family 1: subscriber, spouse, two children (different birth dates: no INS17 needed)
    sub("900331111", "DESROSIERS", "PAUL", "A", "9 ELM ST", "GLASTONBURY", "06033",
        "19790125", "M", "M",
        [("HLT", "HLT GOLD 1000", "FAM", "20230101"), ("DEN", "DENTAL PLUS", "FAM", "20230101")])
    dep("900331111", "01", "DESROSIERS", "CLAIRE", "900331122", "19810630", "F",
        [("HLT", "HLT GOLD 1000", "20230101"), ("DEN", "DENTAL PLUS", "20230101")])
    dep("900331111", "19", "DESROSIERS", "LUC", "900331133", "20090814", "M",
        [("HLT", "HLT GOLD 1000", "20230101"), ("DEN", "DENTAL PLUS", "20230101")])
    dep("900331111", "19", "DESROSIERS", "EMMA", "900331144", "20121102", "F",
        [("HLT", "HLT GOLD 1000", "20230101"), ("DEN", "DENTAL PLUS", "20230101")])
    # family 2: subscriber only
    sub("900332222", "WASHINGTON", "DENISE", "", "300 MAIN ST", "NORWALK", "06851",
        "19950219", "F", "I",
        [("HLT", "HLT SILVER 2500", "EMP", "20240701"), ("VIS", "VISION STANDARD", "EMP", "20240701")])
    # family 3: subscriber and one child
    sub("900333333", "ABERNATHY", "JAMES", "R", "41 POND RD", "MANCHESTER", "06040",
        "19870904", "M", "D",
        [("HLT", "HLT SILVER 2500", "ECH", "20240101"), ("DEN", "DENTAL BASIC", "ECH", "20240101")])
    dep("900333333", "19", "ABERNATHY", "NOAH", "900333344", "20180310", "M",
        [("HLT", "HLT SILVER 2500", "20240101"), ("DEN", "DENTAL BASIC", "20240101")])

    body = header("ACME250110FULL", "4", dtp007="20250201", totals=qty(members))
    return transaction("0001", body + members)


# --------------------------------------------------------------------------------------------
# business-rejects.x12 : valid X12 whose members break the plan's business rules (SNIP 6-7)
# with samples/eligo.toml, processed as of 2025-01-11 (docs/rules.md lists the expected rejects)


def business_set():
    members = [
        # (1) BR-PLAN-OFFERED: the OFFICE division does not offer HLT SILVER 2500
        "INS*Y*18*021*28*A***FT",
        "REF*0F*900551111",
        "NM1*IL*1*DUBOIS*HELENE****ZZ*900551111",
        "N3*12 ASYLUM ST",
        "N4*HARTFORD*CT*06103",
        "DMG*D8*19800115*F*M",
        "HD*021**HLT*HLT SILVER 2500*EMP",
        "DTP*348*D8*20250201",
        "LX*1",
        n1_p3("WELBY", "MARCUS", NPI_WELBY, "72"),
        "LS*2700",
        "LX*1",
        "N1*75*DIVISION",
        "REF*19*OFFICE",
        "LE*2700",
        # (2) BR-COVERAGE-DEPENDENTS: ESP with a child, and (3) BR-AGE-LIMIT: the child is 27
        "INS*Y*18*021*28*A***FT",
        "REF*0F*900552222",
        "NM1*IL*1*ESPOSITO*MARCO****ZZ*900552222",
        "N3*5 OAK ST",
        "N4*WATERBURY*CT*06702",
        "DMG*D8*19700303*M*M",
        "HD*021**HLT*HLT PLATINUM 500*ESP",
        "DTP*348*D8*20250201",
        "INS*N*19*021*28*A",
        "REF*0F*900552222",
        "NM1*IL*1*ESPOSITO*LUCA****ZZ*900552233",
        "DMG*D8*19971020*M",
        "HD*021**HLT*HLT PLATINUM 500",
        "DTP*348*D8*20250201",
        # (4) BR-PCP-REQUIRED: HMO add without a PCP
        "INS*Y*18*021*28*A***FT",
        "REF*0F*900553333",
        "NM1*IL*1*OKONKWO*CHIDI****ZZ*900553333",
        "N3*88 PARK RD",
        "N4*WEST HARTFORD*CT*06119",
        "DMG*D8*19920607*M*I",
        "HD*021**HLT*HLT GOLD 1000*EMP",
        "DTP*348*D8*20250201",
        # (5) BR-RETRO-LIMIT: termination 101 days before the file date (window 60)
        "INS*Y*18*024*08*A***TE",
        "REF*0F*900554444",
        "DTP*357*D8*20241001",
        "NM1*IL*1*LARSEN*BRITT****ZZ*900554444",
        # (6) a clean add that goes through (awaiting its Family Health Statement)
        "INS*Y*18*021*28*A***FT",
        "REF*0F*900556666",
        "NM1*IL*1*NAKAMURA*KEN****ZZ*900556666",
        "N3*3 RIVER RD",
        "N4*ESSEX*CT*06426",
        "DMG*D8*19850505*M*M",
        "HD*021**DEN*DENTAL BASIC*EMP",
        "DTP*348*D8*20250201",
    ]
    body = header("ACME250110BIZ1", "2", totals=qty(members), broker=True)
    return transaction("0001", body + members)


# --------------------------------------------------------------------------------------------
# error files: one small, otherwise valid set each


def add_member(sub="900441111", last="HALVORSEN", first="INGRID", dob="19880812", sex="F",
               ins="INS*Y*18*021*28*A***FT", hd="HD*021**HLT*HLT GOLD 1000*EMP",
               n4="N4*NEW BRITAIN*CT*06051", dmg=None, extra_after_dmg=()):
    """A subscriber add with one health coverage (9 segments)."""
    return [
        ins,
        "REF*0F*" + sub,
        "NM1*IL*1*%s*%s****ZZ*%s" % (last, first, sub),
        "N3*16 LINCOLN ST",
        n4,
        dmg or "DMG*D8*%s*%s*I" % (dob, sex),
    ] + list(extra_after_dmg) + [
        hd,
        "DTP*348*D8*20250201",
    ]


def small_set(st02, bgn02, members, totals=None):
    return transaction(st02, header(bgn02, "2", totals=totals) + members)


def error_files():
    files = {}
    ctl = 1100

    def nxt():
        nonlocal ctl
        ctl += 1
        return ctl

    # bad SE01: 14 segments, SE01 says 15
    c = nxt()
    s = transaction("0001", header("ACME250110E01", "2") + add_member(), se01=15)
    files["bad-se-count.x12"] = interchange(c, [group(c, [s])])

    # IEA01 = 2 with one group -> TA1 021
    c = nxt()
    s = small_set("0001", "ACME250110E02", add_member(sub="900442222", last="MBEKI", first="THABO",
                                                       dob="19760101", sex="M"))
    files["ieagroups-mismatch.x12"] = interchange(c, [group(c, [s])], iea01=2)

    # IEA02 != ISA13 -> TA1 001
    c = nxt()
    s = small_set("0001", "ACME250110E03", add_member(sub="900443333", last="KEANE", first="SIOBHAN",
                                                       dob="19920315", sex="F"))
    files["isa-iea-control-mismatch.x12"] = interchange(c, [group(c, [s])], iea02=c + 8000)

    # IEA missing (file ends after GE) -> TA1 023
    c = nxt()
    s = small_set("0001", "ACME250110E04", add_member(sub="900444444", last="PRZYBYLSKI", first="TOMASZ",
                                                       dob="19830521", sex="M"))
    files["missing-iea.x12"] = interchange(c, [group(c, [s])], omit_iea=True)

    # DMG02 impossible date, DMG03 invalid gender - on a child dependent
    c = nxt()
    members = add_member(sub="900445555", last="OYELARAN", first="FEMI", dob="19850409", sex="M",
                         hd="HD*021**HLT*HLT GOLD 1000*ECH") + [
        "INS*N*19*021*28*A",
        "REF*0F*900445555",
        "NM1*IL*1*OYELARAN*ADA****ZZ*900445566",
        "DMG*D8*20230230*X",
        "HD*021**HLT*HLT GOLD 1000",
        "DTP*348*D8*20250201",
    ]
    s = small_set("0001", "ACME250110E05", members)
    files["bad-date-and-gender.x12"] = interchange(c, [group(c, [s])])

    # REF*0F missing in the subscriber loop
    c = nxt()
    members = [x for x in add_member(sub="900446666", last="DUBOIS", first="MARC", dob="19700630",
                                     sex="M") if not x.startswith("REF*0F")]
    s = small_set("0001", "ACME250110E06", members)
    files["missing-ref0f.x12"] = interchange(c, [group(c, [s])])

    # INS03 024 without DTP*357 and without 2300 (rule S6)
    c = nxt()
    members = [
        "INS*Y*18*024*08*A***TE",
        "REF*0F*900447777",
        "NM1*IL*1*VASQUEZ*ROSA****ZZ*900447777",
    ]
    s = small_set("0001", "ACME250110E07", members)
    files["term-without-date.x12"] = interchange(c, [group(c, [s])])

    # INS11 without INS12 (syntax note P1112). A death termination, so that nothing else is odd.
    c = nxt()
    members = [
        "INS*Y*18*024*03*A***TE***D8",
        "REF*0F*900448888",
        "DTP*357*D8*20250107",
        "NM1*IL*1*LINDGREN*HAROLD****ZZ*900448888",
    ]
    s = small_set("0001", "ACME250110E08", members)
    files["ins11-without-ins12.x12"] = interchange(c, [group(c, [s])])

    # two sets with the same ST02 in one group
    c = nxt()
    s1 = small_set("0001", "ACME250110E09A", add_member(sub="900449111", last="FERREIRA", first="LUCAS",
                                                         dob="19940827", sex="M"))
    s2 = small_set("0001", "ACME250110E09B", add_member(sub="900449222", last="OKONKWO", first="CHIDI",
                                                         dob="19810214", sex="M"))
    files["duplicate-st02.x12"] = interchange(c, [group(c, [s1, s2])])

    # an 837 professional claim in an HC group
    c = nxt()
    claim = [
        "BHT*0019*00*ACME837E10*%s*%s*CH" % (DATE8, TIME),
        "NM1*41*2*ACME MANUFACTURING*****46*ACMEHR",
        "PER*IC*BENEFITS OFFICE*TE*8605550100",
        "NM1*40*2*ELIGO HEALTH PLAN*****46*ELIGOPLAN",
        "HL*1**20*1",
        "NM1*85*2*NUTMEG FAMILY MEDICINE*****XX*" + NPI_CLINIC,
        "N3*200 ASYLUM ST",
        "N4*HARTFORD*CT*06103",
        "REF*EI*069990003",
        "HL*2*1*22*0",
        "SBR*P*18*GRP1001******CI",
        "NM1*IL*1*KOWALSKI*DANIEL****MI*900112222",
        "N3*118 FRANKLIN AVE*APT 3",
        "N4*HARTFORD*CT*06114",
        "DMG*D8*19840303*M",
        "NM1*PR*2*ELIGO HEALTH PLAN*****PI*ELIGOPLAN",
        "CLM*ACME0001*125***11:B:1*Y*A*Y*Y",
        "HI*ABK:J069",
        "LX*1",
        "SV1*HC:99213*125*UN*1***1",
        "DTP*472*D8*20250106",
    ]
    s = transaction("0001", claim, ts="837", conv="005010X222A1")
    files["wrong-transaction-837.x12"] = interchange(
        c, [group(c, [s], gs01="HC", version="005010X222A1")])

    # N402 XX, N403 1234
    c = nxt()
    s = small_set("0001", "ACME250110E11", add_member(sub="900451111", last="BRENNAN", first="COLM",
                                                       dob="19900120", sex="M",
                                                       n4="N4*BRISTOL*XX*1234"))
    files["bad-state-zip.x12"] = interchange(c, [group(c, [s])])

    # QTY*TO says 3, the set has 2 INS (only QTY*TO is sent, so only rule B1 applies)
    c = nxt()
    members = add_member(sub="900452222", last="SATO", first="KENJI", dob="19820611", sex="M",
                         hd="HD*021**HLT*HLT GOLD 1000*ESP") + [
        "INS*N*01*021*28*A",
        "REF*0F*900452222",
        "NM1*IL*1*SATO*YUKI****ZZ*900452233",
        "DMG*D8*19840923*F",
        "HD*021**HLT*HLT GOLD 1000",
        "DTP*348*D8*20250201",
    ]
    s = small_set("0001", "ACME250110E12", members, totals=["QTY*TO*3"])
    files["qty-mismatch.x12"] = interchange(c, [group(c, [s])])

    # ZZZ (not an X12 segment) and CLM (X12 segment, not in the 834) inside a member loop
    c = nxt()
    s = small_set("0001", "ACME250110E13", add_member(
        sub="900453333", last="HOLLOWAY", first="GRETA", dob="19770708", sex="F",
        extra_after_dmg=["ZZZ*1", "CLM*ACME0002*125***11:B:1*Y*A*Y*Y"]))
    files["unknown-segment.x12"] = interchange(c, [group(c, [s])])

    # two sets: 0001 valid, 0002 with HD05 = EMQ (not a coverage level code)
    c = nxt()
    s1 = small_set("0001", "ACME250110E14A", add_member(sub="900454444", last="ACHTERBERG", first="JOOST",
                                                         dob="19750303", sex="M"))
    s2 = small_set("0002", "ACME250110E14B", add_member(sub="900454555", last="IBARRA", first="LUZ",
                                                         dob="19930918", sex="F",
                                                         hd="HD*021**HLT*HLT GOLD 1000*EMQ"))
    files["two-sets-one-bad.x12"] = interchange(c, [group(c, [s1, s2])])

    # GE02 != GS06
    c = nxt()
    s = small_set("0001", "ACME250110E15", add_member(sub="900455555", last="KRAUSE", first="HEIDI",
                                                       dob="19860102", sex="F"))
    files["gs-ge-mismatch.x12"] = interchange(c, [group(c, [s], ge02=c + 8000)])

    # transfer cut off in the middle of a segment (no SE, GE, IEA) -> TA1 023
    c = nxt()
    s = small_set("0001", "ACME250110E16", add_member(sub="900456666", last="MORETTI", first="GIULIA",
                                                       dob="19890411", sex="F"))
    segs = interchange(c, [group(c, [s])])
    text = render(segs)
    cut = text.index("N4*NEW BRITAIN") + len("N4*NEW BRI")
    files["truncated-mid-segment.x12"] = text[:cut]

    return files


# --------------------------------------------------------------------------------------------


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, list):
        data = render(data)
    if isinstance(data, str):
        data = data.encode("ascii")
    with open(path, "wb") as f:
        f.write(data)


def positions(name, segs):
    """Print each transaction set's segments with their 999 position (ST = 1)."""
    pos = None
    for s in segs:
        sid = s.split("*")[0]
        if sid == "ST":
            pos = 1
            print("--- %s %s" % (name, s))
        if pos is not None:
            print("%4d  %s" % (pos, s))
            pos += 1
        if sid == "SE":
            pos = None


def main():
    show = "--positions" in sys.argv[1:]
    clean_change = interchange(1001, [group(1001, [set1_new_family(), set2_maintenance()])])
    clean_full = interchange(1002, [group(1002, [full_set()])])
    business = interchange(1003, [group(1003, [business_set()])])
    out = {
        os.path.join(OUT, "clean-change.x12"): clean_change,
        os.path.join(OUT, "clean-full.x12"): clean_full,
        os.path.join(OUT, "business-rejects.x12"): business,
    }
    for name, segs in error_files().items():
        out[os.path.join(ERR, name)] = segs
    out[os.path.join(ERR, "empty.x12")] = b""
    out[os.path.join(ERR, "garbage.bin")] = bytes((i * 37 + 11) % 256 for i in range(200))
    for path in sorted(out):
        write(path, out[path])
        if show and isinstance(out[path], list):
            positions(os.path.relpath(path, OUT), out[path])
    print("wrote %d files under %s" % (len(out), os.path.relpath(OUT, os.getcwd())))


if __name__ == "__main__":
    main()
