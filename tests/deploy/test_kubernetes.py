"""deploy/kubernetes: rendered by kustomize, validated against the Kubernetes schemas offline.

kustomize is the one built into kubectl (`kubectl kustomize`); the schemas are the ones
the kubernetes-validate package bundles, in strict mode, so an unknown or misspelt field
fails as surely as a wrong type.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from recognizer.config.sources import load_config

ROOT = Path(__file__).parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are for (gRPC probes are GA from 1.27, the PDB's
# unhealthyPodEvictionPolicy from 1.31), and the newest the package knows.
VERSIONS = ("1.31", kubernetes_validate.utils.latest_version())
OVERLAYS = ("cpu", "gpu", "cpu-tls")

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Manifest]]:
    """Render an overlay of a copy of deploy/kubernetes, with stand-in secret files.

    The secrets are the deployer's files (never in git); their content does not matter to
    the rendering. "cpu-tls" is the cpu overlay with the tls component added.
    """
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render deploy/kubernetes"
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    (tree / "base" / "secrets" / "tokens").write_text("team-a:a-token\n")
    for name in ("tls.crt", "tls.key"):
        (tree / "components" / "tls" / "secrets" / name).write_text(f"stand-in {name}\n")
    (tree / "overlays" / "cpu-tls").mkdir()
    (tree / "overlays" / "cpu-tls" / "kustomization.yaml").write_text(
        "resources: [../cpu]\ncomponents: [../../components/tls]\n"
    )
    rendered: dict[str, list[Manifest]] = {}

    def render_overlay(overlay: str) -> list[Manifest]:
        if overlay not in rendered:
            output = subprocess.run(
                [kubectl, "kustomize", str(tree / "overlays" / overlay)],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
            rendered[overlay] = [doc for doc in yaml.safe_load_all(output) if doc]
        return rendered[overlay]

    return render_overlay


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(manifests: list[Manifest]) -> Manifest:
    containers = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def environment(manifests: list[Manifest]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(manifests)["env"]}


def config_file(manifests: list[Manifest]) -> str:
    configmap = one(manifests, "ConfigMap")
    assert configmap["metadata"]["name"].startswith("recognizer-config-")
    text: str = configmap["data"]["recognizer.toml"]
    return text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(
    render: Callable[[str], list[Manifest]], overlay: str
) -> None:
    manifests = render(overlay)
    kinds = sorted(m["kind"] for m in manifests)
    expected = [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "Service",
    ]
    if overlay == "cpu-tls":
        expected.insert(5, "Secret")
    assert kinds == expected
    for manifest in manifests:
        for version in VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_a_misspelt_field_fails_validation(render: Callable[[str], list[Manifest]]) -> None:
    deployment = one(render("cpu"), "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    typo = {**probe, "periodSecond": probe["periodSeconds"]}
    del typo["periodSeconds"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = typo
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_services_and_budget_select_the_pods_and_name_their_ports(
    render: Callable[[str], list[Manifest]], overlay: str
) -> None:
    manifests = render(overlay)
    pod = one(manifests, "Deployment")["spec"]["template"]
    labels = pod["metadata"]["labels"]
    ports = {port["name"]: port["containerPort"] for port in container(manifests)["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9090}
    for service in (m for m in manifests if m["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports.keys()
    headless = one(manifests, "Service", "recognizer-headless")["spec"]
    assert headless["clusterIP"] == "None"
    assert one(manifests, "Service", "recognizer")["spec"]["type"] == "ClusterIP"
    budget = one(manifests, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    deployment = one(manifests, "Deployment")["spec"]
    assert deployment["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("overlay", ("cpu", "gpu"))
def test_the_probes_ask_grpc_health_for_the_server_which_needs_no_token(
    render: Callable[[str], list[Manifest]], overlay: str
) -> None:
    """Tokens are on (a model's own health needs one); the server's health is open."""
    manifests = render(overlay)
    served = container(manifests)
    assert "RECOGNIZER_TOKENS_FILE" in environment(manifests)
    probes = {kind: served[f"{kind}Probe"]["grpc"] for kind in ("startup", "readiness", "liveness")}
    assert {probe["port"] for probe in probes.values()} == {50051}
    assert {probe["service"] for probe in probes.values()} == {""}


def test_the_tls_component_mounts_the_certificate_and_probes_the_port(
    render: Callable[[str], list[Manifest]],
) -> None:
    manifests = render("cpu-tls")
    (secret,) = (m for m in manifests if m["metadata"]["name"].startswith("recognizer-tls-"))
    assert secret["type"] == "kubernetes.io/tls"
    env = environment(manifests)
    assert env["RECOGNIZER_TLS_CERT"] == "/etc/recognizer/tls/tls.crt"
    assert env["RECOGNIZER_TLS_KEY"] == "/etc/recognizer/tls/tls.key"
    volumes = one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": secret["metadata"]["name"]}} in volumes
    served = container(manifests)
    for kind in ("startup", "readiness", "liveness"):
        assert served[f"{kind}Probe"]["tcpSocket"] == {"port": "grpc"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_termination_grace_covers_the_drain_delay_and_the_grace_period(
    render: Callable[[str], list[Manifest]], overlay: str
) -> None:
    manifests = render(overlay)
    drain = float(environment(manifests)["RECOGNIZER_DRAIN_DELAY"])
    grace = float(tomllib.loads(config_file(manifests))["grace_period"])
    termination = one(manifests, "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    # Long enough to drain and finish, short enough that a stuck pod is not kept waiting.
    assert drain + grace < termination <= drain + grace + 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_and_environment_load_with_recognizers_own_settings(
    render: Callable[[str], list[Manifest]], overlay: str, tmp_path: Path
) -> None:
    manifests = render(overlay)
    path = tmp_path / "recognizer.toml"
    path.write_text(config_file(manifests))
    env = {**environment(manifests), "RECOGNIZER_CONFIG": str(path)}
    mounts = {mount["name"]: mount["mountPath"] for mount in container(manifests)["volumeMounts"]}
    assert mounts["config"] == environment(manifests)["RECOGNIZER_CONFIG"]
    assert environment(manifests)["RECOGNIZER_TOKENS_FILE"].startswith(mounts["tokens"] + "/")
    config = load_config({"host": "0.0.0.0"}, env)
    assert config.server.port == 50051
    assert (config.server.metrics_port, config.server.metrics_host) == (9090, "0.0.0.0")
    assert [model.name for model in config.models] == ["efficientnet-lite0"]


def test_the_overlays_size_pods_for_their_nodes(render: Callable[[str], list[Manifest]]) -> None:
    cpu, gpu = render("cpu"), render("gpu")
    assert container(cpu)["image"].endswith(":0.1.0-cpu")
    assert container(gpu)["image"].endswith(":0.1.0-gpu")
    cpu_limits = container(cpu)["resources"]["limits"]
    assert container(cpu)["resources"]["requests"] == cpu_limits  # Guaranteed QoS
    assert environment(cpu)["RECOGNIZER_INFERENCE_WORKERS"] == cpu_limits["cpu"]
    assert environment(cpu)["RECOGNIZER_PREPROCESS_THREADS"] == cpu_limits["cpu"]
    assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert environment(gpu)["RECOGNIZER_DEVICE"] == "cuda"


@pytest.mark.parametrize("overlay", ("cpu", "gpu"))
def test_the_autoscaler_scales_on_an_exported_queue_metric_with_cpu_as_fallback(
    render: Callable[[str], list[Manifest]], overlay: str, exported_metrics: frozenset[str]
) -> None:
    manifests = render(overlay)
    autoscaler = one(manifests, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == one(manifests, "Deployment")["metadata"]["name"]
    queue, cpu = autoscaler["metrics"]
    assert queue["pods"]["metric"]["name"] in exported_metrics
    assert queue["pods"]["metric"]["name"] == "recognizer_queued_requests"
    assert cpu["resource"]["name"] == "cpu"
    assert autoscaler["minReplicas"] >= 2  # the budget's one disruption leaves a replica
