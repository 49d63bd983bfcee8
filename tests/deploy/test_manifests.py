"""deploy/: the Kubernetes manifests are valid for Kubernetes and wired as docs/deployment.md says.

No cluster and no Docker daemon are at hand, so every manifest is checked against the Kubernetes
API schemas (kubernetes-validate, strict: unknown fields fail too), and the facts the deployment
rests on are checked on the parsed documents: probes where the services answer them, the
headless Service behind the frame generator's dns:/// target, setting names lipstream knows,
Prometheus' scrape annotations on the ports that answer GET /metrics.
Each check (in testkit.deploy_checks) is a function returning the problems it finds; the tests
run it on the real files and on a broken copy, so that each check is seen to fail when it should.
"""

from __future__ import annotations

import asyncio
import copy
import shlex
import shutil
import subprocess

import httpx
import pytest
import yaml
from testkit.deploy_checks import (
    DEPLOY,
    DOCKERFILE,
    KUBE,
    KUBERNETES_VERSIONS,
    LOADER,
    Doc,
    all_docs,
    config_data,
    containers,
    deployment_problems,
    dockerfile_instructions,
    dockerfile_problems,
    env_name_problems,
    find,
    kustomization_problems,
    lipsync_address_problems,
    lipsync_service_problems,
    load_docs,
    manifest_files,
    port_problems,
    probe_problems,
    reference_problems,
    schema_problems,
    scrape_problems,
)

from lipstream.cli import build_parser
from lipstream.settings import Settings
from lipstream.web.app import create_app

# --- the real files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return all_docs()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "path", [*manifest_files(), LOADER], ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_every_manifest_is_valid_for_kubernetes(path, version):
    docs = load_docs(path)
    assert docs
    for doc in docs:
        assert schema_problems(doc, version) == []


def test_the_manifests_hold_what_the_system_needs(docs):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == [
        ("ConfigMap", "lipstream-config"),
        ("Deployment", "frames"),
        ("Deployment", "lipsync"),
        ("Deployment", "web"),
        ("HorizontalPodAutoscaler", "lipsync"),
        ("Namespace", "lipstream"),
        ("PersistentVolumeClaim", "lipstream-models"),
        ("Service", "frames"),
        ("Service", "lipsync"),
        ("Service", "web"),
    ]
    assert all(
        d["metadata"].get("namespace") == "lipstream" for d in docs if d["kind"] != "Namespace"
    )


@pytest.mark.parametrize("name", ["lipsync", "frames", "web"])
def test_every_deployment_has_probes_and_resources(docs, name):
    assert deployment_problems(find(docs, "Deployment", name)) == []


def test_the_lipsync_service_is_headless_and_selects_the_lipsync_pods(docs):
    assert lipsync_service_problems(docs) == []


def test_the_frame_generator_resolves_every_lipsync_pod(docs):
    assert lipsync_address_problems(docs) == []


def test_every_variable_set_is_a_lipstream_setting(docs):
    assert env_name_problems(docs) == []


def test_probes_and_ports_are_those_the_services_use(docs):
    assert probe_problems(docs) == []
    assert port_problems(docs) == []
    assert config_data(docs)["HOST"] == "0.0.0.0"  # on loopback only, no probe would reach it


def test_every_deployment_is_annotated_for_prometheus(docs):
    assert int(config_data(docs)["GRPC_METRICS_PORT"]) == 9091
    assert scrape_problems(docs) == []


def test_the_web_probe_path_is_answered_by_the_web_server(docs, tmp_path):
    probe = containers(find(docs, "Deployment", "web"))[0]["readinessProbe"]["httpGet"]["path"]
    app = create_app(Settings(_env_file=None, models_dir=tmp_path))

    async def status(path: str) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            return (await client.get(path)).status_code

    assert asyncio.run(status(probe)) == 200
    assert asyncio.run(status(probe + "-not-there")) == 404  # so a wrong path would fail


def test_references_resolve_and_the_hpa_scales_the_lipsync_pods(docs):
    assert reference_problems(docs) == []


