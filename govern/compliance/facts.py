"""The facts rules depend on, and where each comes from.

A fact has a fixed domain. Its value comes, in order of trust, from the request's structured
facts, from the catalog (column tags, the subject column), from exact phrases in the free-text
description (``cues``, deterministic), or from the language model answering one narrow question
about the description (calibrated; see :mod:`govern.compliance.pipeline`). The first three are
*stated*; a model answer is *inferred* and never enough on its own for ``compliant``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from govern.catalog import ColumnInfo
from govern.catalog.profile import VersionProfile
from govern.compliance.conditions import FactValue
from govern.errors import ValidationError

__all__ = [
    "FACTS",
    "Fact",
    "FactSpec",
    "Source",
    "catalog_facts",
    "cue_facts",
    "eu_places",
    "licence_class",
    "request_facts",
]

# "prose": the prose reader (govern.compliance.prose); stated only for the facts its fitted
# trust names, inferred otherwise.
Source = Literal["request", "catalog", "text", "model", "prose"]
STATED: frozenset[str] = frozenset({"request", "catalog", "text"})


@dataclass(frozen=True)
class Cue:
    """An exact phrase that states a value. It does not fire when a negation word stands just
    before it ("no explicit consent"), so it errs towards silence, never towards a value."""

    pattern: re.Pattern[str]
    value: FactValue


def _cue(pattern: str, value: FactValue) -> Cue:
    return Cue(re.compile(pattern, re.IGNORECASE), value)


@dataclass(frozen=True)
class FactSpec:
    name: str
    description: str
    values: tuple[FactValue, ...]  # () for a free string (e.g. a licence id)
    question: str | None = None  # the narrow question the model answers, if any
    labels: Mapping[str, FactValue | None] = field(default_factory=dict)  # label -> value
    cues: tuple[Cue, ...] = ()

    @property
    def boolean(self) -> bool:
        return self.values == (True, False)


@dataclass(frozen=True)
class Fact:
    name: str
    value: FactValue
    source: Source
    confidence: float
    evidence: str

    @property
    def stated(self) -> bool:
        return self.source in STATED

    def to_json(self) -> dict[str, Any]:
        return {
            "fact": self.name,
            "value": self.value,
            "source": self.source,
            "confidence": round(self.confidence, 4),
            "evidence": self.evidence,
        }


_YN: dict[str, FactValue | None] = {"yes": True, "no": False, "unknown": None}
_B: tuple[FactValue, ...] = (True, False)
_NEG = re.compile(
    r"\b(no|not|never|without|nor|neither|lacks?|absent|n't|outside|except|excluding|unless)\b"
    r"[\w\s,'-]{0,24}$",
    re.I,
)


def _spec(
    name: str,
    description: str,
    values: tuple[FactValue, ...] = _B,
    question: str | None = None,
    labels: Mapping[str, FactValue | None] | None = None,
    cues: Sequence[tuple[str, FactValue]] = (),
) -> FactSpec:
    return FactSpec(
        name=name,
        description=description,
        values=values,
        question=question,
        labels=dict(labels if labels is not None else (_YN if question else {})),
        cues=tuple(_cue(p, v) for p, v in cues),
    )


FACTS: dict[str, FactSpec] = {
    s.name: s
    for s in (
        _spec(
            "personal_data",
            "the data relates to identified or identifiable people",
            question="Does the data describe identifiable people (names, emails, ids, records "
            "about individuals)?",
            cues=[(r"\banonymi[sz]ed\b", False), (r"\bpersonal data\b", True)],
        ),
        _spec(
            "special_categories",
            "health, genetic, biometric, ethnic, religious, political, sexual or union data",
            question="Does the data include health, genetic, biometric, ethnic origin, religious, "
            "political, sexual orientation or trade-union information?",
            cues=[
                (
                    r"\b(health|medical|diagnos[ie]s|genetic|biometric|ethnic)\w* (data|records)\b",
                    True,
                )
            ],
        ),
        _spec(
            "health_data",
            "data about the physical or mental health of people",
            question="Does the data include health or medical information about people?",
            cues=[(r"\b(medical|health|clinical|patient) (records|notes|data)\b", True)],
        ),
        _spec("direct_identifiers", "columns that identify a person directly (ids, emails)"),
        _spec(
            "gdpr_scope",
            "people in the EU/EEA are concerned, or the controller is established there",
            question="Are the people in the data located in the EU, or is the organisation "
            "established in the EU?",
            cues=[
                (
                    r"\b(EU|EEA|European|German|French)\s+(residents|users|citizens|customers|patients)\b",
                    True,
                )
            ],
        ),
        _spec(
            "legal_basis",
            "the GDPR art. 6 basis for the processing",
            values=(
                "consent",
                "contract",
                "legal_obligation",
                "vital_interests",
                "public_task",
                "legitimate_interests",
                "none",
            ),
            question="Which legal basis is stated for using the data?",
            labels={
                "consent": "consent",
                "contract": "contract",
                "legitimate interests": "legitimate_interests",
                "none": "none",
                "unknown": None,
            },
            cues=[
                (r"\bperformance of (a|the) contract\b", "contract"),
                (r"\blegitimate interests?\b", "legitimate_interests"),
                (r"\blegal obligation\b", "legal_obligation"),
                (r"\bno legal basis\b", "none"),
            ],
        ),
        _spec(
            "consent",
            "whether the people concerned consented to this use",
            values=("given", "refused", "withdrawn", "not_asked"),
            question="Is consent of the people for this use stated as given, refused, or unknown?",
            labels={"given": "given", "refused": "refused", "unknown": None},
            cues=[
                (r"\bconsent (was |has been )?(refused|declined|denied)\b", "refused"),
                (r"\b(refused|declined|denied) (their |to give |to )?consent\b", "refused"),
                (r"\b(opted|opt) out of (model )?training\b", "refused"),
                (r"\bconsent (was |has been )?withdrawn\b", "withdrawn"),
                (r"\bwithdr[ae]w (their )?consent\b", "withdrawn"),
                (r"\bwithout (their |any |user |users' )?consent\b", "not_asked"),
                (
                    r"\b(gave|given|obtained|opted in|opt-in) (their )?(explicit )?consent\b",
                    "given",
                ),
                (r"\bconsent (was |has been )?(given|obtained|granted)\b", "given"),
                (r"\bopted in to (model )?training\b", "given"),
            ],
        ),
        _spec(
            "balancing_test",
            "a documented legitimate-interests assessment weighs the people's interests",
            question="Is a legitimate interests assessment (balancing test) stated as done?",
            cues=[
                (
                    r"\b(legitimate interests? assessment|balancing test) (was |has been )?(done"
                    r"|completed|documented|performed)\b",
                    True,
                )
            ],
        ),
        _spec(
            "art9_condition",
            "the GDPR art. 9(2) condition that lifts the ban on special categories",
            values=(
                "explicit_consent",
                "research_safeguards",
                "public_health",
                "made_public",
                "none",
            ),
            question="Which exception for sensitive data is stated?",
            labels={
                "explicit consent": "explicit_consent",
                "research": "research_safeguards",
                "none": "none",
                "unknown": None,
            },
            cues=[
                (r"\bexplicit consent\b", "explicit_consent"),
                (r"\bscientific research\b[^.]{0,60}\bsafeguards\b", "research_safeguards"),
                (r"\bpublic health\b", "public_health"),
            ],
        ),
        _spec(
            "collection_purpose",
            "the purpose the data was originally collected for (free text)",
            values=(),
        ),
        _spec(
            "purpose_compatible",
            "the new purpose is compatible with the purpose of collection",
            question="Is the new use compatible with the purpose the data was collected for?",
            cues=[(r"\bcollected (only |solely )?for (a )?(different|another|unrelated)\b", False)],
        ),
        _spec(
            "erasure_honoured",
            "erasure requests are carried out for this data",
            question="Are requests from people to delete their data honoured?",
            cues=[
                (
                    r"\b(ignore|ignoring|ignored|keep|keeping|retain|retaining)\b[^.]{0,40}\b(erasure|deletion|delete)\b",
                    False,
                ),
                (r"\b(erasure|deletion) requests (are )?(honou?red|processed|carried out)\b", True),
            ],
        ),
        _spec(
            "california_consumers",
            "the data concerns California residents (CCPA consumers)",
            question="Does the data concern residents of California?",
            cues=[(r"\bCalifornia(n)?\b", True)],
        ),
        _spec(
            "sells_or_shares",
            "personal information is sold or shared with third parties",
            question="Is the personal information sold or shared with third parties?",
            cues=[
                (
                    r"\b(sold|sell|selling|shared|share|sharing|licensed) (it |the data "
                    r"|this data )?(to|with) (third parties|partners|a third party"
                    r"|data brokers|advertisers)\b",
                    True,
                )
            ],
        ),
        _spec(
            "opt_out_honoured",
            "consumers' requests to opt out of sale or sharing are honoured",
            question="Are consumers' opt-out requests honoured?",
            cues=[
                (r"\b(ignore|ignoring|ignored|disregard\w*)\b[^.]{0,30}\bopt[- ]outs?\b", False),
                (r"\bopt[- ]outs? (requests )?(are |were )?(honou?red|respected|excluded)\b", True),
            ],
        ),
        _spec(
            "hipaa_covered",
            "the data is protected health information held by a HIPAA covered entity or "
            "business associate",
            question="Is the data held by a US hospital, health plan or their business associate?",
            cues=[(r"\b(covered entity|business associate|US hospital|health plan)\b", True)],
        ),
        _spec(
            "deidentification",
            "how the health data was de-identified under HIPAA",
            values=("safe_harbor", "expert_determination", "none"),
            question="How was the health data de-identified?",
            labels={
                "safe harbor": "safe_harbor",
                "expert determination": "expert_determination",
                "not de-identified": "none",
                "unknown": None,
            },
            cues=[
                (r"\bsafe harbou?r\b", "safe_harbor"),
                (r"\bexpert determination\b", "expert_determination"),
                (r"\b(identifiable|identified) (patient )?(records|data)\b", "none"),
            ],
        ),
        _spec(
            "hipaa_authorization",
            "the patients signed a HIPAA authorisation for this use",
            question="Did the patients sign an authorization for this use?",
        ),
        _spec("identifiers_present", "health data still holds direct identifiers or dates"),
        _spec(
            "high_risk_ai",
            "the data trains a high-risk AI system (EU AI Act annex III, e.g. hiring, credit, "
            "biometric identification, medical devices)",
            question="Is the model for hiring, credit scoring, biometric identification, "
            "education grading, law enforcement or a medical device?",
            cues=[
                (
                    r"\b(hiring|recruit\w*|credit scor\w*|creditworthiness|biometric identification"
                    r"|exam grading|medical device)\b",
                    True,
                )
            ],
        ),
        _spec(
            "data_governance_documented",
            "data collection, preparation and provenance are documented",
            question="Are the data's origin, collection and preparation documented?",
            cues=[(r"\bdatasheet\b|\bdata governance (is )?documented\b", True)],
        ),
        _spec(
            "bias_examined",
            "the data was examined for possible biases and gaps",
            question="Was the data examined for bias?",
            cues=[(r"\bbias (audit|examination|analysis|assessment)\b", True)],
        ),
        _spec("licence", "the data's licence (an SPDX-like id)", values=()),
        _spec(
            "licence_class",
            "the licence's kind, derived from the licence id",
            values=("permissive", "copyleft", "noncommercial", "noderivatives", "proprietary"),
        ),
        _spec(
            "commercial_use",
            "the trained model or its output is used commercially",
            question="Is the use commercial (a paid product or a company's service)?",
            cues=[(r"\b(commercial|paid) (product|use|service|offering)\b", True)],
        ),
        _spec(
            "licence_permission",
            "the rights holder granted separate permission for this use",
            question="Did the rights holder grant separate permission for this use?",
        ),
        _spec(
            "transfer_outside_eea",
            "personal data is transferred to a country outside the EEA",
            question="Is the data transferred to a country outside the EU/EEA?",
            cues=[
                (
                    r"\btransferr?(ed|ing)? to (the US|the United States|India|China"
                    r"|a third country)\b",
                    True,
                )
            ],
        ),
        _spec(
            "transfer_mechanism",
            "the GDPR chapter V tool for the transfer",
            values=("adequacy", "scc", "bcr", "derogation", "none"),
            question="Which safeguard covers the transfer?",
            labels={
                "adequacy decision": "adequacy",
                "standard contractual clauses": "scc",
                "none": "none",
                "unknown": None,
            },
            cues=[
                (r"\bstandard contractual clauses\b|\bSCCs?\b", "scc"),
                (r"\badequacy decision\b|\bData Privacy Framework\b", "adequacy"),
                (r"\bbinding corporate rules\b", "bcr"),
            ],
        ),
        _spec(
            "web_scraped",
            "the data was collected by crawling or scraping websites",
            question="Was the data collected by scraping or crawling websites?",
            cues=[(r"\b(scraped|crawled|web crawl|web scrape|scraping|crawling)\b", True)],
        ),
        _spec(
            "tdm_opt_out_respected",
            "machine-readable text-and-data-mining reservations (robots.txt, TDM headers) were "
            "honoured",
            question="Were website opt-outs from text and data mining (robots.txt) respected?",
            cues=[
                (
                    r"\b(ignor\w*|bypass\w*|disregard\w*)\b[^.]{0,30}\b(robots\.txt|opt[- ]outs?"
                    r"|tdm)\b",
                    False,
                ),
                (
                    r"\b(respect\w*|honou?r\w*|obey\w*)\b[^.]{0,30}\b(robots\.txt|tdm reservations?"
                    r"|opt[- ]outs?)\b",
                    True,
                ),
            ],
        ),
        _spec(
            "identifiers_needed",
            "the purpose needs the direct identifiers in the clear",
            question="Does the purpose need people's direct identifiers (names, emails, ids)?",
        ),
        _spec(
            "identifiers_masked",
            "direct identifiers are masked, hashed or dropped before use",
            question="Are identifiers masked, hashed or removed before use?",
            cues=[
                (
                    r"\b(pseudonymi[sz]ed|hashed|masked|tokeni[sz]ed) (ids|identifiers|emails)\b",
                    True,
                )
            ],
        ),
    )
}


# -- the catalog -----------------------------------------------------------------------------

_SPECIAL = ("health", "special", "biometric", "genetic", "pii.health")
_DIRECT = ("pii.id", "pii.email", "pii.name", "pii.phone", "pii.ssn", "pii.address")
_LICENCE_PREFIX = "licence."

_PERMISSIVE = {
    "mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "isc", "cc0-1.0", "cc-by-4.0",
    "cc-by-3.0", "unlicense", "zlib", "public-domain", "odc-by", "pddl",
}  # fmt: skip
_COPYLEFT = {"gpl-2.0", "gpl-3.0", "agpl-3.0", "lgpl-2.1", "lgpl-3.0", "mpl-2.0", "cc-by-sa-4.0",
             "odbl"}  # fmt: skip
_PROPRIETARY = {"proprietary", "all-rights-reserved", "none"}


def licence_class(licence: str) -> str | None:
    """The kind of a licence id, or None when it is not one this library knows."""
    lic = licence.strip().lower()
    if lic.startswith(("cc-by-nc", "cc-nc")):
        return "noncommercial"
    if lic.startswith("cc-by-nd"):
        return "noderivatives"
    if lic in _PERMISSIVE:
        return "permissive"
    if lic in _COPYLEFT or lic.startswith(("gpl", "agpl", "lgpl")):
        return "copyleft"
    if lic in _PROPRIETARY:
        return "proprietary"
    return None


def _tagged(columns: Sequence[ColumnInfo], prefixes: Sequence[str]) -> list[str]:
    return sorted(
        f"{c.name} ({t})"
        for c in columns
        for t in c.tags
        if any(t == p or t.startswith(p + ".") for p in prefixes)
    )


def catalog_facts(
    dataset: str,
    columns: Sequence[ColumnInfo],
    subject_column: str | None,
    profile: VersionProfile | None = None,
) -> list[Fact]:
    """What the catalog states. Tags are the steward's statements about columns, so a missing
    tag is stated as 'no such column' for the category facts. With the version's ``profile``
    (its own values), the subject column states personal data when it holds subjects, and a
    country or region column holding an EU/EEA value states ``gdpr_scope``; data only ever
    states these as true (the direction that makes more rules apply), never false."""
    out: list[Fact] = []

    def add(name: str, value: FactValue, evidence: str) -> None:
        out.append(Fact(name, value, "catalog", 1.0, f"catalog {dataset}: {evidence}"))

    pii = _tagged(columns, ("pii",))
    special = _tagged(columns, _SPECIAL)
    health = _tagged(columns, ("health", "pii.health"))
    direct = _tagged(columns, _DIRECT)
    identifying = direct + _tagged(columns, ("pii.date",))
    counts = ""
    if profile is not None:
        counts = (
            f"version {profile.version} holds {profile.rows} rows of {profile.subjects} "
            f"data subjects (subject column {profile.subject_column!r})"
        )
    if pii or special:
        add(
            "personal_data",
            True,
            "columns tagged personal: " + ", ".join((pii + special)[:8]) + _also(counts),
        )
    elif profile is not None and profile.subjects > 0:
        # The subject column is whom the rows are about: rows of identified people.
        add("personal_data", True, counts)
    else:
        add("personal_data", False, "no column is tagged pii.*, health or special.*")
    if special:
        add("special_categories", True, "special-category columns: " + ", ".join(special[:8]))
    else:
        add("special_categories", False, "no column is tagged health or special.*")
    add(
        "health_data",
        bool(health),
        ("health columns: " + ", ".join(health[:8])) if health else "no column is tagged health",
    )
    add(
        "direct_identifiers",
        bool(direct),
        ("direct identifiers: " + ", ".join(direct[:8]))
        if direct
        else "no column is tagged as a direct identifier",
    )
    if health:
        add(
            "identifiers_present",
            bool(identifying),
            ("identifying columns beside health data: " + ", ".join(identifying[:8]))
            if identifying
            else "no identifying column beside the health data",
        )
    if profile is not None:
        out += _place_facts(dataset, profile)
    if subject_column and (pii or special):
        # govern withdraws every row of a subject once an erasure request is accepted.
        add(
            "erasure_honoured",
            True,
            f"subject column {subject_column!r}: erasure requests exclude a subject's rows",
        )
    licences = sorted(
        {
            t[len(_LICENCE_PREFIX) :]
            for c in columns
            for t in c.tags
            if t.startswith(_LICENCE_PREFIX)
        }
    )
    if len(licences) == 1:
        add("licence", licences[0], f"licence tag licence.{licences[0]}")
    elif len(licences) > 1:
        # Several licences: the strictest kind governs; ranked from most to least restrictive.
        order = ["proprietary", "noncommercial", "noderivatives", "copyleft", "permissive"]
        kinds = [licence_class(x) for x in licences]
        if None not in kinds:
            worst = min(kinds, key=lambda k: order.index(k or "proprietary"))
            add("licence_class", worst or "proprietary", "licence tags: " + ", ".join(licences))
    return out


def _also(text: str) -> str:
    return f"; {text}" if text else ""


# EU member states and the other EEA states (Iceland, Liechtenstein, Norway): ISO 3166 alpha-2
# (and EL, the EU's code for Greece), alpha-3, English and native names; and the unions' names.
_EU_CODES = (
    "AT AUT austria österreich|BE BEL belgium belgique belgië|BG BGR bulgaria|HR HRV croatia "
    "hrvatska|CY CYP cyprus|CZ CZE czechia|DK DNK denmark danmark|EE EST estonia eesti|FI FIN "
    "finland suomi|FR FRA france|DE DEU germany deutschland|GR EL GRC greece|HU HUN hungary "
    "magyarország|IE IRL ireland éire|IT ITA italy italia|LV LVA latvia latvija|LT LTU "
    "lithuania lietuva|LU LUX luxembourg|MT MLT malta|NL NLD netherlands nederland|PL POL "
    "poland polska|PT PRT portugal|RO ROU romania românia|SK SVK slovakia slovensko|SI SVN "
    "slovenia slovenija|ES ESP spain españa|SE SWE sweden sverige|IS ISL iceland ísland|LI LIE "
    "liechtenstein|NO NOR norway norge|EU EEA"
)
_EU_PLACES: frozenset[str] = frozenset(
    w.lower() for group in _EU_CODES.split("|") for w in group.split()
) | {
    "czech republic",
    "the netherlands",
    "european union",
    "european economic area",
}


def eu_places(values: Sequence[str]) -> list[str]:
    """The values that name an EU/EEA state or the EU/EEA itself (case and spaces ignored)."""
    return [v for v in values if " ".join(v.lower().split()) in _EU_PLACES]


def _place_facts(dataset: str, profile: VersionProfile) -> list[Fact]:
    for column, values in sorted(profile.places.items()):
        found = eu_places(values)
        if found:
            shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
            return [
                Fact(
                    "gdpr_scope",
                    True,
                    "catalog",
                    1.0,
                    f"catalog {dataset}: column {column!r} of version {profile.version} holds "
                    f"EU/EEA values ({shown}; {len(values)} distinct values)",
                )
            ]
    return []


# -- the request's structured facts -----------------------------------------------------------

_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def request_facts(raw: Mapping[str, Any]) -> list[Fact]:
    """Structured facts from a request, validated against each fact's domain. Unknown names or
    values are a ValidationError naming them, so a typo cannot silently drop a fact."""
    out: list[Fact] = []
    unknown: list[str] = []
    bad: list[dict[str, Any]] = []
    for name, value in raw.items():
        if name == "description":
            continue
        spec = FACTS.get(name)
        if spec is None:
            unknown.append(name[:100])
            continue
        if value is None or (isinstance(value, str) and value.strip().lower() == "unknown"):
            continue  # explicitly unknown: as if not sent
        parsed = _parse(spec, value)
        if parsed is None:
            bad.append({"fact": name, "value": str(value)[:100], "allowed": _allowed(spec)})
            continue
        out.append(Fact(name, parsed, "request", 1.0, f"request states {name} = {parsed!r}"))
    if unknown or bad:
        raise ValidationError(
            "unknown facts or values in the request",
            details={"unknown_facts": unknown, "bad_values": bad, "known_facts": sorted(FACTS)},
        )
    return out


def _allowed(spec: FactSpec) -> list[Any] | str:
    return list(spec.values) if spec.values else "any string"


def _parse(spec: FactSpec, value: Any) -> FactValue | None:
    if spec.boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        return None
    v = value.strip().lower().replace(" ", "_").replace("-", "_")
    if not spec.values:
        return value.strip().lower()
    return v if v in spec.values else None


# -- exact phrases in the description ---------------------------------------------------------


def cue_facts(text: str, wanted: Sequence[str]) -> tuple[list[Fact], list[str]]:
    """Facts stated by exact phrases. Returns the facts and notes about phrases that pointed two
    ways (the fact is then left unknown)."""
    out: list[Fact] = []
    notes: list[str] = []
    if not text:
        return out, notes
    for name in wanted:
        spec = FACTS[name]
        hits: dict[FactValue, str] = {}
        for cue in spec.cues:
            for m in cue.pattern.finditer(text):
                before = text[max(0, m.start() - 40) : m.start()]
                if _NEG.search(before):
                    continue
                hits.setdefault(cue.value, m.group(0))
        if len(hits) == 1:
            value, phrase = next(iter(hits.items()))
            out.append(Fact(name, value, "text", 0.95, f"description says {phrase!r}"))
        elif len(hits) > 1:
            notes.append(
                f"description points to several values of {name}: "
                + ", ".join(f"{v!r} ({p!r})" for v, p in hits.items())
            )
    return out, notes
