"""The deployment artefacts: Dockerfile and the kustomize tree under deploy/.

Everything here runs offline. Each kustomize target is rendered with
`kubectl kustomize` and every object in the output is validated:

- core Kubernetes kinds against the JSON schemas that the `kubernetes-validate`
  package ships (strict: unknown fields are errors), for the oldest Kubernetes
  we support and the newest the package knows;
- KEDA ScaledObject/TriggerAuthentication and Prometheus Operator
  PrometheusRule/ServiceMonitor against the pydantic models that the
  `cloudcoil-models-keda` and `cloudcoil-models-prometheus-operator` packages
  generate from those projects' CRD OpenAPI schemas (a round trip catches the
  unknown fields that pydantic would otherwise drop);
- alert expressions with `promql-parser` (Prometheus's grammar);
- the Dockerfile with hadolint, failing on any finding.

On top of schema validity the tests assert what matters for operating
Deskmail: probes, limits, a hardened securityContext, a PDB per stage, KEDA on
the right queues, secrets only by reference, and the alerts the runbook names.

Nothing is installed here: scripts/install-deploy-tools.sh provides kubectl,
hadolint and the validation packages.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TARGETS = ("base", "overlays/dev", "overlays/prod")

# stage -> the queue it consumes (None: not fed by a queue).
STAGES: dict[str, str | None] = {
    "fetcher": None,
    "parser": "deskmail.parse",
    "ticketer": "deskmail.ticket",
    "replier": "deskmail.reply",
    "web": None,
}
QUEUE_STAGES = {stage: queue for stage, queue in STAGES.items() if queue}
SECRET_NAME = "deskmail-secrets"
SECRET_KEYS = ("DATABASE_URL", "AMQP_URL", "DESKMAIL_SECRET_KEY")
CONFIG_KEYS = (
    "DESKMAIL_LOG_LEVEL",
    "DESKMAIL_HTTP_PORT",
    "DESKMAIL_MAIL_DOMAIN",
    "DESKMAIL_PREFETCH",
)
OPS_PORT = 9100
MEMORY_LIMIT_CEILING = 512 * 2**20  # the target is <200 MB per stage
# Oldest Kubernetes minor we deploy to; the newest is whatever
# kubernetes-validate ships, so removed APIs show up as soon as it knows them.
OLDEST_KUBERNETES = "1.30"

# The metric names the code exposes (see shared/metrics.py), plus Prometheus's
# own `up`: an alert on a misspelt metric would never fire.
KNOWN_METRICS = {
    "deskmail_messages_handled_total",
    "deskmail_messages_failed_total",
    "deskmail_messages_retried_total",
    "deskmail_messages_dead_lettered_total",
    "deskmail_handle_seconds_bucket",
    "deskmail_handle_seconds_sum",
    "deskmail_handle_seconds_count",
    "deskmail_queue_depth",
    "deskmail_mailbox_last_success_timestamp_seconds",
    "deskmail_mailbox_errors_total",
    "up",
}

INSTALL_HINT = "run scripts/install-deploy-tools.sh"


def _tool(name: str) -> str:
    # pip installs hadolint (and the kubectl fallback) beside this interpreter,
    # which need not be on PATH.
    path = shutil.which(name, path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
    if path is None:
        pytest.fail(f"{name} not found on PATH: {INSTALL_HINT}", pytrace=False)
    return path


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"cannot import {name} ({exc}): {INSTALL_HINT}", pytrace=False)


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize deploy/<target>` produces (cached: it is pure)."""
    result = subprocess.run(
        [_tool("kubectl"), "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    docs = tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    assert docs, f"kubectl kustomize {target} rendered nothing"
    return docs


def objects(target: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render(target) if d["kind"] == kind}


def one(target: str, kind: str, name: str) -> dict[str, Any]:
    found = objects(target, kind)
    assert name in found, f"{target}: no {kind} {name} (have {sorted(found)})"
    return found[name]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def parse_quantity(value: str | int) -> float:
    """A Kubernetes resource quantity (memory or CPU) as a plain number."""
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
        "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3,
    }  # fmt: skip
    text = str(value)
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# --------------------------------------------------------------------------- schemas

# Kinds whose schema is not Kubernetes' own, and the model that validates each.
CRD_MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): (
        "cloudcoil.models.keda.v1alpha1",
        "TriggerAuthentication",
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "cloudcoil.models.prometheus_operator.v1",
        "PrometheusRule",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
}


def validate_kubernetes(doc: dict[str, Any], version: str) -> None:
    kv = _module("kubernetes_validate")
    kv.validate(doc, version, strict=True)


