"""webhook.serve.handlers.served: the webhooks one server registers, operator rows included."""

from __future__ import annotations

from webhook.core.kinds import KindRule
from webhook.serve.handlers import served

ROW = KindRule.model_validate(
    {
        "group": "example.com",
        "version": "v1",
        "kind": "Trainer",
        "plural": "trainers",
        "namespaced": False,
        "pod_sets": [{"each": "spec.roles[*]", "role": "role", "name": "$.name"}],
    }
)
PYTORCH = ROW.model_copy(
    update={"group": "kubeflow.org", "kind": "PyTorchJob", "plural": "pytorchjobs"}
)


def test_an_operator_row_gets_its_own_webhook() -> None:
    handlers = served(["Pod"], [ROW])
    assert [h.path for h in handlers] == ["/pods", "/pods-resize", "/example.com/v1/trainers"]
    trainer = handlers[-1]
    assert (trainer.kind, trainer.object_kind, trainer.namespaced) == (
        "Trainer.example.com",
        "Trainer",
        False,
    )
    assert trainer.operations == {"CREATE", "UPDATE"}


def test_a_row_replacing_an_enabled_built_in_keeps_one_webhook() -> None:
    handlers = served(["Pod", "PyTorchJob.kubeflow.org"], [PYTORCH])
    assert [h.path for h in handlers].count("/kubeflow.org/v1/pytorchjobs") == 1


def test_a_row_replacing_a_disabled_built_in_is_served() -> None:
    handlers = served(["Pod"], [PYTORCH])
    assert "/kubeflow.org/v1/pytorchjobs" in [h.path for h in handlers]
