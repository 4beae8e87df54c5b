"""The YAML rule-file loader: each mistake names the file, the field path, the reason and the
line, and the value only when the caller allows it (values can be personal data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from schemas.rule_files import RuleFileError, load_rule_file


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    days: int


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str
    steps: list[Step]
    limits: dict[str, int] = {}


GOOD = """\
owner: crm
steps:
  - name: first
    days: 1
  - name: second
    days: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def problem(path: Path, text: str, **options: object) -> str:
    with pytest.raises(RuleFileError) as raised:
        load_rule_file(write(path, text), Rules, **options)  # type: ignore[arg-type]
    return str(raised.value)


def test_a_good_file_gives_the_model(tmp_path: Path) -> None:
    rules = load_rule_file(write(tmp_path, GOOD), Rules)
    assert [(s.name, s.days) for s in rules.steps] == [("first", 1), ("second", 2)]


def test_a_bad_field_names_file_field_path_reason_and_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("days: 2", "days: jane.doe@example.com")  # line 6
    message = problem(tmp_path, text)
    assert message == (
        f"{tmp_path / 'rules.yaml'}: steps.1.days: Input should be a valid integer, "
        "unable to parse string as an integer (line 6)"
    )
    assert "jane.doe" not in message


def test_every_problem_is_reported_at_its_own_line(tmp_path: Path) -> None:
    text = GOOD.replace("  - name: second\n", "  - nmae: second\n") + "limit: {a: 1}\n"
    message = problem(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'rules.yaml'}: ")
    assert "steps.1.name: Field required (line 5)" in message  # the list item that lacks it
    assert "steps.1.nmae: Extra inputs are not permitted (line 5)" in message
    assert "limit: Extra inputs are not permitted (line 7)" in message


def test_a_key_the_whole_file_lacks_has_no_line(tmp_path: Path) -> None:
    message = problem(tmp_path, GOOD.replace("owner: crm\n", ""))
    assert message == f"{tmp_path / 'rules.yaml'}: owner: Field required"


def test_a_dict_key_error_points_at_the_key(tmp_path: Path) -> None:
    message = problem(tmp_path, GOOD + "limits:\n  web: 3\n  app: lots\n")
    assert message.endswith(
        "limits.app: Input should be a valid integer, unable to parse string as an integer (line 9)"
    )


def test_values_are_shown_only_when_the_caller_allows(tmp_path: Path) -> None:
    text = GOOD.replace("days: 2", "days: two")
    assert "'two'" not in problem(tmp_path, text)
    assert "steps.1.days: 'two': Input should be a valid integer" in problem(
        tmp_path, text, show_values=True
    )


def test_a_label_names_the_document_from_its_content(tmp_path: Path) -> None:
    message = problem(tmp_path, "owner: crm\n", label=lambda data: f"rules of '{data['owner']}'")
    assert message == f"{tmp_path / 'rules.yaml'}: rules of 'crm': steps: Field required"


def test_a_yaml_syntax_error_names_its_line_not_the_text(tmp_path: Path) -> None:
    message = problem(tmp_path, "owner: crm\nsteps: [secret-value\n")
    assert message.startswith(f"{tmp_path / 'rules.yaml'}: not valid YAML: ")
    assert message.endswith("(line 3)")
    assert "secret-value" not in message


def test_the_callers_error_type_is_raised(tmp_path: Path) -> None:
    class SegmentProblem(ValueError):
        pass

    with pytest.raises(SegmentProblem, match=r"rules\.yaml: owner: Field required"):
        load_rule_file(write(tmp_path, "steps: []\n"), Rules, error=SegmentProblem)


def test_an_empty_file_is_an_empty_mapping_and_a_missing_file_is_named(tmp_path: Path) -> None:
    assert "owner: Field required; steps: Field required" in problem(tmp_path, "")
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RuleFileError, match=r"nope\.yaml: cannot read the file"):
        load_rule_file(missing, Rules)


def test_the_settings_file_is_loaded_and_checked_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas.settings import Settings

    path = tmp_path / "omnicdp.yaml"
    url = "postgresql://u:pw@db/cdp"
    path.write_text(f"shuffle_partitions: 3\nserving_url: {url}\n")
    monkeypatch.setenv("OMNICDP_CONFIG", str(path))
    assert (Settings().shuffle_partitions, Settings().serving_url) == (3, url)
    path.write_text(f"shuffle_partitions: 3\nserving_urls: {url}\n")
    with pytest.raises(ValueError) as raised:
        Settings()
    assert str(raised.value) == f"{path}: serving_urls: Extra inputs are not permitted (line 2)"
    assert "pw@" not in str(raised.value)
