"""Release 0.1's spellings of B still work for one release: typed ones warn, saved ones are read.

B is `grouping` wherever a user types it: `grouping:` / `grouping_args:` in a YAML and in
`--metadata`, the filter `semcal_grouping`, `--grouping` / `--grouping-args`, and
`Grouping`, `get_grouping`, ... in Python. The runs saved in tests/fixtures/runs were
written in release 0.1's spelling (`semcal_classes`, `collapse`), and
test_releases.py reads and rescores them.
"""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
from conftest import FIXTURES

import lm_eval_semcal
from lm_eval_semcal import cli, grouping
from lm_eval_semcal.core.records import QuestionRecord
from lm_eval_semcal.core.spellings import OLD_PYTHON_NAMES, renamed_settings
from lm_eval_semcal.grouping.scoring_step import FILTER_NAME, in_todays_spelling

SAVED_RUN = FIXTURES / "runs" / "lm-eval-0.4.13"


def test_old_setting_names_are_read_as_todays_in_order():
    assert renamed_settings({"style": "cot", "collapse": "llm", "collapse_args": {"judge": True}}, warn=False) == {
        "style": "cot",
        "grouping": "llm",
        "grouping_args": {"judge": True},
    }
    assert renamed_settings({"grouping": "exact"}, warn=False) == {"grouping": "exact"}


def test_a_typed_old_name_warns_and_a_saved_one_does_not():
    with pytest.warns(FutureWarning, match="collapse is now spelled grouping"):
        renamed_settings({"collapse": "exact"}, warn=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        renamed_settings({"collapse": "exact"}, warn=False)


def test_both_spellings_of_one_setting_are_refused():
    with pytest.raises(ValueError, match="both collapse_args and grouping_args are given: keep grouping_args"):
        renamed_settings({"collapse_args": {}, "grouping_args": {}}, warn=False)


def test_a_saved_scoring_step_reads_in_todays_spelling_under_either_layout():
    assert in_todays_spelling({"function": "semcal_classes", "kwargs": {"collapse": "nli"}}, warn=False) == {
        "function": FILTER_NAME,
        "kwargs": {"grouping": "nli"},
    }
    with pytest.warns(FutureWarning, match="semcal_classes is now spelled semcal_grouping"):
        in_todays_spelling({"function": "semcal_classes"}, warn=True)


@pytest.mark.parametrize("old", sorted(OLD_PYTHON_NAMES))
def test_release_0_1_python_names_are_todays_objects(old):
    with pytest.warns(DeprecationWarning, match=f"lm_eval_semcal.grouping.{old} is now lm_eval_semcal.grouping.{OLD_PYTHON_NAMES[old]}"):
        value = getattr(grouping, old)
    assert value is getattr(grouping, OLD_PYTHON_NAMES[old])


def test_the_package_root_keeps_its_0_1_names_of_b():
    with pytest.warns(DeprecationWarning, match="lm_eval_semcal.get_collapser is now lm_eval_semcal.get_grouping"):
        assert lm_eval_semcal.get_collapser is lm_eval_semcal.get_grouping
    with pytest.raises(AttributeError, match="has no attribute 'check_collapser'"):
        lm_eval_semcal.check_collapser  # noqa: B018 (never exported at the root)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        lm_eval_semcal.no_such_name  # noqa: B018


def test_a_record_saved_as_collapse_reads_back_as_grouping():
    record = lm_eval_semcal.score_question("Q", ["Paris", "paris", "Lyon"], ["Paris"], lm_eval_semcal.get_grouping("normalize"))
    saved = record.to_dict()
    assert saved["grouping"] == "normalize" and "collapse" not in saved
    saved_by_0_1 = {("collapse" if key == "grouping" else key): value for key, value in saved.items()}
    assert QuestionRecord.read(json.dumps(saved_by_0_1)) == record


@pytest.mark.harness
def test_the_filter_takes_release_0_1_settings_with_a_warning():
    from lm_eval.api.registry import get_filter

    from lm_eval_semcal.harness.filter import SemanticClassesFilter

    assert get_filter("semcal_classes") is get_filter(FILTER_NAME) is SemanticClassesFilter
    with pytest.warns(FutureWarning) as warned:
        semcal_filter = SemanticClassesFilter(collapse="exact", collapse_args={})
    assert sorted(str(warning.message).split(";")[0] for warning in warned) == [
        "collapse is now spelled grouping",
        "collapse_args is now spelled grouping_args",
    ]
    assert semcal_filter.step.grouping == "exact"
    with pytest.raises(ValueError, match="both collapse and grouping are given"):
        SemanticClassesFilter(collapse="exact", grouping="exact")


@pytest.mark.harness
def test_cli_classes_is_grouping_with_a_warning(tmp_path, capsys):
    old, new = (shutil.copytree(SAVED_RUN, tmp_path / name) for name in ("old", "new"))
    assert cli.main(["rescore", str(old), "--classes", "exact", "--classes-args={}", "--bootstrap-iters", "0"]) == 0
    err = capsys.readouterr().err
    assert "semcal rescore: warning: --classes is now spelled --grouping" in err
    assert "--classes-args is now spelled --grouping-args" in err
    assert cli.main(["rescore", str(new), "--grouping", "exact", "--grouping-args", "{}", "--bootstrap-iters", "0"]) == 0
    assert "warning" not in capsys.readouterr().err
    (old_results,), (new_results,) = (list(run.rglob("rescored-exact/results_*.json")) for run in (old, new))
    old_json, new_json = (json.loads(path.read_text()) for path in (old_results, new_results))
    assert old_json["results"] == new_json["results"]
    step = old_json["configs"]["semcal_triviaqa"]["filter_list"][0]["filter"][0]
    assert step["function"] == FILTER_NAME and step["grouping"] == "exact" and "collapse" not in step
