"""deploy/: the Kubernetes manifests are valid for Kubernetes and wired as docs/deployment.md says.

No cluster and no Docker daemon are at hand, so every manifest is checked against the Kubernetes
API schemas (kubernetes-validate, strict: unknown fields fail too), and the facts the deployment
rests on are checked on the parsed documents: probes where the services answer them, the
headless Service behind the frame generator's dns:/// target, setting names lipstream knows,
Prometheus' scrape annotations on the ports that answer GET /metrics.
Each check is a function returning the problems it finds; the tests run it on the real files and
on a broken copy, so that each check is seen to fail when it should.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from lipstream.cli import build_parser
from lipstream.settings import Settings
from lipstream.web.app import create_app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
LOADER = DEPLOY / "models-loader.yaml"

# The manifests need Kubernetes >= 1.24 (the grpc probe); 1.27 is the oldest release with schemas
# in kubernetes-validate where that probe is generally available. The newest it knows comes too.
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.latest_version())

LIPSYNC_SERVICE = "lipsync.LipSyncService"  # the health service name the lip-sync service sets
SETTING_NAMES = {name.upper() for name in Settings.model_fields}

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def all_docs() -> list[Doc]:
    return [doc for path in manifest_files() for doc in load_docs(path)]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def containers(deployment: Doc) -> list[Doc]:
    return deployment["spec"]["template"]["spec"]["containers"]


def config_data(docs: list[Doc]) -> dict[str, str]:
    return find(docs, "ConfigMap", "lipstream-config")["data"]


def env_value(deployment: Doc, name: str) -> str | None:
    for container in containers(deployment):
        for var in container.get("env", []):
            if var["name"] == name:
                return var.get("value")
    return None


# --- the checks ------------------------------------------------------------------------------


def schema_problems(doc: Doc, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        return [f"{doc['kind']} {doc['metadata']['name']}: {where}: {exc.message}"]
    return []


def deployment_problems(deployment: Doc) -> list[str]:
    """Probes and resources on every container; a selector that matches the pods it makes."""
    name = deployment["metadata"]["name"]
    problems = []
    for c in containers(deployment):
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in c:
                problems.append(f"{name}/{c['name']}: no {probe}")
        requests = c.get("resources", {}).get("requests", {})
        limits = c.get("resources", {}).get("limits", {})
        for resource in ("cpu", "memory"):
            if resource not in requests:
                problems.append(f"{name}/{c['name']}: no {resource} request")
        if "memory" not in limits:
            problems.append(f"{name}/{c['name']}: no memory limit")
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    if not selector.items() <= labels.items():
        problems.append(f"{name}: selector {selector} does not match its pods {labels}")
    return problems


def selects(service: Doc, deployment: Doc) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return service["spec"]["selector"].items() <= labels.items()


def lipsync_service_problems(docs: list[Doc]) -> list[str]:
    """The Service `lipsync` is headless and selects the lip-sync pods, and no others."""
    service = find(docs, "Service", "lipsync")
    problems = []
    if service["spec"].get("clusterIP") != "None":
        problems.append(
            f"Service lipsync is not headless: clusterIP {service['spec'].get('clusterIP')}"
        )
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        wanted = deployment["metadata"]["name"] == "lipsync"
        if selects(service, deployment) != wanted:
            verb = "does not select" if wanted else "also selects"
            problems.append(f"Service lipsync {verb} the {deployment['metadata']['name']} pods")
    ports = [p["port"] for p in service["spec"]["ports"]]
    grpc_port = int(config_data(docs)["GRPC_SERVER_PORT"])
    if ports != [grpc_port]:
        problems.append(f"Service lipsync has ports {ports}, not GRPC_SERVER_PORT {grpc_port}")
    return problems


def lipsync_address_problems(docs: list[Doc]) -> list[str]:
    """The frame generator dials dns:///<headless Service's cluster name>:<its port>."""
    frames = find(docs, "Deployment", "frames")
    address = env_value(frames, "GRPC_SERVER_ADDRESS")
    match = re.fullmatch(r"dns:///([^:/]+):(\d+)", address or "")
    if not match:
        return [f"GRPC_SERVER_ADDRESS {address!r} is not dns:///host:port"]
    host, port = match.group(1), int(match.group(2))
    problems = []
    headless = {
        f"{s['metadata']['name']}.{s['metadata']['namespace']}.svc.cluster.local": s
        for s in docs
        if s["kind"] == "Service" and s["spec"].get("clusterIP") == "None"
    }
    service = headless.get(host)
    if service is None:
        problems.append(f"GRPC_SERVER_ADDRESS names {host}, not a headless Service's name")
    elif not selects(service, find(docs, "Deployment", "lipsync")):
        problems.append(f"{host} does not select the lip-sync pods")
    elif port not in [p["port"] for p in service["spec"]["ports"]]:
        problems.append(f"GRPC_SERVER_ADDRESS port {port} is not a port of {host}")
    return problems