@pytest.mark.parametrize("name", ["lipsync", "frames", "web"])
def test_each_container_runs_a_real_lipstream_command_as_non_root(docs, name):
    deployment = find(docs, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])  # an unknown command or flag: SystemExit
    assert args.command == container["args"][0]
    assert container["image"] == "lipstream"  # the name kustomization.yaml's `images` rewrites
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0


def test_the_kustomization_lists_every_manifest():
    kustomization = load_docs(KUBE / "kustomization.yaml")[0]
    names = [p.name for p in manifest_files()]
    assert kustomization_problems(kustomization, names) == []
    assert kustomization["namespace"] == "lipstream"
    assert [image["name"] for image in kustomization["images"]] == ["lipstream"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
def test_kustomize_builds_every_resource(docs):
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    resources = [d for d in yaml.safe_load_all(built) if d]
    assert len(resources) == len(docs)
    images = {c["image"] for d in resources if d["kind"] == "Deployment" for c in containers(d)}
    assert len(images) == 1 and images.pop().startswith("lipstream:")


def test_the_dockerfile_runs_lipstream_as_non_root_on_the_variant_s_base():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_the_dockerfile_installs_torch_from_its_index_before_lipstream():
    runs = [rest for word, rest in dockerfile_instructions(DOCKERFILE.read_text()) if word == "RUN"]
    install = next(r for r in runs if "pip install" in r)
    assert "https://download.pytorch.org/whl/cpu" in install
    assert install.index('"torch==$TORCH_VERSION"') < install.index('pip install "/tmp/lipstream')
    words = shlex.split(install.replace(";", " ; "))
    assert "onnxruntime-gpu==$ort_version" in words


# --- each check fails when it should ---------------------------------------------------------


def broken(docs: list[Doc], kind: str, name: str) -> tuple[list[Doc], Doc]:
    """A deep copy of docs, and its document kind/name to break."""
    copied = copy.deepcopy(docs)
    return copied, find(copied, kind, name)


def test_strict_validation_refuses_an_unknown_field(docs):
    _, web = broken(docs, "Deployment", "web")
    containers(web)[0]["readinesProbe"] = containers(web)[0]["readinessProbe"]  # a typo
    assert "readinesProbe" in schema_problems(web, KUBERNETES_VERSIONS[0])[0]


def test_a_deployment_without_a_probe_or_a_request_is_caught(docs):
    _, web = broken(docs, "Deployment", "web")
    del containers(web)[0]["livenessProbe"]
    del containers(web)[0]["resources"]["requests"]["memory"]
    assert deployment_problems(web) == ["web/web: no livenessProbe", "web/web: no memory request"]
    _, frames = broken(docs, "Deployment", "frames")
    frames["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "web"
    assert "does not match its pods" in deployment_problems(frames)[0]


def test_a_lipsync_service_with_a_virtual_ip_or_the_wrong_pods_is_caught(docs):
    copied, service = broken(docs, "Service", "lipsync")
    service["spec"]["clusterIP"] = "10.96.0.20"
    assert lipsync_service_problems(copied) == [
        "Service lipsync is not headless: clusterIP 10.96.0.20"
    ]
    copied, service = broken(docs, "Service", "lipsync")
    del service["spec"]["selector"]["app.kubernetes.io/component"]
    assert lipsync_service_problems(copied) == [
        "Service lipsync also selects the frames pods",
        "Service lipsync also selects the web pods",
    ]


@pytest.mark.parametrize(
    "address",
    [
        "lipsync.lipstream.svc.cluster.local:50051",  # one address: no balancing
        "dns:///lipsync:50051",  # a name that is not the Service's cluster name
        "dns:///frames.lipstream.svc.cluster.local:8080",  # a Service with a virtual IP
        "dns:///lipsync.lipstream.svc.cluster.local:50052",  # not its port
    ],
)
def test_a_frame_generator_address_that_misses_the_pods_is_caught(docs, address):
    copied, frames = broken(docs, "Deployment", "frames")
    for var in containers(frames)[0]["env"]:
        if var["name"] == "GRPC_SERVER_ADDRESS":
            var["value"] = address
    assert len(lipsync_address_problems(copied)) == 1


def test_a_variable_lipstream_does_not_read_is_caught(docs):
    copied, config = broken(docs, "ConfigMap", "lipstream-config")
    config["data"]["MODEL_DIR"] = "/models"  # MODELS_DIR misspelt: silently ignored at start
    assert env_name_problems(copied) == ["MODEL_DIR is not a lipstream setting"]


def test_a_probe_or_port_that_misses_the_service_is_caught(docs):
    copied, config = broken(docs, "ConfigMap", "lipstream-config")
    config["data"]["WEBSOCKET_PORT"] = "8081"
    assert probe_problems(copied) == [
        "frames readinessProbe is not tcpSocket on WEBSOCKET_PORT",
        "frames livenessProbe is not tcpSocket on WEBSOCKET_PORT",
    ]
    assert port_problems(copied) == [
        "Deployment frames declares ports [8080], not [8081]",
        "Service frames targets ports [8080], not 8081",
    ]
    copied, config = broken(docs, "ConfigMap", "lipstream-config")
    config["data"]["GRPC_METRICS_PORT"] = "9092"
    assert port_problems(copied) == [
        "Deployment lipsync declares ports [50051, 9091], not [50051, 9092]"
    ]
    copied, lipsync = broken(docs, "Deployment", "lipsync")
    containers(lipsync)[0]["readinessProbe"]["grpc"]["service"] = "lipsync"
    assert probe_problems(copied) == [
        "lipsync readinessProbe is not grpc {'port': 50051, 'service': 'lipsync.LipSyncService'}"
    ]


def test_a_missing_or_wrong_scrape_annotation_is_caught(docs):
    copied, web = broken(docs, "Deployment", "web")
    del web["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    assert scrape_problems(copied) == ["web: no prometheus.io/path annotation"]
    copied, frames = broken(docs, "Deployment", "frames")
    frames["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "9090"
    frames["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] = "false"
    assert scrape_problems(copied) == [
        'frames: prometheus.io/scrape is not "true"',
        "frames: prometheus.io/port 9090 is not one of its ports ['8080']",
    ]
    copied, lipsync = broken(docs, "Deployment", "lipsync")
    lipsync["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "50051"
    assert scrape_problems(copied) == ["lipsync: prometheus.io/port 50051, but /metrics is on 9091"]


def test_a_missing_claim_or_a_pinned_replica_count_is_caught(docs):
    copied, lipsync = broken(docs, "Deployment", "lipsync")
    lipsync["spec"]["replicas"] = 2
    copied.remove(find(copied, "PersistentVolumeClaim", "lipstream-models"))
    assert reference_problems(copied) == [
        "lipsync: no claim lipstream-models",
        "web: no claim lipstream-models",
        "Deployment lipsync sets replicas, which each apply would reset the HPA's",
    ]


def test_a_kustomization_that_misses_a_file_is_caught():
    kustomization = load_docs(KUBE / "kustomization.yaml")[0]
    names = [p.name for p in manifest_files()]
    assert kustomization_problems(kustomization, [*names, "ingress.yaml"]) == [
        "ingress.yaml is not in kustomization.yaml"
    ]
    assert kustomization_problems(kustomization, names[1:]) == [
        f"kustomization.yaml lists {names[0]}, which is not there"
    ]


def test_a_dockerfile_without_the_entrypoint_or_the_variant_is_caught():
    text = DOCKERFILE.read_text()
    assert dockerfile_problems(
        text.replace('ENTRYPOINT ["lipstream"]', 'ENTRYPOINT ["python"]')
    ) == ["the ENTRYPOINTs are [['python']], not one: lipstream"]
    assert dockerfile_problems(text.replace("ARG VARIANT=cpu", "ARG FLAVOUR=cpu")) == [
        "no ARG VARIANT=cpu before the first FROM"
    ]
    assert dockerfile_problems(text.replace("USER 10001:10001", "USER root")) == [
        "the image runs as ['root']"
    ]
