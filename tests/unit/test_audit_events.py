"""webhook.audit.events: a Warning Event per violating object, at most per_run an audit,
the same finding again only after repeat_after; a failed write is retried next time."""

from __future__ import annotations

from typing import Any

from webhook.audit.cluster import ApiError
from webhook.audit.events import NOTE_LIMIT, EventOptions, EventRecorder, violation_event
from webhook.audit.scan import AuditReport
from webhook.check import Result
from webhook.core.limits import AcceleratorType
from webhook.core.policy import Decision, Violation
from webhook.manifests import Document


class Events:
    """Records POSTed Events; refuses those whose path is in ``refuse``."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.refuse = refuse

    def request(
        self, method: str, path: str, query: Any = None, body: Any = None, content_type: str = ""
    ) -> Any:
        assert method == "POST"
        if path in self.refuse:
            raise ApiError(403, "forbidden")
        self.posted.append((path, body))
        return body


def result(name: str = "train", cards: str = "16", violating: bool = True) -> Result:
    violations = (
        (Violation("nvidia.com/gpu", cards, "4", "cards", f"nvidia.com/gpu {cards} > 4"),)
        if violating
        else ()
    )
    decision = Decision(
        "batch/v1", "Job", "team-a", name, "a800x8", AcceleratorType.GPU, violations
    )
    obj = {"metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}"}}
    return Result(Document("cluster /apis/batch/v1/jobs", 1, "", obj), decision)


def audit(*results: Result) -> AuditReport:
    return AuditReport(results=list(results))


def test_a_violating_object_gets_a_warning_event_regarding_it() -> None:
    event = violation_event(result(), now=1_800_000_000.0, instance="audit-0")
    assert event["type"] == "Warning"
    assert event["metadata"]["namespace"] == "team-a"
    assert event["regarding"] == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "train",
        "namespace": "team-a",
        "uid": "uid-train",
    }
    assert event["note"] == result().decision.message
    assert event["reportingController"] == "nodelimits.io/audit"
    assert event["eventTime"].endswith("Z")


def test_a_long_message_is_cut_to_what_the_api_accepts() -> None:
    event = violation_event(result(name="x" * 300, cards="9" * 2000), now=0.0, instance="a")
    assert len(event["note"]) == NOTE_LIMIT
    assert event["note"].endswith("...")
    assert len(event["metadata"]["name"]) <= 253


def test_objects_that_fit_get_no_event() -> None:
    api = Events()
    sent = EventRecorder(api, "a").record(audit(result(violating=False)), now=0.0)
    assert (sent.sent, api.posted) == (0, [])


def test_the_same_finding_is_not_repeated_within_repeat_after() -> None:
    api = Events()
    recorder = EventRecorder(api, "a", EventOptions(repeat_after=600))
    recorder.record(audit(result()), now=1000.0)
    again = recorder.record(audit(result()), now=1500.0)
    assert again.sent == 0
    later = recorder.record(audit(result()), now=1601.0)
    assert later.sent == 1
    assert len(api.posted) == 2


def test_a_changed_finding_is_news_at_once() -> None:
    api = Events()
    recorder = EventRecorder(api, "a")
    recorder.record(audit(result(cards="16")), now=1000.0)
    assert recorder.record(audit(result(cards="32")), now=1001.0).sent == 1


def test_over_per_run_the_rest_are_deferred_to_the_next_audits() -> None:
    api = Events()
    recorder = EventRecorder(api, "a", EventOptions(per_run=2))
    findings = audit(*(result(name=f"j{i}") for i in range(5)))
    first = recorder.record(findings, now=0.0)
    assert (first.sent, first.deferred) == (2, 3)
    second = recorder.record(findings, now=1.0)
    assert (second.sent, second.deferred) == (2, 1)
    third = recorder.record(findings, now=2.0)
    assert (third.sent, third.deferred) == (1, 0)
    assert sorted(body["regarding"]["name"] for _, body in api.posted) == [
        f"j{i}" for i in range(5)
    ]


def test_a_refused_write_is_counted_and_tried_again_next_audit() -> None:
    path = "/apis/events.k8s.io/v1/namespaces/team-a/events"
    api = Events(refuse=(path,))
    recorder = EventRecorder(api, "a")
    assert recorder.record(audit(result()), now=0.0).failed == 1
    api.refuse = ()
    assert recorder.record(audit(result()), now=1.0).sent == 1
    assert api.posted[0][0] == path
