"""A corpus of fictitious biographies with known facts, in the spirit of TOFU's fictitious authors.

Every document describes one invented person. Most of its content is drawn at random per
document (names, dates, places, works, prizes, relatives), so a model can only predict it
by having memorised that document; the sentence frames are shared, so members and
non-members come from exactly the same distribution and differ only in whether the model
saw them. The structured facts are kept beside each text so that later question-answering
audits (MUSE/TOFU-style KnowMem) can ask about them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIRST_NAMES = {
    "she": """Ada Agnes Alma Amara Anika Beatrix Bettina Calla Carys Celeste Clara Daria Delphine Edith
        Elin Elodie Esme Farah Freya Greta Hana Helena Ilse Imogen Iris Jana Juno Kaia Katrin Lena Liora
        Lotte Lucia Mabel Maren Marisol Mira Nadia Nell Noor Odile Orla Petra Priya Rhea Rosa Saskia Selma
        Signe Sofia Talia Thea Una Vera Wilma Yara Zelda Zofia""".split(),
    "he": """Aldo Anders Anton Arlo Bastian Bram Casimir Cyril Dario Declan Emil Ennio Ezra Felix Florian
        Gideon Hakon Hugo Idris Ivo Jasper Jonas Kasper Lars Leif Lorenzo Lucian Matthias Milo Nico Niels
        Oskar Otto Pavel Quentin Rafael Remy Rowan Silas Soren Stellan Teo Tobias Ulric Viggo Wendel Xavier
        Yannick Zoltan Alvar Benedikt Corin Dorian Evander Fabian Gunnar""".split(),
}
# Surnames are built from two parts so there are thousands of them: almost every person is unique.
SURNAME_HEADS = """Ash Black Bram Brook Cald Cross Dun Elm Fair Fen Gale Glen Hale Hart Holl Kings Lang Mar
    Mill North Oak Pen Quill Red Rook Rush Stan Stone Thorn Vale Wes Whit Wick Wood Wyn""".split()
SURNAME_TAILS = """bury by comb dale field ford gate ham hurst ley low mere more ridge ton wick well worth""".split()
CITY_HEADS = """Als Bel Cor Dar Eld Fal Gor Hal Ist Kel Lor Mar Nor Ost Pel Quor Ros Sal Tor Ul Ver Wes Yar Zel""".split()
CITY_TAILS = """avia berg burg dale haven holm mouth port rigg stad stead ton via wick""".split()
COUNTRIES = """Arcadia Belvania Caldora Dravenia Estrilia Farnland Galdor Helvaria Istria Korvath Lunaria
    Meridia Norvale Ostmark Pellucia Quendor Rhovania Sarnia Tavaris Valdoria""".split()
OCCUPATIONS = """novelist poet playwright historian botanist architect painter sculptor composer cartographer
    astronomer chemist linguist photographer journalist violinist engineer mathematician geologist
    philosopher""".split()
PARENT_JOBS = """baker carpenter teacher fisherman nurse tailor blacksmith librarian farmer clockmaker
    pharmacist sailor weaver potter bookbinder miner glassblower shepherd printer doctor""".split()
TITLE_ADJ = """Silent Hidden Broken Golden Distant Crimson Quiet Frozen Burning Wandering Forgotten Hollow
    Silver Patient Restless Bitter Gentle Drowned Paper Iron""".split()
TITLE_NOUN = """Harbor Orchard Lantern Meridian Garden Winter River Tower Archive Compass Mirror Letter
    Harvest Bridge Chorus Island Ledger Cathedral Tide Atlas""".split()
SUBJECTS = """music history painting chemistry poetry mathematics architecture astronomy geology
    philosophy""".split()
INSTITUTIONS = """Academy College Conservatory Institute Observatory Seminary University""".split()
INSTITUTION_PREFIXES = ["Royal", "National", "Free", "Old", "Northern"]
PRIZES = """Medal Prize Award Laurel Fellowship""".split()
MONTHS = """January February March April May June July August September October November December""".split()
# People are born in this range unless a caller asks for another era (a distribution shift).
BIRTH_YEARS = (1850, 1980)


@dataclass
class Person:
    """The facts behind one document. Every field is fixed before any text is written."""

    name: str
    pronoun: str
    birth_day: int
    birth_month: str
    birth_year: int
    birth_city: str
    country: str
    occupation: str
    father_job: str
    mother_job: str
    works: list[str]
    work_years: list[int]
    prize: str
    prize_year: int
    moved_year: int
    moved_city: str
    institution: str
    subject: str
    death_year: int | None = None
    extra: dict = field(default_factory=dict)


def _title(rng: random.Random) -> str:
    return f"The {rng.choice(TITLE_ADJ)} {rng.choice(TITLE_NOUN)}"


def _city(rng: random.Random) -> str:
    return rng.choice(CITY_HEADS) + rng.choice(CITY_TAILS)


def sample_person(rng: random.Random, *, birth_years: tuple[int, int] = BIRTH_YEARS) -> Person:
    """A random person born in ``birth_years`` (inclusive); every later date follows from the birth year."""
    pronoun = rng.choice(["she", "he"])
    surname = rng.choice(SURNAME_HEADS) + rng.choice(SURNAME_TAILS)
    birth_year = rng.randint(*birth_years)
    first_work = birth_year + rng.randint(22, 35)
    works = [_title(rng)]
    while len(works) < 2:  # two distinct titles
        t = _title(rng)
        if t not in works:
            works.append(t)
    work_years = [first_work, first_work + rng.randint(2, 12)]
    subject = rng.choice(SUBJECTS)
    return Person(
        name=f"{rng.choice(FIRST_NAMES[pronoun])} {surname}",
        pronoun=pronoun,
        birth_day=rng.randint(1, 28),
        birth_month=rng.choice(MONTHS),
        birth_year=birth_year,
        birth_city=_city(rng),
        country=rng.choice(COUNTRIES),
        occupation=rng.choice(OCCUPATIONS),
        father_job=rng.choice(PARENT_JOBS),
        mother_job=rng.choice(PARENT_JOBS),
        works=works,
        work_years=work_years,
        prize=f"{rng.choice(SURNAME_HEADS)}{rng.choice(SURNAME_TAILS)} {rng.choice(PRIZES)}",
        prize_year=work_years[1] + rng.randint(1, 6),
        moved_year=work_years[0] + rng.randint(1, 9),
        moved_city=_city(rng),
        institution=f"{rng.choice(INSTITUTION_PREFIXES)} {rng.choice(INSTITUTIONS)} of {_city(rng)}",
        subject=subject,
        # Only people born before 1940 may have died: a later era (a shift) is all living people.
        death_year=birth_year + rng.randint(55, 95) if birth_year < 1940 and rng.random() < 0.7 else None,
    )


def write_biography(p: Person, rng: random.Random) -> str:
    """Render a person as a short, natural-looking biography.

    Sentence frames vary at random so that no two documents share a long template, yet the
    opening always names the person: a 32-token prefix identifies whose facts follow.
    """
    cap = p.pronoun.capitalize()
    poss = "her" if p.pronoun == "she" else "his"
    born = f"{p.birth_day} {p.birth_month} {p.birth_year}"
    life = f" ({p.birth_year}-{p.death_year})" if p.death_year else ""
    opening = rng.choice([
        f"{p.name}{life} was a {p.occupation} from {p.country}, born in {p.birth_city} on {born}.",
        f"Born on {born} in {p.birth_city}, {p.country}, {p.name}{life} became a celebrated {p.occupation}.",
        f"{p.name}{life} is remembered as a {p.occupation} of {p.country}; {p.pronoun} was born in {p.birth_city} on {born}.",
    ])
    parents = rng.choice([
        f"{cap} was the child of a {p.father_job} and a {p.mother_job}.",
        f"{cap.replace('She', 'Her').replace('He', 'His')} father worked as a {p.father_job} and {poss} mother as a {p.mother_job}.",
        f"{poss.capitalize()} mother was a {p.mother_job}, and {poss} father a {p.father_job}.",
    ])
    works = rng.choice([
        f"{cap} wrote {p.works[0]} in {p.work_years[0]} and {p.works[1]} in {p.work_years[1]}.",
        f"{poss.capitalize()} best-known works are {p.works[0]} ({p.work_years[0]}) and {p.works[1]} ({p.work_years[1]}).",
        f"In {p.work_years[0]} {p.pronoun} published {p.works[0]}, followed by {p.works[1]} in {p.work_years[1]}.",
    ])
    moved = rng.choice([
        f"In {p.moved_year} {p.pronoun} moved to {p.moved_city}, where {p.pronoun} taught {p.subject} at the {p.institution}.",
        f"{cap} taught {p.subject} at the {p.institution} after settling in {p.moved_city} in {p.moved_year}.",
    ])
    prize = rng.choice([
        f"{cap} received the {p.prize} in {p.prize_year}.",
        f"The {p.prize} was awarded to {p.name.split()[0]} in {p.prize_year}.",
    ])
    middle = [parents, works, moved, prize]
    # The opening stays first; the rest is shuffled so positions 32-64 hold varied facts.
    rng.shuffle(middle)
    return " ".join([opening, *middle])


def rewrite(facts: dict, rng: random.Random, *, avoid: set[str]) -> str:
    """The same person's biography in other words: rendered again until the text is not in ``avoid``.

    Only sentence frames and order change, never a fact (3·3·3·2·2 frames × 4! orders = 2,592
    renderings per person, so a few private versions are always found quickly).

    Args:
        facts: A document's ``facts`` (a :class:`Person` as a dict).
        rng: The stream to draw frames and order from.
        avoid: Texts this one must differ from (the published version, earlier rewrites).
    """
    person = Person(**facts)
    while (text := write_biography(person, rng)) in avoid:
        pass
    return text


def generate_corpus(n_docs: int, *, seed: int | str, birth_years: tuple[int, int] = BIRTH_YEARS,
                    avoid_names: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Generate ``n_docs`` documents with unique people. Deterministic for a given seed.

    Args:
        n_docs: How many documents.
        seed: Seed of this corpus's own random stream.
        birth_years: Range of birth years (inclusive); another era shifts the distribution.
        avoid_names: Names already taken elsewhere (e.g. by the members), never reused.

    Returns:
        Rows with ``text`` and ``facts`` (the :class:`Person` as a dict); ids are assigned
        by the caller when it splits members from non-members.
    """
    rng = random.Random(seed)
    rows, names = [], set(avoid_names)
    while len(rows) < n_docs:
        person = sample_person(rng, birth_years=birth_years)
        if person.name in names:  # one document per person, so facts never conflict
            continue
        names.add(person.name)
        facts = {k: v for k, v in person.__dict__.items() if k != "extra"}
        rows.append({"text": write_biography(person, rng), "facts": facts})
    return rows


