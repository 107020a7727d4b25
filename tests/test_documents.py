"""ntm.pictures.documents: placeholders filled from a lookup, marked blocks replaced."""

import re

import pytest

from ntm.pictures.documents import between, each_between, fill

VALUES = {"sequences": 24576, "seconds": 90.0, "share": 0.25, "engine": "fused", "cost": 1.5}


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("solved at <<sequences:,d>> sequences", "solved at 24,576 sequences"),
        ("<<seconds / 60:.1f>> minutes", "1.5 minutes"),
        ("<<sequences / seconds:.0f>> per second", "273 per second"),
        ("<<1 - share:.0%>> wrong", "75% wrong"),
        ("<<cost * 2:d>> bits", "3 bits"),
        ("the <<engine:s>> engine", "the fused engine"),
        ("no placeholder", "no placeholder"),
    ],
)
def test_a_placeholder_is_filled_with_its_value_in_its_format(template: str, text: str) -> None:
    assert fill(template, VALUES) == text


def test_a_lookup_function_names_the_values() -> None:
    assert fill("<<a:b:.2f>> and <<a:c:d>>", len) == "3.00 and 3"  # the REF's length


@pytest.mark.parametrize(
    "placeholder",
    [
        "<<no_such_value:d>>",  # names nothing
        "<<cost:d>>",  # 1.5 is no count
        "<<engine:.1f>>",  # a text is no number
        "<<sequences / seconds / 2:.1f>>",  # two operations
        "<<seconds / 0:.1f>>",  # no result
    ],
)
def test_a_placeholder_that_names_nothing_raises_naming_it(placeholder: str) -> None:
    with pytest.raises(ValueError, match=re.escape(placeholder)):
        fill(f"solved at {placeholder} sequences", VALUES)


def test_a_missing_value_is_named_with_those_there_are() -> None:
    with pytest.raises(ValueError, match=r"no value named 'sequnces' .*sequences"):
        fill("<<sequnces:d>>", VALUES)


def test_an_unclosed_placeholder_raises() -> None:
    with pytest.raises(ValueError, match="unclosed: '<<sequences:,d sequences'"):
        fill("solved at <<sequences:,d sequences", VALUES)


def test_a_filled_value_may_hold_what_looks_like_a_placeholder() -> None:
    assert fill("<<text:s>>", {"text": "a << b"}) == "a << b"


MARKERS = ("<!-- table: make it -->", "<!-- end of table -->")


def test_the_block_between_markers_is_replaced_and_the_rest_kept() -> None:
    begin, end = (marker + "\n" for marker in MARKERS)
    text = f"# Title\n\n{begin}| old |\n{end}\nAfter.\n"
    new = between(text, MARKERS, ["| a |", "| 1 |"])
    assert new == f"# Title\n\n{begin}| a |\n| 1 |\n{end}\nAfter.\n"
    assert between(new, MARKERS, ["| a |", "| 1 |"]) == new


@pytest.mark.parametrize(
    ("text", "missing"),
    [("no markers\n", "table: make it"), ("<!-- table: make it -->\n| old |\n", "end of table")],
)
def test_a_missing_marker_raises_naming_it(text: str, missing: str) -> None:
    with pytest.raises(ValueError, match=re.escape(missing)):
        between(text, MARKERS, [])


def test_each_block_is_replaced_by_what_its_argument_gives() -> None:
    text = (
        "<!-- record: a.json -->\nold\n<!-- end of record -->\n"
        "prose\n"
        "<!-- record: b.json -->\n<!-- end of record -->\n"
    )
    new = each_between(
        text, "<!-- record: {} -->", "<!-- end of record -->", lambda name: [name.upper()]
    )
    assert new == (
        "<!-- record: a.json -->\nA.JSON\n<!-- end of record -->\n"
        "prose\n"
        "<!-- record: b.json -->\nB.JSON\n<!-- end of record -->\n"
    )
