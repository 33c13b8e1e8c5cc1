"""The deployments in `deployments/`: forms, files, and the chained example."""

from __future__ import annotations

import csv
import importlib.util
import inspect
import runpy
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events import DeploymentEventTrigger
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from flow_support import TELNYX, credentials_for
from prefect_retell import outbound_call, outbound_campaign

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = ROOT / "deployments"

# Parameters whose choices are fixed, and must show as a drop-down, by flow name.
# `monitor` joins the campaign and the call as those flows gain it.
EXPECTED_ENUMS: dict[str, dict[str, set[str]]] = {
    "retell-outbound-campaign": {"monitor": {"poll", "events", "none"}},
    "retell-outbound-call": {"monitor": {"poll", "events", "none"}},
    "export-due-contacts": {
        "reminders": {"due", "overdue", "due_or_overdue"},
        "start_campaign": {"none", "deployment", "subflow"},
    },
}


def _example_module() -> ModuleType:
    """The example data flow's module, loaded from its file as `contact_export`."""
    if "contact_export" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "contact_export", DEPLOYMENTS / "contact_export.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["contact_export"] = module
        spec.loader.exec_module(module)
    return sys.modules["contact_export"]


def _flows() -> list[Flow]:
    return [outbound_campaign, outbound_call, _example_module().export_due_contacts]


def _yaml_deployments() -> list[dict[str, Any]]:
    with (DEPLOYMENTS / "prefect.yaml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)["deployments"]


def _served_deployments() -> dict[str, Any]:
    """Build serve.py's deployments without serving them."""
    module = runpy.run_path(str(DEPLOYMENTS / "serve.py"), run_name="not_main")
    built = (
        module["campaign_deployments"]()
        + module["chained_deployments"]()
        + module["follow_up_deployments"]()
    )
    return {deployment.name: deployment for deployment in built}


def _enum(prop: dict[str, Any]) -> set[str] | None:
    """The choices of a schema property, also when it is optional (anyOf)."""
    if "enum" in prop:
        return set(prop["enum"])
    for option in prop.get("anyOf", []):
        if "enum" in option:
            return set(option["enum"])
    return None


def _literal_choices(annotation: Any) -> set[str] | None:
    """The values of a Literal annotation, alone or in a union; None if none."""
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    for arg in typing.get_args(annotation):
        found = _literal_choices(arg)
        if found:
            return found
    return None


@pytest.mark.parametrize("flow", _flows(), ids=lambda flow: flow.name)
def test_every_parameter_has_a_description(flow: Flow):
    """The UI form shows a description under every field, taken from the docstring."""
    properties = parameter_schema(flow).properties

    missing = [name for name, prop in properties.items() if not prop.get("description")]

    assert set(properties) == set(inspect.signature(flow.fn).parameters)
    assert missing == []


def test_campaign_form_keeps_defaults_and_required_fields():
    """The campaign form asks for the list, and prefills the rest.

    The from-number may be left empty when `from_numbers` names the numbers;
    the flow refuses a run that gives neither, before any call.
    """
    schema = parameter_schema(outbound_campaign)

    assert schema.required == ["contacts"]
    assert "from_numbers" in schema.properties["from_number"]["description"]
    assert schema.properties["cps"]["default"] == 1
    assert schema.properties["default_region"]["default"] == "US"
    assert schema.properties["stop_calls_on_timeout"]["default"] is True
    assert "Path of a CSV" in schema.properties["contacts"]["description"]


@pytest.mark.parametrize("flow", _flows(), ids=lambda flow: flow.name)
def test_fixed_choices_render_as_enums(flow: Flow):
    """Every Literal parameter, and every one expected to be, is a drop-down."""
    properties = parameter_schema(flow).properties
    hints = typing.get_type_hints(flow.fn)
    literal = {
        name: choices
        for name in properties
        if (choices := _literal_choices(hints.get(name))) is not None
    }
    expected = {
        name: choices
        for name, choices in EXPECTED_ENUMS[flow.name].items()
        if name in properties
    }

    assert {name: _enum(properties[name]) for name in literal} == literal
    assert {name: _enum(properties[name]) for name in expected} == expected


def test_the_example_flow_has_its_enums():
    """The example's two choices exist, so the enum test checks something today."""
    properties = parameter_schema(_example_module().export_due_contacts).properties

    assert _enum(properties["start_campaign"]) == {"none", "deployment", "subflow"}
    assert _enum(properties["reminders"]) == {"due", "overdue", "due_or_overdue"}


@pytest.mark.parametrize(
    "deployment", _yaml_deployments(), ids=lambda deployment: deployment["name"]
)
def test_prefect_yaml_entrypoints_load(deployment: dict[str, Any], monkeypatch):
    """Each entrypoint names a flow that loads from the repository root."""
    monkeypatch.chdir(ROOT)
    entrypoint = deployment["entrypoint"]
    where = entrypoint.rsplit(":", 1)[0]

    flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)

    assert isinstance(flow, Flow)
    if where.endswith(".py"):
        assert (ROOT / where).is_file()


