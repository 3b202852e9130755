"""deploy/k8s/: every manifest valid for a named Kubernetes version, and every probe, port and setting it
names is one the code has (routes in the Flask url_map, settings in app/settings.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app import create_app
from app.settings import GunicornSettings, Settings, env_var
from tests.support import ROOT

KUBERNETES_VERSION = "1.33.0"  # the oldest version the manifests need: preStop `sleep` (beta since 1.30)
K8S = ROOT / "deploy" / "k8s"
MANIFEST_FILES = sorted(K8S.rglob("*.yaml"))
KSERVE_API = "serving.kserve.io/v1beta1"
# Variables the code reads that are not fields of Settings/GunicornSettings.
OTHER_VARIABLES = {"KERAS_HOME", "XDG_RUNTIME_DIR", "STORAGE_URI"}  # Keras, gunicorn, KServe


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in MANIFEST_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(kind: str, where: Path = K8S) -> dict[str, Any]:
    found = [doc for path, doc in _documents() if doc["kind"] == kind and path.parent == where]
    assert len(found) == 1, f"one {kind} expected in {where}, found {len(found)}"
    return found[0]


def _as_pod(inference_service: dict[str, Any]) -> dict[str, Any]:
    """KServe's PredictorSpec inlines a PodSpec: its pod fields as a core/v1 Pod, to validate them."""
    predictor = {key: value for key, value in inference_service["spec"]["predictor"].items()
                 if key not in {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "timeout",
                                "containerConcurrency", "canaryTrafficPercent", "batcher", "logger"}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": predictor}


def _known_variables() -> set[str]:
    return ({env_var(Settings, name) for name in Settings.model_fields}
            | {env_var(GunicornSettings, name) for name in GunicornSettings.model_fields} | OTHER_VARIABLES)


def _containers() -> list[dict[str, Any]]:
    pod_specs = [_one("Deployment")["spec"]["template"]["spec"], _one("InferenceService")["spec"]["predictor"]]
    return [container for spec in pod_specs for container in spec["containers"]]


@pytest.fixture(scope="module")
def url_map(tmp_path_factory: pytest.TempPathFactory):
    """The routes of an app serving an empty folder (no model is loaded, no TensorFlow imported)."""
    application = create_app({"TESTING": True, "MODEL_DIR": tmp_path_factory.mktemp("empty-models")})
    yield application.url_map
    application.extensions["registry"].close()


def test_there_are_manifests_of_every_kind_the_deployment_needs():
    kinds = {doc["kind"] for _, doc in _documents()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
            "InferenceService"} <= kinds


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(K8S)))
def test_each_manifest_is_valid_for_the_named_kubernetes_version(path: Path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if doc["apiVersion"] == KSERVE_API:  # a CRD: no schema in kubernetes-validate; its pod part has one
            assert doc["kind"] == "InferenceService"
            doc = _as_pod(doc)
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_an_invalid_manifest_is_refused():
    deployment = _one("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_probe_path_is_a_route_of_the_app(url_map):
    adapter = url_map.bind("localhost")
    probes = [container[probe]["httpGet"]["path"] for container in _containers()
              for probe in ("startupProbe", "readinessProbe", "livenessProbe") if probe in container]
    assert {"/health", "/health/ready", "/v2/health/ready", "/v2/health/live"} <= set(probes)
    for path in probes:
        assert adapter.match(path, method="GET")[0], path
    annotations = _one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert adapter.match(annotations["prometheus.io/path"], method="GET")


def test_readiness_and_liveness_probe_different_endpoints():
    container = _one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_every_variable_the_manifests_set_is_a_setting_of_the_code():
    named = set(_one("ConfigMap")["data"])
    named |= {env["name"] for container in _containers() for env in container.get("env", [])}
    assert named - _known_variables() == set()


def test_the_ports_are_the_ones_the_server_listens_on():
    config = _one("ConfigMap")["data"]
    ports = {port["name"]: port["containerPort"]
             for port in _one("Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports["http"] == int(config["PORT"]) == GunicornSettings.model_fields["port"].default
    assert ports["grpc"] == int(config["SERVING_GRPC_PORT"]) == Settings.model_fields["grpc_port"].default
    assert {port["targetPort"] for port in _one("Service")["spec"]["ports"]} == set(ports)
    inference_ports = _one("InferenceService")["spec"]["predictor"]["containers"][0]["ports"]
    assert [port["containerPort"] for port in inference_ports] == [ports["http"]]


def test_the_grace_period_covers_the_prestop_the_drain_and_the_graceful_stop():
    config = _one("ConfigMap")["data"]
    pod = _one("Deployment")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(config["SERVING_DRAIN_SECONDS"])
    assert drain > 0, "without a drain, kept-alive clients see their connection closed mid-stream"
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + int(config["GUNICORN_GRACEFUL_TIMEOUT"]) + 5


def test_the_pod_runs_as_the_images_user_with_a_read_only_root_and_no_capabilities():
    pod = _one("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert {"/tmp", "/dev/shm"} <= set(mounts)  # TensorFlow's and gunicorn's scratch, the metric files
    config = _one("ConfigMap")["data"]
    assert mounts[config["SERVING_MODEL_DIR"]]["readOnly"] is True


def test_the_body_limit_matches_the_servers_default():
    config = _one("ConfigMap")["data"]
    assert int(config["SERVING_MAX_CONTENT_LENGTH"]) == Settings.model_fields["max_content_length"].default


def test_the_custom_metric_hpa_names_the_metric_the_server_exports():
    from app.observability import metrics

    hpa = _one("HorizontalPodAutoscaler", K8S / "variants")
    name = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert name == metrics.INFLIGHT._name == "keras_serve_inflight_requests"
    rules = yaml.safe_load(_one("ConfigMap", K8S / "variants")["data"]["config.yaml"])
    assert rules["rules"][0]["name"]["as"] == name


def test_the_inference_service_speaks_v2_from_the_downloaded_model_folder(url_map):
    container = _one("InferenceService")["spec"]["predictor"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["SERVING_MODEL_DIR"] == "/mnt/models"  # where KServe's storage initializer puts STORAGE_URI
    assert url_map.bind("localhost").match("/v2/models/iris/infer", method="POST")
