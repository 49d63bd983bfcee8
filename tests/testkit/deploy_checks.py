"""The checks on deploy/ that tests/deploy runs: the manifests and Dockerfile read back, and one
function per fact the deployment rests on, each returning the problems it finds (an empty list
when all is well), so a test can run it on the real files and on a broken copy."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from lipstream.settings import Settings

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
