"""Workflows by name: each maps to a pydantic input model, an async run function and a policy.

Workflows are domain code. They are declared with :class:`Workflow` and collected in a
:class:`Registry`; only the composition root (:mod:`orchestrator._orchestrator`) turns them into
procrastinate tasks. Example::

    class Input(BaseModel):
        client: str

    async def run(ctx: WorkflowContext, data: Input) -> dict[str, int]:
        await ctx.connection.execute("INSERT INTO things (client) VALUES (%s)", [data.client])
        return {"inserted": 1}

    hello = Workflow(name="hello", input_model=Input, run=run, aliases=("say_hello",))

``lock`` serialises jobs: jobs whose payloads give the same key run one at a time, in the order
they were enqueued (procrastinate's ``lock``, kept in the job row, so it survives crashes: a
job left ``doing`` by a dead worker holds it until crash recovery re-queues it)::

    Workflow(name="pt4", ..., lock=lambda data: f"client:{data.client}")
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from orchestrator._errors import InvalidPayload, UnknownWorkflow
from orchestrator._retry import RetryPolicy

if TYPE_CHECKING:
    from orchestrator._context import WorkflowContext
    from orchestrator._preflight import CheckContext

InputT = TypeVar("InputT", bound=BaseModel)
RunResult = Mapping[str, Any] | BaseModel | None
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Workflow(Generic[InputT]):
    """One workflow: its name, aliases, input model, run function and retry policy.

    ``retry=None`` takes the orchestrator's default policy (3 attempts, 5 s then 10 s).
    ``lock`` maps a validated payload to a lock key (``None``: no lock); jobs sharing a key,
    of any workflow, never run at the same time.
    """

    name: str
    input_model: type[InputT]
    run: Callable[[WorkflowContext, InputT], Awaitable[RunResult]]
    aliases: tuple[str, ...] = ()
    retry: RetryPolicy | None = None
    queue: str = "default"
    description: str = ""
    secret_fields: frozenset[str] = field(default_factory=frozenset)
    #: Checks when a person enqueues (``orchestrator enqueue`` and the plugins' commands):
    #: raise :class:`InvalidPayload` to refuse the job, return warnings to show. They see the
    #: database read-only and the settings (:class:`~orchestrator.CheckContext`).
    check: Callable[[CheckContext, InputT], Awaitable[Sequence[str]]] | None = None
    lock: Callable[[InputT], str | None] | None = None

    def __post_init__(self) -> None:
        for name in (self.name, *self.aliases):
            if not _NAME_RE.match(name):
                raise ValueError(
                    f"workflow name {name!r} must be lowercase letters, digits and _ "
                    "(starting with a letter, at most 63 characters)"
                )

    def lock_key(self, data: InputT) -> str | None:
        """The lock key of a job with this (validated) payload, or ``None``."""
        if self.lock is None:
            return None
        key = self.lock(data)
        if key is not None and not 0 < len(key) <= 500:
            raise InvalidPayload(f"lock key of workflow {self.name!r} must be 1 to 500 characters")
        return key

    def parse(self, payload: object) -> InputT:
        """Validate a payload, raising :class:`InvalidPayload` with field-level reasons."""
        if not isinstance(payload, Mapping):
            raise InvalidPayload(
                f"payload for workflow {self.name!r} must be a JSON object, "
                f"got {type(payload).__name__}"
            )
        try:
            return self.input_model.model_validate(dict(payload))
        except ValidationError as exc:
            raise InvalidPayload(
                f"invalid payload for workflow {self.name!r}: "
                f"{describe_validation_error(exc, self.input_model)}"
            ) from None


def describe_validation_error(
    exc: ValidationError,
    model: type[BaseModel] | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """``field: reason; other.field: reason`` with the offending fields named.

    ``labels`` renames top-level fields (a command names its ``--flag`` rather than the
    model's field); with ``model``, an unknown field gets the closest known name. pydantic's
    ``Value error,`` prefix is dropped: the reason is the validator's own sentence.

    >>> from pydantic import BaseModel, ConfigDict
    >>> class Input(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     push_to_clay: bool = False
    >>> try:
    ...     Input.model_validate({"push_to_cly": True})
    ... except ValidationError as exc:
    ...     print(describe_validation_error(exc, Input))
    push_to_cly: unknown field (did you mean 'push_to_clay'?)
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in error["loc"]]
        if loc and labels and loc[0] in labels:
            loc[0] = labels[loc[0]]
        location = ".".join(loc) or "(payload)"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
            if model is not None and len(error["loc"]) == 1:
                known = sorted(model.model_fields)
                close = difflib.get_close_matches(str(error["loc"][0]), known, n=1)
                message += (
                    f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
                )
        parts.append(f"{location}: {message}")
    return "; ".join(parts)


class Registry:
    """Workflows by canonical name and alias."""

    def __init__(self, workflows: Iterable[Workflow[Any]] = ()) -> None:
        self._by_name: dict[str, Workflow[Any]] = {}
        self._aliases: dict[str, str] = {}
        for workflow in workflows:
            self.register(workflow)

    def register(self, workflow: Workflow[Any]) -> None:
        for name in (workflow.name, *workflow.aliases):
            owner = self._aliases.get(name)
            if owner is not None and owner != workflow.name:
                raise ValueError(f"workflow name {name!r} is already taken by {owner!r}")
        if workflow.name in self._by_name and self._by_name[workflow.name] is not workflow:
            raise ValueError(f"workflow {workflow.name!r} is already registered")
        self._by_name[workflow.name] = workflow
        for name in (workflow.name, *workflow.aliases):
            self._aliases[name] = workflow.name

    def get(self, name: str) -> Workflow[Any]:
        """The workflow registered under ``name`` or one of its aliases."""
        canonical = self._aliases.get(name.strip().lower())
        if canonical is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownWorkflow(f"unknown workflow {name!r} (known: {known})")
        return self._by_name[canonical]

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[Workflow[Any]]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._aliases

    def __len__(self) -> int:
        return len(self._by_name)