def env_name_problems(docs: list[Doc]) -> list[str]:
    """Every variable the manifests set is one of lipstream's settings."""
    names = set(config_data(docs))
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        names |= {var["name"] for c in containers(deployment) for var in c.get("env", [])}
    return [f"{name} is not a lipstream setting" for name in sorted(names - SETTING_NAMES)]


def probe_problems(docs: list[Doc]) -> list[str]:
    """Each probe asks the port and the question its service answers."""
    config = config_data(docs)
    grpc_port = int(config["GRPC_SERVER_PORT"])
    problems = []
    lipsync = containers(find(docs, "Deployment", "lipsync"))[0]
    for probe in ("startupProbe", "readinessProbe"):
        expected = {"port": grpc_port, "service": LIPSYNC_SERVICE}
        if lipsync.get(probe, {}).get("grpc") != expected:
            problems.append(f"lipsync {probe} is not grpc {expected}")
    if lipsync["livenessProbe"].get("grpc", {}).get("port") != grpc_port:
        problems.append("lipsync livenessProbe is not grpc on GRPC_SERVER_PORT")
    frames = containers(find(docs, "Deployment", "frames"))[0]
    for probe in ("readinessProbe", "livenessProbe"):
        if frames[probe].get("tcpSocket") != {"port": int(config["WEBSOCKET_PORT"])}:
            problems.append(f"frames {probe} is not tcpSocket on WEBSOCKET_PORT")
    web = containers(find(docs, "Deployment", "web"))[0]
    for probe in ("readinessProbe", "livenessProbe"):
        if web[probe].get("httpGet", {}).get("port") != int(config["PORT"]):
            problems.append(f"web {probe} is not httpGet on PORT")
    return problems


def metrics_ports(docs: list[Doc]) -> dict[str, int]:
    """The port each Deployment's service answers GET /metrics on, from the ConfigMap."""
    config = config_data(docs)
    return {
        "lipsync": int(config["GRPC_METRICS_PORT"]),
        "frames": int(config["WEBSOCKET_PORT"]),
        "web": int(config["PORT"]),
    }


def port_problems(docs: list[Doc]) -> list[str]:
    """Container ports and Service target ports are the ports the ConfigMap gives the services
    (the lip-sync pods also declare their metrics port; its Service carries gRPC only)."""
    config = config_data(docs)
    expected = {
        "lipsync": int(config["GRPC_SERVER_PORT"]),
        "frames": int(config["WEBSOCKET_PORT"]),
        "web": int(config["PORT"]),
    }
    extra = {"lipsync": [int(config["GRPC_METRICS_PORT"])]}
    problems = []
    for name, port in expected.items():
        declared = [
            p["containerPort"] for p in containers(find(docs, "Deployment", name))[0]["ports"]
        ]
        wanted = [port, *extra.get(name, [])]
        if declared != wanted:
            problems.append(f"Deployment {name} declares ports {declared}, not {wanted}")
        targets = [p["targetPort"] for p in find(docs, "Service", name)["spec"]["ports"]]
        if targets != [port]:
            problems.append(f"Service {name} targets ports {targets}, not {port}")
    return problems


