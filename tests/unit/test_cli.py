"""The command line: a wrong argument is refused before anything runs, with a message that says what is expected."""

import pytest

from mlscale.cli import main


def _refused(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_an_unknown_model_names_the_specs_there_are(capsys):
    for argv in (["train", "churn"], ["promote", "churn"], ["monitor", "revenue"], ["simulate", "--model", "x"]):
        err = _refused(capsys, argv)
        assert "no model spec" in err and "include/models (there are: churn_90d, revenue_90d)" in err, argv


def test_a_malformed_date_or_day_says_what_it_expects(capsys):
    assert "argument --as-of: not a date (YYYY-MM-DD): '2026-13-01'" in _refused(
        capsys, ["score", "churn_90d", "--as-of", "2026-13-01"])
    assert "argument --concept-drift-day: expected a day number or 'none', got 'soon'" in _refused(
        capsys, ["simulate", "--concept-drift-day", "soon"])
    assert "argument --customers: invalid int value: 'many'" in _refused(capsys, ["generate", "--customers", "many"])


def test_a_missing_command_or_argument_is_named(capsys):
    assert "the following arguments are required: command" in _refused(capsys, [])
    assert "the following arguments are required: model" in _refused(capsys, ["train"])
    assert "invalid choice: 'trian'" in _refused(capsys, ["trian", "churn_90d"])
