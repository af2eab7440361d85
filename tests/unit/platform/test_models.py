"""The Open API models: every NodeLimits field, maxTime, strictness, envelope, limits file."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.platform_helpers import limits_data
from webhook.core.limits import (
    AcceleratorType,
    LimitsFile,
    MaxTimeError,
    NodeLimits,
    parse_max_time,
)
from webhook.platform.models import CenterInfo, Envelope, ErrorCode, RegionToken, ResourceGroupEntry


def entry(**overrides: Any) -> dict[str, Any]:
    return {**limits_data(), "acceleratorType": "gpu", **overrides}


def test_documented_example_parses_every_field() -> None:
    limits = NodeLimits.model_validate(limits_data(gpuNumber=2, nodeNumber=1))
    assert (limits.cpuNumber, limits.memorySize, limits.gpuNumber) == (40, 31888, 2)
    assert (limits.nvLimits, limits.dcuLimits, limits.mluLimits) == (0, 0, 0)
    assert (limits.resourceGroup, limits.nodeNumber, limits.maxTime) == ("TeslaM40", 1, "unlimited")
    assert (limits.id, limits.userName, limits.acceleratorType) == (None, None, None)


def test_unknown_fields_from_the_platform_are_ignored() -> None:
    assert NodeLimits.model_validate(limits_data(newField=1)).cpuNumber == 40


def test_node_limits_are_frozen() -> None:
    limits = NodeLimits.model_validate(limits_data())
    with pytest.raises(ValidationError):
        limits.cpuNumber = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("cpuNumber", "40", id="numeric-string"),
        pytest.param("cpuNumber", 40.0, id="float"),
        pytest.param("gpuNumber", True, id="bool"),
        pytest.param("memorySize", -1, id="negative"),
        pytest.param("memorySize", None, id="null-required"),
        pytest.param("resourceGroup", 7, id="group-not-string"),
        pytest.param("maxTime", 60, id="maxtime-not-string"),
        pytest.param("nvLimits", "0", id="vendor-cap-string"),
    ],
)
def test_wrong_types_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        NodeLimits.model_validate(limits_data(**{field: value}))


@pytest.mark.parametrize(
    "field", ["cpuNumber", "gpuNumber", "memorySize", "resourceGroup", "maxTime"]
)
def test_required_field_missing_is_rejected(field: str) -> None:
    data = limits_data()
    del data[field]
    with pytest.raises(ValidationError):
        NodeLimits.model_validate(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("unlimited", None, id="unlimited"),
        pytest.param("UNLIMITED", None, id="scontrol-case"),
        pytest.param("infinite", None, id="sinfo"),
        pytest.param("30", timedelta(minutes=30), id="MM"),
        pytest.param("30:15", timedelta(minutes=30, seconds=15), id="MM:SS"),
        pytest.param("01:00:00", timedelta(hours=1), id="HH:MM:SS"),
        pytest.param("2-12", timedelta(days=2, hours=12), id="D-HH"),
        pytest.param("2-12:30", timedelta(days=2, hours=12, minutes=30), id="D-HH:MM"),
        pytest.param("1-00:00:01", timedelta(days=1, seconds=1), id="D-HH:MM:SS"),
    ],
)
def test_max_time_formats_parse(text: str, expected: timedelta | None) -> None:
    assert parse_max_time(text) == expected


@pytest.mark.parametrize("text", ["", "none", "1h", "1:2:3:4", "-5", "1-", "12:xx", "1.5"])
def test_unparseable_max_time_is_an_error(text: str) -> None:
    with pytest.raises(MaxTimeError, match="maxTime"):
        parse_max_time(text)


def test_node_limits_with_unparseable_max_time_is_invalid() -> None:
    with pytest.raises(ValidationError, match="maxTime"):
        NodeLimits.model_validate(limits_data(maxTime="soon"))


def test_accelerator_type_is_case_insensitive() -> None:
    limits = NodeLimits.model_validate(entry(acceleratorType="DCU"))
    assert limits.acceleratorType is AcceleratorType.DCU


def test_unknown_accelerator_type_names_the_accepted_values() -> None:
    with pytest.raises(ValueError, match=r"gpu\|dcu\|mlu\|cpu"):
        AcceleratorType.parse("tpu")


@pytest.mark.parametrize(
    ("cap", "expected"), [(0, 8), (None, 8), (-1, 8), (4, 4), (16, 8)], ids=str
)
def test_card_cap_uses_positive_vendor_limit_only(cap: int | None, expected: int) -> None:
    limits = NodeLimits.model_validate(limits_data(gpuNumber=8, dcuLimits=cap))
    assert limits.card_cap(AcceleratorType.DCU) == expected


def test_envelope_code_must_be_a_string() -> None:
    with pytest.raises(ValidationError):
        Envelope.model_validate({"code": 0, "msg": "ok", "data": None}, strict=True)


def test_envelope_is_ok_only_for_code_zero() -> None:
    assert Envelope(code="0").ok
    assert not Envelope(code="10001").ok


def test_every_spec_error_code_has_a_meaning() -> None:
    assert all(code.meaning for code in ErrorCode)
    assert ErrorCode.lookup("10004") is ErrorCode.INVALID_PARAMETERS
    assert ErrorCode.lookup("716020") is None


def test_region_token_repr_hides_the_token() -> None:
    assert "secret-jwt" not in repr(RegionToken(clusterId="1", token="secret-jwt"))


def test_center_entry_enabled_accepts_string_and_bool() -> None:
    info = CenterInfo.model_validate(
        {"aiUrls": [{"enable": "true", "url": "a"}, {"enable": False, "url": "b"}]}
    )
    assert [u.enabled for u in info.aiUrls] == [True, False]


def test_resource_group_entry_type_is_optional() -> None:
    assert ResourceGroupEntry.model_validate({"resourceGroup": "g"}).acceleratorType is None


def test_limits_file_entry_needs_an_accelerator_type() -> None:
    with pytest.raises(ValidationError, match="has no acceleratorType"):
        LimitsFile.model_validate({"resourceGroups": [limits_data()]})


def test_limits_file_rejects_duplicate_group_and_type() -> None:
    with pytest.raises(ValidationError, match="duplicate resourceGroup 'TeslaM40'"):
        LimitsFile.model_validate({"resourceGroups": [entry(), entry()]})


def test_limits_file_allows_one_group_under_two_types() -> None:
    parsed = LimitsFile.model_validate({"resourceGroups": [entry(), entry(acceleratorType="cpu")]})
    assert len(parsed.resourceGroups) == 2


def test_limits_file_rejects_unknown_top_level_keys() -> None:
    with pytest.raises(ValidationError, match="extra"):
        LimitsFile.model_validate({"resourceGroups": [], "groups": []})