SCRAPE_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")


def scrape_problems(docs: list[Doc]) -> list[str]:
    """Every Deployment's pods ask Prometheus to scrape GET /metrics on a port they declare,
    the one their service answers it on."""
    answers_on = metrics_ports(docs)
    problems = []
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        missing = [key for key in SCRAPE_ANNOTATIONS if key not in annotations]
        if missing:
            problems.append(f"{name}: no {', '.join(missing)} annotation")
            continue
        if annotations["prometheus.io/scrape"] != "true":
            problems.append(f'{name}: prometheus.io/scrape is not "true"')
        if annotations["prometheus.io/path"] != "/metrics":
            problems.append(f"{name}: prometheus.io/path is not /metrics")
        port = str(annotations["prometheus.io/port"])
        declared = [str(p["containerPort"]) for c in containers(deployment) for p in c["ports"]]
        if port not in declared:
            problems.append(f"{name}: prometheus.io/port {port} is not one of its ports {declared}")
        elif name in answers_on and port != str(answers_on[name]):
            problems.append(
                f"{name}: prometheus.io/port {port}, but /metrics is on {answers_on[name]}"
            )
    return problems


def reference_problems(docs: list[Doc]) -> list[str]:
    """ConfigMaps and claims the pods use exist; the HPA scales the lip-sync Deployment."""
    have = {(d["kind"], d["metadata"]["name"]) for d in docs}
    problems = []
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and ("ConfigMap", ref["name"]) not in have:
                    problems.append(f"{deployment['metadata']['name']}: no ConfigMap {ref['name']}")
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            if claim and ("PersistentVolumeClaim", claim["claimName"]) not in have:
                problems.append(f"{deployment['metadata']['name']}: no claim {claim['claimName']}")
    target = find(docs, "HorizontalPodAutoscaler", "lipsync")["spec"]["scaleTargetRef"]
    if (target["kind"], target["name"]) != ("Deployment", "lipsync"):
        problems.append(f"the HPA scales {target['kind']} {target['name']}")
    if "replicas" in find(docs, "Deployment", "lipsync")["spec"]:
        problems.append("Deployment lipsync sets replicas, which each apply would reset the HPA's")
    return problems


def kustomization_problems(kustomization: Doc, yaml_files: list[str]) -> list[str]:
    listed = kustomization.get("resources", [])
    problems = [f"{name} is not in kustomization.yaml" for name in yaml_files if name not in listed]
    problems += [
        f"kustomization.yaml lists {name}, which is not there"
        for name in listed
        if name not in yaml_files
    ]
    return problems


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = []
    entrypoints = [json.loads(args) for word, args in instructions if word == "ENTRYPOINT"]
    if entrypoints != [["lipstream"]]:
        problems.append(f"the ENTRYPOINTs are {entrypoints}, not one: lipstream")
    # the ARGs before the first FROM are those a FROM line can use
    first_from = next(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    if ("ARG", "VARIANT=cpu") not in instructions[:first_from]:
        problems.append("no ARG VARIANT=cpu before the first FROM")
    froms = [rest for word, rest in instructions if word == "FROM"]
    if not froms or not froms[-1].startswith("base-${VARIANT}"):
        problems.append(f"the final stage {froms[-1:]} is not chosen by VARIANT")
    for variant in ("cpu", "cuda"):
        if not any(f.endswith(f" AS base-{variant}") for f in froms):
            problems.append(f"no base-{variant} stage")
    users = [rest for word, rest in instructions if word == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append(f"the image runs as {users[-1:] or 'root'}")
    if not any(word == "COPY" and rest.startswith("models ") for word, rest in instructions):
        problems.append("models/ is not copied into the image")
    return problems


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
