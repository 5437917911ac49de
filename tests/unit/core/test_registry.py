"""The workflow registry: names, aliases and payload validation (no database)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field

from orchestrator._context import WorkflowContext
from orchestrator._errors import InvalidPayload, UnknownWorkflow
from orchestrator._registry import Registry, Workflow
from orchestrator._retry import RetryPolicy
from tests import fix_db


class Address(BaseModel):
    city: str
    zip_code: str = Field(pattern=r"^\d{5}$")


class Order(BaseModel):
    client: str = Field(min_length=1)
    quantity: int = Field(ge=1)
    address: Address | None = None


async def _run(ctx: WorkflowContext, data: Any) -> None:
    return None


def _workflow(name: str, *aliases: str) -> Workflow[Any]:
    return Workflow(name=name, input_model=Order, run=_run, aliases=aliases)


def test_names_are_sorted_canonical_names() -> None:
    registry = fix_db.registry_for_tests()
    assert registry.names() == [
        "chain",
        "crash",
        "flaky",
        "flaky_fast",
        "noop",
        "steps",
        "suicide",
        "write_row",
    ]
    assert len(registry) == 8
    assert sorted(w.name for w in registry) == registry.names()


@pytest.mark.parametrize("name", ["write_row", "write", "WRITE", "  write_row  "])
def test_aliases_and_case_resolve_to_the_same_workflow(name: str) -> None:
    registry = fix_db.registry_for_tests()
    assert registry.get(name).name == "write_row"
    assert name in registry


def test_contains_rejects_unknown_and_non_strings() -> None:
    registry = fix_db.registry_for_tests()
    assert "nope" not in registry
    assert 3 not in registry


def test_unknown_workflow_message_names_it_and_lists_known_ones() -> None:
    registry = fix_db.registry_for_tests()
    with pytest.raises(UnknownWorkflow) as info:
        registry.get("pt9")
    message = str(info.value)
    assert "'pt9'" in message
    for known in registry.names():
        assert known in message


def test_unknown_workflow_in_empty_registry() -> None:
    with pytest.raises(UnknownWorkflow, match=r"known: none"):
        Registry().get("pt1")


def test_valid_payload_is_parsed_into_the_input_model() -> None:
    workflow = _workflow("orders")
    data = workflow.parse({"client": "Acme", "quantity": "3"})
    assert isinstance(data, Order)
    assert data.quantity == 3


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"quantity": 1}, "client"),
        ({"client": "", "quantity": 1}, "client"),
        ({"client": "Acme", "quantity": 0}, "quantity"),
        ({"client": "Acme", "quantity": "many"}, "quantity"),
        ({"client": "Acme", "quantity": 1, "address": {"city": "X", "zip_code": "1"}}, None),
    ],
)
def test_invalid_payload_names_the_field(payload: dict[str, Any], field: str | None) -> None:
    workflow = _workflow("orders")
    with pytest.raises(InvalidPayload) as info:
        workflow.parse(payload)
    message = str(info.value)
    assert "'orders'" in message
    if field is None:
        assert "address.zip_code" in message  # nested fields are named by their path
    else:
        assert f"{field}:" in message


def test_every_invalid_field_is_reported() -> None:
    with pytest.raises(InvalidPayload) as info:
        _workflow("orders").parse({"client": "", "quantity": 0})
    assert "client:" in str(info.value)
    assert "quantity:" in str(info.value)


@pytest.mark.parametrize("payload", [[1, 2], "text", None, 3])
def test_payload_must_be_an_object(payload: object) -> None:
    with pytest.raises(InvalidPayload, match="must be a JSON object"):
        _workflow("orders").parse(payload)


@pytest.mark.parametrize("name", ["", "PT1", "1abc", "with-dash", "a" * 64, "sp ace"])
def test_invalid_workflow_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must be lowercase"):
        _workflow(name)


def test_invalid_alias_is_refused() -> None:
    with pytest.raises(ValueError, match="must be lowercase"):
        _workflow("orders", "Bad-Alias")


def test_a_name_cannot_be_registered_twice() -> None:
    registry = Registry([_workflow("orders")])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_workflow("orders"))


def test_an_alias_cannot_shadow_another_workflow() -> None:
    registry = Registry([_workflow("orders", "pt1")])
    with pytest.raises(ValueError, match="already taken by 'orders'"):
        registry.register(_workflow("invoices", "pt1"))
    with pytest.raises(ValueError, match="already taken by 'orders'"):
        registry.register(_workflow("pt1"))
    assert registry.names() == ["orders"]


def test_registering_the_same_object_twice_is_harmless() -> None:
    workflow = _workflow("orders", "o")
    registry = Registry([workflow])
    registry.register(workflow)
    assert registry.names() == ["orders"]


def test_workflow_defaults() -> None:
    workflow = _workflow("orders")
    assert workflow.retry is None
    assert workflow.queue == "default"
    assert workflow.secret_fields == frozenset()
    assert fix_db.registry_for_tests().get("flaky_fast").retry == RetryPolicy(attempts=3, delay=0.2)