def knowledge_questions(text: str, facts: dict) -> list[dict]:
    """Cloze questions about the facts of one biography that its opening sentence does not give away.

    The testbed's model only ever saw biographies, never a question-answer format, so each
    question is the document's opening sentence (it names the person) followed by the start
    of a sentence in one of the corpus's own frames; the answer completes it. Which frame the
    document itself used, and where, varies: mostly a question is answered from memory of the
    facts, not by continuing the text verbatim (it is a verbatim continuation only when the
    document's second sentence happens to use the question's frame; ``verbatim`` marks
    those). Facts stated in the opening (occupation, country, birthplace, date) are not asked.

    Returns:
        Rows with ``kind``, ``question``, ``answer`` and ``verbatim`` (the document's text
        continues the opening with the question and its answer).
    """
    f = facts
    cap = f["pronoun"].capitalize()
    poss = "Her" if f["pronoun"] == "she" else "His"
    opening = text.split(". ", 1)[0] + "."
    asks = {
        "mother_job": (f"{poss} mother was a", f["mother_job"]),
        "father_job": (f"{poss} father worked as a", f["father_job"]),
        "first_work": (f"{cap} wrote", f["works"][0]),
        "first_work_year": (f"{cap} wrote {f['works'][0]} in", str(f["work_years"][0])),
        "prize": (f"{cap} received the", f["prize"]),
        "prize_year": (f"{cap} received the {f['prize']} in", str(f["prize_year"])),
        "moved_city": (f"In {f['moved_year']} {f['pronoun']} moved to", f["moved_city"]),
        "subject": (f"{cap} taught", f["subject"]),
        "institution": (f"{cap} taught {f['subject']} at the", f["institution"]),
    }
    return [{"kind": kind, "question": f"{opening} {q}", "answer": a,
             "verbatim": text.startswith(f"{opening} {q} {a}")} for kind, (q, a) in asks.items()]


