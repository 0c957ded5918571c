"""The deployment files: manifests valid against Kubernetes schemas (offline), and the
container file and systemd unit naming real paths and commands of the project."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from supervisor.cli import build_parser
from supervisor.settings import parse_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent
K8S = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.33.0"


def _documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((str(path.relative_to(DEPLOY)), doc))
    return docs


# Kustomize files and the ServiceMonitor CRD have no built-in schema; the sidecar patch is
# a partial (strategic merge) object. Each of those gets its own test below.
BUILTIN = [
    (name, doc)
    for name, doc in _documents()
    if not doc["apiVersion"].startswith(("kustomize.", "monitoring.")) and "/components/" not in f"/{name}"
]


@pytest.mark.parametrize(("name", "doc"), BUILTIN, ids=[f"{n}:{d['kind']}" for n, d in BUILTIN])
def test_manifest_validates_against_kubernetes_schema(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_servicemonitor_targets_the_metrics_port() -> None:
    monitor = yaml.safe_load((K8S / "servicemonitor.yaml").read_text())
    service = yaml.safe_load((K8S / "service.yaml").read_text())
    assert monitor["kind"] == "ServiceMonitor" and monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}


def test_configmap_holds_a_valid_config() -> None:
    configmap = yaml.safe_load((K8S / "configmap.yaml").read_text())
    parse_settings(tomllib.loads(configmap["data"]["config.toml"]), "configmap")


def test_daemonset_grants_only_explained_capabilities() -> None:
    text = (K8S / "daemonset.yaml").read_text()
    daemonset = yaml.safe_load(text)
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    context = container["securityContext"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["allowPrivilegeEscalation"] is False
    assert "privileged" not in context
    for capability in context["capabilities"]["add"]:
        before = text.split(f"- {capability}")[0].rstrip().splitlines()
        assert before[-1].strip().startswith("#") or before[-1].strip() in {"- SETUID"}, f"{capability} is unexplained"
    assert container["command"][:2] == ["ire", "serve"]


def test_opa_sidecar_uses_the_real_opa_image() -> None:
    patch = yaml.safe_load((K8S / "components/opa-sidecar/daemonset-patch.yaml").read_text())
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("openpolicyagent/opa:")


def test_containerfile_copies_real_paths_and_runs_ire() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    for source in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"Containerfile copies {path}, which does not exist"
    assert re.search(r'ENTRYPOINT \["ire"\]', text) and 'CMD ["serve"]' in text
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "ire" in scripts


def test_systemd_unit_runs_ire_serve() -> None:
    text = (DEPLOY / "systemd/ire.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.+)$", text, re.MULTILINE)
    assert exec_start and exec_start.group(1).endswith("/bin/ire")
    args = exec_start.group(2).split()
    parsed = build_parser().parse_args(args)
    assert parsed.command == "serve"
    assert "Environment=IRE_HOME=" in text
