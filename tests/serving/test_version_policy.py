"""serving.json's version_policy, labels and default_version, and the policy applied to the versions found."""
from __future__ import annotations

import pytest

from app.serving.model_settings import VersionPolicy, parse_model_settings, read_model_settings
from app.serving.version_policy import aspired_versions, missing_versions


def _policy(document: dict) -> VersionPolicy:
    return parse_model_settings({"version_policy": document}).version_policy


@pytest.mark.parametrize("document,described", [
    ({"all": {}}, "all"),
    ({"latest": {"num_versions": 2}}, "latest(num_versions=2)"),
    ({"latest": {}}, "latest(num_versions=1)"),
    ({"specific": {"versions": [3, 1]}}, "specific(versions=[3, 1])"),
])
def test_each_policy_parses_and_names_itself(document, described):
    assert str(_policy(document)) == described


def test_no_policy_means_all_versions_and_no_labels():
    model = parse_model_settings({})
    assert (str(model.version_policy), model.labels, model.default_version) == ("all", {}, None)


def test_labels_and_default_version_parse():
    model = parse_model_settings({"labels": {"stable": 1, "canary-2.b_x": 2}, "default_version": 1})
    assert (model.labels, model.default_version) == ({"stable": 1, "canary-2.b_x": 2}, 1)


@pytest.mark.parametrize("text,reason", [
    ('{"version_policy": {}}', "version_policy: must hold exactly one of all, latest, specific"),
    ('{"version_policy": {"all": {}, "latest": {"num_versions": 1}}}',
     "version_policy: must hold exactly one of all, latest, specific"),
    ('{"version_policy": {"newest": {}}}', "version_policy.newest: extra inputs are not permitted"),
    ('{"version_policy": "latest"}', "version_policy: input should be a valid dictionary"),
    ('{"version_policy": {"all": {"x": 1}}}', "version_policy.all.x: extra inputs are not permitted"),
    ('{"version_policy": {"latest": {"num_versions": 0}}}',
     "version_policy.latest.num_versions: input should be greater than or equal to 1"),
    ('{"version_policy": {"latest": {"num_versions": 1.5}}}',
     "version_policy.latest.num_versions: input should be a valid integer"),
    ('{"version_policy": {"specific": {"versions": []}}}',
     "version_policy.specific.versions: tuple should have at least 1 item"),
    ('{"version_policy": {"specific": {}}}', "version_policy.specific.versions: field required"),
    ('{"version_policy": {"specific": {"versions": [1, -2]}}}',
     "version_policy.specific.versions.1: input should be greater than or equal to 1"),
    ('{"version_policy": {"specific": {"versions": [true]}}}',
     "version_policy.specific.versions.0: input should be a valid integer"),
    ('{"labels": {"has space": 1}}', "labels.has space.\\[key\\]: string should match pattern"),
    ('{"labels": {"stable": 0}}', "labels.stable: input should be greater than or equal to 1"),
    ('{"labels": {"stable": "1"}}', "labels.stable: input should be a valid integer"),
    ('{"labels": [1]}', "labels: input should be a valid dictionary"),
    ('{"default_version": 0}', "default_version: input should be greater than or equal to 1"),
    ('{"default_version": "2"}', "default_version: input should be a valid integer"),
])
def test_bad_documents_fail_with_a_one_line_reason(tmp_path, text, reason):
    path = tmp_path / "serving.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^serving.json is invalid: {reason}") as caught:
        read_model_settings(path)
    assert "\n" not in str(caught.value)


def test_all_aspires_every_version_found():
    assert aspired_versions(_policy({"all": {}}), [3, 1, 2]) == ([1, 2, 3], [])


def test_latest_aspires_the_highest_version_numbers_found():
    aspired, not_aspired = aspired_versions(_policy({"latest": {"num_versions": 2}}), [1, 10, 2])
    assert aspired == [2, 10]
    assert not_aspired == [(1, "outside the version policy latest(num_versions=2)")]


def test_latest_with_fewer_versions_than_asked_aspires_them_all():
    assert aspired_versions(_policy({"latest": {"num_versions": 5}}), [1, 2]) == ([1, 2], [])


def test_specific_aspires_the_versions_listed_and_reports_the_missing_ones():
    policy = _policy({"specific": {"versions": [1, 3, 7]}})
    aspired, not_aspired = aspired_versions(policy, [1, 2, 3])
    assert aspired == [1, 3]
    assert not_aspired == [(2, "outside the version policy specific(versions=[1, 3, 7])")]
    assert missing_versions(policy, [1, 2, 3]) == [7]
    assert missing_versions(_policy({"latest": {}}), [1]) == []