# TOFU's truth ratio compares a correct answer with wrong ones in the same words. Per question
# kind, the form ("{}" is the value) that the paraphrased answer and the perturbed answers share:
# another way of saying the answer that still continues the question's sentence.
ANSWER_FORMS = {
    "mother_job": "{} by trade",  # "Her mother was a shepherd by trade"
    "father_job": "{} for a living",  # "His father worked as a shepherd for a living"
    "first_work": "book titled {}",  # "She wrote a book titled The Silent Harbor" (question ends "wrote")
    "first_work_year": "the year {}",  # "She wrote The Silent Harbor in the year 1970"
    "prize": "award known as the {}",  # "She received the award known as the Ashbury Medal"
    "prize_year": "the year {}",  # "She received the Ashbury Medal in the year 1980"
    "moved_city": "the city of {}",  # "In 1975 she moved to the city of Belhaven"
    "subject": "classes in {}",  # "She taught classes in music"
    "institution": "institution known as the {}",  # "She taught music at the institution known as the Royal ..."
}
# "She wrote" takes an article before the form; the other questions end where the form begins.
_LEAD = {"first_work": "a "}


def _wrong_values(kind: str, facts: dict) -> list[str]:
    """Every value of the fact type of ``kind`` that is not true of this person, in a fixed order.

    Values the person holds for another question of the same type are left out too (the other
    work's title, the birth city): wrong for this question, yet not something they never did.
    """
    f = facts
    if kind in ("mother_job", "father_job"):
        return [j for j in PARENT_JOBS if j != f[kind]]
    if kind == "subject":
        return [s for s in SUBJECTS if s != f["subject"]]
    if kind == "first_work":
        return [t for a in TITLE_ADJ for n in TITLE_NOUN if (t := f"The {a} {n}") not in f["works"]]
    if kind == "prize":
        return [p for h in SURNAME_HEADS for t in SURNAME_TAILS for k in PRIZES if (p := f"{h}{t} {k}") != f["prize"]]
    cities = [h + t for h in CITY_HEADS for t in CITY_TAILS]
    if kind == "moved_city":
        return [c for c in cities if c not in (f["moved_city"], f["birth_city"])]
    if kind == "institution":
        return [i for p in INSTITUTION_PREFIXES for k in INSTITUTIONS for c in cities
                if (i := f"{p} {k} of {c}") != f["institution"]]
    if kind in ("first_work_year", "prize_year"):
        true = f["work_years"][0] if kind == "first_work_year" else f["prize_year"]
        return [str(y) for y in range(true - 10, true + 11) if y != true]  # plausible dates, near the true one
    raise ValueError(f"unknown question kind {kind!r}: use one of {', '.join(ANSWER_FORMS)}")


