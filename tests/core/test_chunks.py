import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepwiser.core.chunks import (
    is_valid_segmentation,
    outside_text,
    parse_chunks,
    render_chunks,
    segmentation_problems,
    strip_tags,
)


def test_render_styles_exact():
    assert render_chunks(["a", "b"], "tags") == "<chunk>a</chunk>\n<chunk>b</chunk>"
    assert render_chunks(["a", "b"], "blank") == "a\n\nb"
    assert render_chunks([], "tags") == ""


def test_unknown_style_names_allowed_values():
    with pytest.raises(ValueError, match="tags, blank"):
        render_chunks(["a"], "lines")
    with pytest.raises(ValueError, match="tags, blank"):
        parse_chunks("a", "lines")


def test_missing_final_close_tag():
    assert parse_chunks("<chunk>x = 2</chunk>\n<chunk>so \\boxed{4}") == ["x = 2", "so \\boxed{4}"]


def test_text_outside_tags_is_not_a_chunk_but_is_reported():
    text = "Sure!\n<chunk>a</chunk> then <chunk>b</chunk>\nDone."
    assert parse_chunks(text) == ["a", "b"]
    assert outside_text(text) == "Sure! then Done."
    assert outside_text(render_chunks(["a", "b"])) == ""


def test_empty_and_whitespace_chunks_are_dropped():
    assert parse_chunks("<chunk></chunk><chunk>  \n</chunk><chunk>a</chunk>") == ["a"]


def test_nested_open_closes_previous_and_stray_close_ignored():
    assert parse_chunks("<chunk>a<chunk>b</chunk>") == ["a", "b"]
    assert parse_chunks("</chunk><chunk>a</chunk></chunk>") == ["a"]


def test_no_tags_gives_no_chunks():
    assert parse_chunks("just text \\boxed{3}") == []


def test_blank_parsing_strips_and_collapses():
    assert parse_chunks("a\n\n\nb\n \n c\n", "blank") == ["a", "b", "c"]
    assert parse_chunks("a\nb", "blank") == ["a\nb"]


chunk_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@given(st.lists(chunk_text.filter(lambda s: s.strip() and "<chunk>" not in s and "</chunk>" not in s),
                max_size=8))
def test_roundtrip_tags(chunks):
    assert parse_chunks(render_chunks(chunks, "tags"), "tags") == chunks


@given(st.lists(chunk_text.map(str.strip).filter(lambda s: s and "\n" not in s), max_size=8))
def test_roundtrip_blank(chunks):
    assert parse_chunks(render_chunks(chunks, "blank"), "blank") == chunks


@given(st.lists(chunk_text.filter(lambda s: s.strip() and "chunk>" not in s), min_size=1, max_size=6))
def test_roundtrip_missing_final_close(chunks):
    text = render_chunks(chunks, "tags")
    assert parse_chunks(text[: -len("</chunk>")], "tags") == chunks


def test_segmentation_validation():
    original = "First, 3 * 4 = 12.\nThen 12 + 1 = 13.\n\nSo \\boxed{13}."
    good = "<chunk>First, 3 * 4 = 12.\nThen 12 + 1 = 13.</chunk>\n\n<chunk>So \\boxed{13}.</chunk>"
    assert is_valid_segmentation(good, original)
    assert strip_tags(good) == original
    # a changed character, text outside tags, unclosed and nested tags are all rejected
    assert "does not reproduce" in segmentation_problems(good.replace("13.", "14.", 1), original)[0]
    assert any("outside" in p for p in segmentation_problems(
        "First, 3 * 4 = 12.\n<chunk>Then 12 + 1 = 13.\n\nSo \\boxed{13}.</chunk>", original))
    assert any("not closed" in p for p in segmentation_problems(good[: -len("</chunk>")], original))
    nested = "<chunk>First, 3 * 4 = 12.\n<chunk>Then 12 + 1 = 13.</chunk>\n\nSo \\boxed{13}.</chunk>"
    assert any("nested" in p for p in segmentation_problems(nested, original))
    assert "no non-empty chunk" in segmentation_problems("", "")
