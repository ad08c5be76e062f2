import pytest
from hypothesis import given
from hypothesis import strategies as st

from autonomath_pipelines.lib.files import atomic_write_text, is_safe_file_name, safe_path


@pytest.mark.parametrize("name", ["../x.py", "a/b.py", "/etc/passwd", "..", ".hidden", "", "a\\b", "x\x00.py", "ü.py"])
def test_unsafe_names_are_refused(tmp_path, name):
    assert not is_safe_file_name(name)
    with pytest.raises(ValueError, match="unsafe file name"):
        safe_path(tmp_path, name)


def test_safe_name_stays_in_its_folder(tmp_path):
    assert safe_path(tmp_path, "gold_proposed_2026-10.yaml") == (tmp_path / "gold_proposed_2026-10.yaml").resolve()


@given(st.text(max_size=40))
def test_a_safe_name_never_leaves_the_folder(name):
    if is_safe_file_name(name):
        assert "/" not in name and "\\" not in name and ".." not in name


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_generated_mark_tells_untouched_from_edited_text():
    from autonomath_pipelines.lib.files import edited_since_generated, mark_generated

    text = mark_generated("line one\nline two")
    assert not edited_since_generated(text)
    assert edited_since_generated(text.replace("two", "2"))
    assert edited_since_generated("no mark at all\n")
    assert mark_generated("a\n").count("\n") == 2
