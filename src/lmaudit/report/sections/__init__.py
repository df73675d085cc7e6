"""Report sections: one renderer per result kind, each in its own module of this package.

A renderer is a function ``(run, page) -> Section`` registered under the ``kind`` that
results.json records::

    @sections.register("membership")
    def membership(run: Run, page: Page) -> Section:
        ...
        return Section(title=..., verdict=[...], body=page.render("membership.html.j2", ...))

Adding a section for a new audit means adding one module here (and its template), never
editing a central list: the registry imports every module of this package on first lookup.
A kind with no renderer gets :func:`lmaudit.report.sections.generic.generic`, which shows
its summary as a table rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from markupsafe import Markup

from lmaudit.registry import Registry

sections = Registry("report section", package="lmaudit.report.sections")

# How strong a verdict is; the page colours it (and says it in words, never by colour alone).
LEVELS = {
    "strong": "strong evidence",
    "evidence": "evidence",
    "weak": "weak or no evidence",
    "info": "measurement",
    "warning": "read with care",
}


@dataclass
class Section:
    """What a renderer gives the page.

    Attributes:
        title: The section's heading.
        verdict: Sentences in plain words, each number with its n and interval; shown at the
            top of the report and of the section.
        level: One of :data:`LEVELS`: how strong the verdict's evidence is.
        warnings: Caveats that change what the numbers mean (shown in red).
        body: The section's tables and plots (rendered from a template: escaped).
        guide: Anchor of the guide's paragraph that explains these numbers.
    """

    title: str
    verdict: list[str]
    level: str = "info"
    warnings: list[str] = field(default_factory=list)
    body: Markup = Markup("")
    guide: str = "guide-questions"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown verdict level {self.level!r}; known: {', '.join(LEVELS)}")