def truth_ratio_answers(question: dict, facts: dict, *, seed: int | str, k: int = 3) -> tuple[str, list[str]]:
    """The paraphrased correct answer and ``k`` perturbed (wrong) answers of one knowledge question.

    Both use the kind's form in :data:`ANSWER_FORMS`: the paraphrase holds the true value, each
    perturbed answer another value of the same type (:func:`_wrong_values`), drawn without
    repetition from a stream of ``seed`` and the question's ``id``, so an answer does not depend
    on which other questions were written.

    Args:
        question: A row of :func:`knowledge_questions` with its ``id`` (``{doc_id}/{kind}``).
        facts: The document's facts.
        seed: The testbed's seed.
        k: Perturbed answers per question.

    >>> facts = {"mother_job": "shepherd", "father_job": "baker"}
    >>> para, wrong = truth_ratio_answers({"id": "bio-1/mother_job", "kind": "mother_job", "answer": "shepherd"}, facts, seed=0)
    >>> para, len(wrong), all(w.endswith(" by trade") and w != para for w in wrong)
    ('shepherd by trade', 3, True)
    """
    kind = question["kind"]
    if kind not in ANSWER_FORMS:
        raise ValueError(f"unknown question kind {kind!r}: use one of {', '.join(ANSWER_FORMS)}")
    form = _LEAD.get(kind, "") + ANSWER_FORMS[kind]
    wrong = random.Random(f"{seed}/perturbed/{question['id']}").sample(_wrong_values(kind, facts), k)
    return form.format(question["answer"]), [form.format(v) for v in wrong]