@pytest.mark.parametrize(
    "deployment", _yaml_deployments(), ids=lambda deployment: deployment["name"]
)
def test_prefect_yaml_parameters_fit_their_flow(
    deployment: dict[str, Any], monkeypatch
):
    """Every parameter set in prefect.yaml, triggers included, is valid for its flow."""
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    schema = parameter_schema(flow).model_dump_for_openapi()
    triggered = [
        trigger.get("parameters", {}) for trigger in deployment.get("triggers", [])
    ]

    for parameters in [deployment.get("parameters", {}), *triggered]:
        assert set(parameters) <= set(schema["properties"])
    validate(
        deployment.get("parameters", {}),
        schema,
        raise_on_error=True,
        ignore_required=True,
    )


def test_prefect_yaml_schedules_and_triggers_are_valid():
    """The nightly schedule has a cron and a zone; the trigger builds as a trigger."""
    deployments = {item["name"]: item for item in _yaml_deployments()}
    [nightly] = deployments["retell-nightly-reminders"]["schedules"]
    [trigger] = deployments["retell-campaign-after-export"]["triggers"]

    built = DeploymentEventTrigger(**trigger)

    assert (nightly["cron"], nightly["timezone"]) == (
        "0 18 * * *",
        "America/Los_Angeles",
    )
    assert built.expect == {"prefect.flow-run.Completed"}
    assert built.match_related.model_dump() == {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": "export-due-contacts",
    }
    assert "export-due-contacts" in deployments


def test_serve_builds_the_same_deployments_as_prefect_yaml():
    """serve.py builds, without serving, every deployment that prefect.yaml declares."""
    served = _served_deployments()
    declared = {item["name"]: item for item in _yaml_deployments()}

    assert set(served) == set(declared)
    for name, deployment in served.items():
        assert (
            deployment.flow_name
            == load_flow_from_entrypoint(declared[name]["entrypoint"]).name
        ), name
        assert set(deployment.parameters) == set(declared[name].get("parameters", {}))


def test_serve_schedules_and_triggers_match_prefect_yaml():
    """The served nightly run is at 18:00 Pacific; the chained trigger is the same."""
    served = _served_deployments()
    declared = {item["name"]: item for item in _yaml_deployments()}

    [schedule] = served["retell-nightly-reminders"].schedules
    [trigger] = served["retell-campaign-after-export"].triggers
    [declared_trigger] = declared["retell-campaign-after-export"]["triggers"]

    assert (schedule.schedule.cron, schedule.schedule.timezone) == (
        "0 18 * * *",
        "America/Los_Angeles",
    )
    assert trigger.parameters == declared_trigger["parameters"]
    assert trigger.match_related.model_dump() == declared_trigger["match_related"]
    assert trigger.expect == set(declared_trigger["expect"])


def test_export_selects_consenting_customers_with_open_reminders():
    """Blank or "no" consent and finished reminders are left out of the list."""
    select = _example_module().select_due_contacts
    with (DEPLOYMENTS / "data" / "customers.csv").open(encoding="utf-8") as handle:
        customers = list(csv.DictReader(handle))

    due = select(customers, "due")
    either = select(customers, "due_or_overdue")

    assert [row["First Name"] for row in due] == [
        "Aurelia",
        "Benedikt",
        "Fenella",
        "Hyacinth",
    ]
    assert [row["First Name"] for row in either] == [
        "Aurelia",
        "Benedikt",
        "Evander",
        "Fenella",
        "Hyacinth",
    ]
    assert set(due[0]) == {"Phone", "First Name", "Appointment Date", "Clinic"}


async def test_export_then_subflow_calls_exactly_the_exported_list(
    prefect_server, sandbox, tmp_path
):
    """start_campaign="subflow": the list is written, then each row called once."""
    await credentials_for(sandbox).asave("deployments-test-sandbox", overwrite=True)
    output = tmp_path / "exports" / "due.csv"

    path = await _example_module().export_due_contacts(
        output=str(output),
        start_campaign="subflow",
        from_number=TELNYX,
        credentials="deployments-test-sandbox",
    )

    called = sorted(call["to_number"] for call in sandbox.sandbox.stats()["calls"])
    assert path == str(output)
    assert called == ["+14155550160", "+14155550161", "+14155550165", "+14155550167"]


async def test_export_then_deployment_requests_a_campaign_run(prefect_server, tmp_path):
    """start_campaign="deployment": a campaign run is scheduled with the list's path.

    No worker runs here: that the run starts and dials is the worker's part, shown
    by the subflow test and by bench/ui_screenshots.py.
    """
    deployment = await outbound_campaign.ato_deployment(name="retell-campaign-test")
    deployment_id = await deployment.apply()
    output = tmp_path / "due.csv"

    await _example_module().export_due_contacts(
        output=str(output),
        start_campaign="deployment",
        from_number=TELNYX,
        credentials="retell",
        campaign_deployment="retell-outbound-campaign/retell-campaign-test",
    )

    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id])
            )
        )
    [run] = runs
    assert run.parameters == {
        "contacts": str(output),
        "from_number": TELNYX,
        "credentials": "retell",
    }
    assert run.state.is_scheduled()
    assert run.parent_task_run_id is not None