def validate_crd(doc: dict[str, Any]) -> None:
    """Validate a custom resource against the model generated from its CRD.

    pydantic checks types, required fields, enums and patterns, but by default
    ignores keys it does not know; re-serialising and comparing with the input
    turns such a key (a misspelt field) into an error, like a strict schema.
    """
    key = (doc["apiVersion"], doc["kind"])
    if key not in CRD_MODELS:
        raise LookupError(f"no schema for {key}: add it to CRD_MODELS")
    module_name, class_name = CRD_MODELS[key]
    model = getattr(_module(module_name), class_name)
    parsed = model.model_validate(copy.deepcopy(doc))
    again = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    problems = list(_differences(doc, again, doc["kind"]))
    if problems:
        raise ValueError("; ".join(problems))


def _differences(given: Any, kept: Any, path: str) -> Iterator[str]:
    if isinstance(given, dict) and isinstance(kept, dict):
        for k, v in given.items():
            if k not in kept:
                yield f"{path}.{k}: unknown field"
            else:
                yield from _differences(v, kept[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        for i, (a, b) in enumerate(zip(given, kept, strict=True)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif given != kept:
        yield f"{path}: {given!r} became {kept!r}"


def kubernetes_versions() -> list[str]:
    try:
        from kubernetes_validate import utils
    except ImportError:  # reported by the tests themselves, with the hint
        return [OLDEST_KUBERNETES]
    newest = utils.major_minor(utils.latest_version())
    return sorted({OLDEST_KUBERNETES, newest})


@pytest.mark.parametrize("target", TARGETS)
def test_renders_the_expected_objects(target):
    kinds: dict[str, int] = {}
    for doc in render(target):
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    assert kinds.get("Deployment") == len(STAGES)
    assert kinds.get("PodDisruptionBudget") == len(STAGES)
    assert kinds.get("ScaledObject") == len(QUEUE_STAGES)
    assert kinds.get("Job") == 1
    assert kinds.get("PrometheusRule") == 1
    # The Secret is the operator's: a manifest that carried one would either
    # hold real secrets in git or overwrite the real ones with placeholders.
    assert "Secret" not in kinds


@pytest.mark.parametrize("version", kubernetes_versions())
@pytest.mark.parametrize("target", TARGETS)
def test_core_objects_match_the_kubernetes_schema(target, version):
    kv = _module("kubernetes_validate")
    errors = []
    for doc in render(target):
        if (doc["apiVersion"], doc["kind"]) in CRD_MODELS:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            validate_kubernetes(doc, version)
        except kv.utils.SchemaNotFoundError:
            errors.append(f"{name}: {doc['apiVersion']} unknown to Kubernetes {version}")
        except kv.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{name}: {where}: {exc.message}")
    assert not errors, f"{target} vs Kubernetes {version}:\n" + "\n".join(errors)


@pytest.mark.parametrize("target", TARGETS)
def test_custom_resources_match_their_crd_schema(target):
    errors = []
    seen = set()
    for doc in render(target):
        key = (doc["apiVersion"], doc["kind"])
        if key not in CRD_MODELS:
            continue
        seen.add(key)
        try:
            validate_crd(doc)
        except Exception as exc:  # pydantic's ValidationError, or ours
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert not errors, "\n".join(errors)
    assert seen == set(CRD_MODELS), f"not rendered: {set(CRD_MODELS) - seen}"


def test_the_validators_reject_bad_objects():
    """The schema checks above are only worth something if they can fail."""
    deployment = copy.deepcopy(one("base", "Deployment", "deskmail-parser"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    kv = _module("kubernetes_validate")
    with pytest.raises(kv.ValidationError):
        validate_kubernetes(deployment, OLDEST_KUBERNETES)

    scaled = copy.deepcopy(one("base", "ScaledObject", "deskmail-parser"))
    scaled["spec"]["minReplicas"] = 1  # KEDA calls it minReplicaCount
    with pytest.raises(ValueError, match="minReplicas: unknown field"):
        validate_crd(scaled)

    scaled = copy.deepcopy(one("base", "ScaledObject", "deskmail-parser"))
    del scaled["spec"]["triggers"][0]["type"]
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        validate_crd(scaled)

    rule = copy.deepcopy(one("base", "PrometheusRule", "deskmail"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(ValueError):
        validate_crd(rule)


# --------------------------------------------------------------------------- stages


def stage_deployment(target: str, stage: str) -> dict[str, Any]:
    return one(target, "Deployment", f"deskmail-{stage}")


def assert_hardened_pod(pod: dict[str, Any], where: str) -> None:
    """Non-root with a numeric UID, read-only root, no privileges, no API token."""
    psc = pod.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True, where
    assert isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, where
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
    assert pod.get("automountServiceAccountToken") is False, where
    for container in pod["containers"] + pod.get("initContainers", []):
        csc = container.get("securityContext", {})
        name = f"{where}/{container['name']}"
        assert csc.get("allowPrivilegeEscalation") is False, name
        assert csc.get("readOnlyRootFilesystem") is True, name
        assert csc.get("privileged") in (None, False), name
        assert "ALL" in csc.get("capabilities", {}).get("drop", []), name
        assert not csc.get("capabilities", {}).get("add"), name
        # A read-only root needs a writable /tmp for Python's tempfile.
        assert any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts", [])), name


def assert_settings_wired(container: dict[str, Any], target: str, where: str) -> None:
    """Config from the generated ConfigMap, secrets only as secretKeyRefs."""
    config_refs = [
        e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e
    ]
    assert len(config_refs) == 1, where
    configmaps = objects(target, "ConfigMap")
    assert config_refs[0] in configmaps, f"{where}: ConfigMap {config_refs[0]} not rendered"
    assert config_refs[0].startswith("deskmail-config"), where
    data = configmaps[config_refs[0]].get("data", {})
    assert set(CONFIG_KEYS) <= set(data), f"{where}: config lacks {set(CONFIG_KEYS) - set(data)}"
    assert not set(SECRET_KEYS) & set(data), f"{where}: a secret in the ConfigMap"

    env = {e["name"]: e for e in container.get("env", [])}
    for key in SECRET_KEYS:
        assert key in env, f"{where}: {key} not set"
        assert "value" not in env[key], f"{where}: {key} given as a literal"
        ref = env[key].get("valueFrom", {}).get("secretKeyRef", {})
        assert ref.get("name") == SECRET_NAME and ref.get("key") == key, f"{where}: {key}"


def container_port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"{container['name']}: no port named {name}"
    return ports[name]


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    return container_port(container, port) if isinstance(port, str) else port


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("target", TARGETS)
def test_stage_deployment_is_production_ready(target, stage):
    deployment = stage_deployment(target, stage)
    where = f"{target}: deskmail-{stage}"
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels), where

    assert len(pod["containers"]) == 1, where
    container = pod["containers"][0]
    # The image's ENTRYPOINT is `deskmail`; the stage is its only argument.
    assert "command" not in container, where
    assert container.get("args") == [stage], where
    if target != "base":
        assert "/" in container["image"] and ":" in container["image"], where

    # Probes on the ops port that the stage serves (DESKMAIL_HTTP_PORT).
    liveness, readiness = container.get("livenessProbe"), container.get("readinessProbe")
    assert liveness and liveness["httpGet"]["path"] == "/healthz", where
    assert readiness and readiness["httpGet"]["path"] == "/readyz", where
    assert probe_port(container, liveness) == OPS_PORT, where
    assert probe_port(container, readiness) == OPS_PORT, where
    assert container_port(container, "metrics") == OPS_PORT, where

    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert resource in resources.get(kind, {}), f"{where}: no {kind}.{resource}"
    memory_limit = parse_quantity(resources["limits"]["memory"])
    assert 200e6 < memory_limit <= MEMORY_LIMIT_CEILING, f"{where}: memory limit {memory_limit}"
    assert parse_quantity(resources["requests"]["memory"]) <= memory_limit, where

    assert_hardened_pod(pod, where)
    assert_settings_wired(container, target, where)

    # Stages finish what they hold on SIGTERM: give them time, but bounded.
    assert 20 <= pod.get("terminationGracePeriodSeconds", 30) <= 120, where


@pytest.mark.parametrize("target", TARGETS)
def test_migration_job_runs_migrate_once(target):
    job = one(target, "Job", "deskmail-migrate")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container.get("args") == ["migrate"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"].get("backoffLimit", 6) <= 5
    assert "limits" in container.get("resources", {})
    assert_hardened_pod(pod, f"{target}: migrate")
    assert_settings_wired(container, target, f"{target}: migrate")
    # The Job's pods must not pose as a stage (metrics Service, PDBs).
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    for pdb in objects(target, "PodDisruptionBudget").values():
        assert not selects(pdb["spec"]["selector"]["matchLabels"], job_labels)


@pytest.mark.parametrize("target", TARGETS)
def test_every_stage_has_a_pod_disruption_budget_that_allows_drains(target):
    pdbs = objects(target, "PodDisruptionBudget")
    for stage in STAGES:
        deployment = stage_deployment(target, stage)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            p for p in pdbs.values() if selects(p["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(matching) == 1, f"{target}: {stage} has {len(matching)} PDBs"
        spec = matching[0]["spec"]
        # minAvailable equal to the replica count would block every node drain.
        if "minAvailable" in spec:
            replicas = deployment["spec"].get("replicas", 1)
            assert isinstance(spec["minAvailable"], int) and spec["minAvailable"] < replicas
        else:
            assert spec.get("maxUnavailable", 0) not in (0, "0%"), f"{target}: {stage}"


@pytest.mark.parametrize("target", TARGETS)
def test_queue_stages_scale_on_their_own_queue(target):
    scaled = objects(target, "ScaledObject")
    auths = objects(target, "TriggerAuthentication")
    for stage, queue in QUEUE_STAGES.items():
        deployment = stage_deployment(target, stage)
        found = [
            s for s in scaled.values() if s["spec"]["scaleTargetRef"]["name"] == f"deskmail-{stage}"
        ]
        assert len(found) == 1, f"{target}: {stage} has {len(found)} ScaledObjects"
        spec = found[0]["spec"]
        # A replicas field would be reset on every apply, fighting KEDA's HPA.
        assert "replicas" not in deployment["spec"], f"{target}: {stage} sets replicas"
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], f"{target}: {stage}"

        assert len(spec["triggers"]) == 1, f"{target}: {stage}"
        trigger = spec["triggers"][0]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["metadata"]["queueName"] == queue
        assert int(trigger["metadata"]["value"]) > 0
        # The broker URL comes from the Secret, never from trigger metadata.
        assert not {"host", "hostFromEnv"} & set(trigger["metadata"])
        auth = auths[trigger["authenticationRef"]["name"]]
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert refs["host"]["name"] == SECRET_NAME and refs["host"]["key"] == "AMQP_URL"

    # The fetcher is not fed by a queue: fixed replicas (see base/fetcher.yaml).
    for stage in set(STAGES) - set(QUEUE_STAGES):
        targets = {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()}
        assert f"deskmail-{stage}" not in targets
        assert stage_deployment(target, stage)["spec"].get("replicas", 0) >= 1


def test_overlays_size_the_environments():
    for stage in STAGES:
        assert stage_deployment("overlays/dev", stage)["spec"].get("replicas", 1) == 1
    for so in objects("overlays/dev", "ScaledObject").values():
        assert so["spec"]["maxReplicaCount"] == 1
    assert stage_deployment("overlays/prod", "fetcher")["spec"]["replicas"] >= 2
    assert stage_deployment("overlays/prod", "web")["spec"]["replicas"] >= 2
    for so in objects("overlays/prod", "ScaledObject").values():
        assert so["spec"]["minReplicaCount"] >= 2
        assert so["spec"]["maxReplicaCount"] > so["spec"]["minReplicaCount"]
    for stage in STAGES:

        def limit(target: str, stage: str = stage) -> float:
            container = stage_deployment(target, stage)["spec"]["template"]["spec"]["containers"][0]
            return parse_quantity(container["resources"]["limits"]["memory"])

        assert limit("overlays/prod") > limit("overlays/dev"), stage
    # Each environment in its own namespace, which the operator creates (it
    # also holds the Secret, so the manifests must not own its lifecycle).
    for target, namespace in (("overlays/dev", "deskmail-dev"), ("overlays/prod", "deskmail")):
        assert {d["metadata"].get("namespace") for d in render(target)} == {namespace}
        assert not objects(target, "Namespace")


# --------------------------------------------------------------------------- monitoring


@pytest.mark.parametrize("target", TARGETS)
def test_metrics_service_reaches_every_stage(target):
    services = [
        s for s in objects(target, "Service").values()
        if any(p.get("name") == "metrics" for p in s["spec"]["ports"])
    ]  # fmt: skip
    assert len(services) == 1, f"{target}: {len(services)} metrics services"
    service = services[0]
    port = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
    assert port["port"] == OPS_PORT
    for stage in STAGES:
        template = stage_deployment(target, stage)["spec"]["template"]
        assert selects(service["spec"]["selector"], template["metadata"]["labels"]), stage
        assert container_port(template["spec"]["containers"][0], port["targetPort"]) == OPS_PORT
    job = one(target, "Job", "deskmail-migrate")
    assert not selects(service["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"])

    monitor = one(target, "ServiceMonitor", "deskmail")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def alerts(target: str) -> dict[str, dict[str, Any]]:
    rules = objects(target, "PrometheusRule")
    assert len(rules) == 1
    found = {}
    for rule in next(iter(rules.values()))["spec"]["groups"]:
        for r in rule["rules"]:
            if "alert" in r:
                found[r["alert"]] = r
    return found


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric name, {label: (op, value)}) for every series an expression reads."""
    promql = _module("promql_parser")
    found = []

    def visit(node: Any, *_: Any) -> bool:
        if isinstance(node, promql.VectorSelector):
            matchers = {
                m.name: (str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers
            }
            found.append((node.name, matchers))
        return True

    promql.walk(promql.parse(expr), visit)
    return found


def test_alert_expressions_parse_and_read_known_metrics():
    for name, rule in alerts("base").items():
        for metric, _ in selectors(rule["expr"]):  # parse errors raise here
            assert metric in KNOWN_METRICS, f"{name} reads unknown metric {metric}"
        annotations = rule.get("annotations", {})
        # The on-call person needs to know what happened and what to do.
        assert annotations.get("summary"), name
        assert len(annotations.get("description", "")) > 80, name
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name


def test_runbook_alerts_are_defined():
    found = alerts("base")
    promql = _module("promql_parser")
    for_seconds = {
        n: promql.parse_duration(r.get("for", "0s")).total_seconds() for n, r in found.items()
    }

    dead = found["DeskmailDeadLetters"]
    [(metric, matchers)] = selectors(dead["expr"])
    assert metric == "deskmail_queue_depth"
    op, pattern = matchers["queue"]
    assert op == "Re"  # Prometheus anchors label regexes: fullmatch
    assert re.fullmatch(pattern, "deskmail.parse.dead")
    assert not re.fullmatch(pattern, "deskmail.parse")
    assert not re.fullmatch(pattern, "deskmail.parse.retry")
    assert for_seconds["DeskmailDeadLetters"] == 300

    stale = found["DeskmailMailboxNotPolled"]
    assert [m for m, _ in selectors(stale["expr"])] == [
        "deskmail_mailbox_last_success_timestamp_seconds"
    ]
    assert "time()" in stale["expr"] and "600" in stale["expr"]

    draining = found["DeskmailQueueNotDraining"]
    read = selectors(draining["expr"])
    assert {m for m, _ in read} == {"deskmail_queue_depth", "deskmail_messages_handled_total"}
    assert re.search(r"\b(delta|deriv)\(", draining["expr"])
    assert "[15m]" in draining["expr"]
    for metric, matchers in read:
        if metric == "deskmail_queue_depth":
            op, pattern = matchers["queue"]
            assert op == "NotRe"
            # Only the work queues: .dead has its own alert, .retry drains by TTL.
            assert re.fullmatch(pattern, "deskmail.ticket.dead")
            assert re.fullmatch(pattern, "deskmail.ticket.retry")
            assert not re.fullmatch(pattern, "deskmail.ticket")
    assert for_seconds["DeskmailQueueNotDraining"] >= 600

    # `up` is labelled job=<Service name> by the Prometheus Operator.
    down = found["DeskmailTargetDown"]
    [(metric, matchers)] = selectors(down["expr"])
    assert metric == "up" and matchers["job"] == ("Equal", "deskmail-metrics")
    assert "deskmail-metrics" in objects("base", "Service")


# --------------------------------------------------------------------------- image


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_lints_clean():
    result = subprocess.run(
        # style is the lowest severity: any finding at all fails the test.
        [_tool("hadolint"), "--no-color", "--failure-threshold", "style", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


def test_dockerfile_builds_a_small_non_root_image():
    instructions = dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build in one stage, ship only the venv"
    final = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    final_stage = instructions[final:]
    args = dict(
        rest.split("=", 1) for word, rest in instructions[:final] if word == "ARG" and "=" in rest
    )
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), froms[-1])
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base

    users = [rest for word, rest in final_stage if word == "USER"]
    assert users, "the final stage must drop root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "numeric UID, so runAsNonRoot can verify it"
    assert ("ENTRYPOINT", '["deskmail"]') in final_stage
    # The final stage receives the venv only, not the source tree.
    copies = [rest for word, rest in final_stage if word == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), copies

    # No secrets baked in: they come from the Secret at run time.
    for word, rest in instructions:
        if word in {"ENV", "ARG"}:
            for key in SECRET_KEYS + ("PASSWORD", "TOKEN"):
                assert key not in rest.upper(), f"{word} {rest}"


def test_dockerignore_keeps_the_context_to_the_package():
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Allow-list: ignore everything, then re-include what `pip install .` needs.
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert included == {"pyproject.toml", "services", "shared"}
