"""Non-literal copying: whole-word, case-insensitive character matches; events through a judge."""

import pytest

from lmaudit.memorization.nonliteral import KeywordEventJudge, character_copying, event_copying

CHARACTERS = [["Ada Wickham", "Ada"], ["Otto Stanley", "Otto"], ["Mira"], ["Lars"]]


def test_characters_whole_word_case_insensitive():
    out = "ada and OTTO walked past Miranda; Lars waved."
    r = character_copying(out, CHARACTERS)
    # "Mira" inside "Miranda" is not a whole word; case does not matter.
    assert r["characters_copied"] == ["Ada Wickham", "Otto Stanley", "Lars"] and r["n_characters"] == 3
    assert r["character_copy"] is True
    assert character_copying(out, CHARACTERS, min_characters=4)["character_copy"] is False


def test_characters_named_in_the_prompt_do_not_count():
    r = character_copying("Ada met Otto and Lars.", CHARACTERS, prompt="Write about Otto Stanley.")
    assert r["characters_copied"] == ["Ada Wickham", "Lars"]  # Otto is given away (by his full name)


def test_names_with_regex_characters_are_literal():
    assert character_copying("Dr. J.R. smiled", [["J.R."], ["J?R"]])["characters_copied"] == ["J.R."]


def test_keyword_judge_and_a_plugged_judge():
    events = ["Ada moved to the harbor city", "Otto burned the old letters", "the storm destroyed the bridge"]
    out = "Years later Ada moved to a harbor city, where the storm had destroyed a bridge."
    r = event_copying(out, events, min_events=2)
    assert r["events_copied"] == [events[0], events[2]] and r["event_copy"] is True and r["event_judge_approximate"]

    class Always:
        name, approximate = "always", False

        def judge(self, output, events):
            return [True] * len(events)

    assert event_copying("", events, judge=Always(), min_events=3)["event_copy"] is True

    class Broken(Always):
        def judge(self, output, events):
            return [True]

    with pytest.raises(ValueError, match="1 verdicts for 3 events"):
        event_copying(out, events, judge=Broken())
    assert KeywordEventJudge(threshold=1.0).judge("Ada moved", ["Ada moved to the harbor"]) == [False]
