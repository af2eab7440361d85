"""The accelerator resource table: which resource names are cards, which only reveal a type.

Rules are tried in order and the first match wins (``fnmatch`` globs), so a specific rule
(``cambricon.com/*.smlu.*`` -> virtual) sits before a general one (``cambricon.com/mlu[0-9]*``
-> cards). :class:`DeviceTable` is the table compiled once, when the settings are
validated: it is the value of ``PolicySettings.accelerators``, so whoever holds the
settings holds the compiled table, and nothing is looked up in a hidden memo.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from webhook.core.limits import AcceleratorType

__all__ = [
    "DEFAULT_ACCELERATORS",
    "AcceleratorRule",
    "DeviceCount",
    "DeviceTable",
]

_MEMO_BOUND = 10_000  # resource names come from user objects: the memo must stay bounded


class DeviceCount(enum.StrEnum):
    CARDS = "cards"  # whole physical cards: counted against gpuNumber
    VIRTUAL = "virtual"  # slices, shares, memory, cores: reveal the type, never counted


class AcceleratorRule(BaseModel):
    """One row of the accelerator resource table.

    ``pattern`` is a resource name or a glob (``fnmatch``: ``*``, ``?``, ``[0-9]``).
    Rules are tried in order and the first match wins, so list specific rules first.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    pattern: Annotated[str, Field(min_length=1)]
    type: AcceleratorType
    count: DeviceCount = DeviceCount.CARDS


class DeviceTable(tuple[AcceleratorRule, ...]):
    """The rules, in order, with the answer for every resource name already looked up.

    A tuple, so it validates, compares, hashes and serialises as the list of rules it is;
    the memo of looked-up names (bounded) is what makes it "compiled": resource names
    repeat endlessly across reviews, and a dict lookup costs less than the globs.
    """

    _memo: dict[str, AcceleratorRule | None]

    def __new__(cls, rules: Iterable[AcceleratorRule] = ()) -> DeviceTable:
        table = super().__new__(cls, rules)
        table._memo = {}
        return table

    def rule(self, resource: str) -> AcceleratorRule | None:
        """The first rule whose pattern matches ``resource``, or None."""
        memo = self._memo
        if resource in memo:
            return memo[resource]
        # Case-insensitive: the apiserver accepts `nvidia.com/GPU: 8`, no node offers it, and
        # it must not slip past a card rule into a non-counted glob (issue 12, finding 11).
        folded = resource.lower()
        found = next((r for r in self if fnmatch.fnmatchcase(folded, r.pattern.lower())), None)
        if len(memo) < _MEMO_BOUND:
            memo[resource] = found
        return found


def _rule(pattern: str, type_: AcceleratorType, count: DeviceCount) -> AcceleratorRule:
    return AcceleratorRule(pattern=pattern, type=type_, count=count)


_GPU, _DCU, _MLU = AcceleratorType.GPU, AcceleratorType.DCU, AcceleratorType.MLU
_CARDS, _VIRTUAL = DeviceCount.CARDS, DeviceCount.VIRTUAL
DEFAULT_ACCELERATORS: tuple[AcceleratorRule, ...] = (
    _rule("nvidia.com/gpu", _GPU, _CARDS),
    # MIG slices, time-sliced replicas (gpu.shared), HAMi gpumem/gpucores: not cards.
    _rule("nvidia.com/*", _GPU, _VIRTUAL),
    _rule("hygon.com/dcu", _DCU, _CARDS),
    # dcu-share-*, dcu-mig-*, HAMi dcunum/dcumem/dcucores, hcu*: not cards.
    _rule("hygon.com/*", _DCU, _VIRTUAL),
    # Shares, MIM slices and sMLU fractions, also of per-model names (mlu370.smlu.vcore).
    _rule("cambricon.com/*.smlu.*", _MLU, _VIRTUAL),
    _rule("cambricon.com/*.share", _MLU, _VIRTUAL),
    _rule("cambricon.com/*.mim-*", _MLU, _VIRTUAL),
    _rule("cambricon.com/mlu", _MLU, _CARDS),
    _rule("cambricon.com/mlu[0-9]*", _MLU, _CARDS),  # per-model whole cards: mlu370, mlu590
    _rule("cambricon.com/*", _MLU, _VIRTUAL),  # vmlu, HAMi mlunum/mlumem
)
