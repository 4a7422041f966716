"""compose/kubernetes/ as Kubernetes, KEDA, the NATS chart and the policy want it, checked
offline (no cluster, no kustomize binary).

The kustomization is rendered the way ``kubectl apply -k`` would for what matters here: its
resources are read, its generators are made from the files ``jetmesh admin secrets`` writes
(``secrets/`` is that directory), ``jetmesh-roots`` as ``kubectl create secret
--from-file=secrets/admin/roots`` makes it, and the namespace is set. Then:

- every object is valid against the Kubernetes JSON schemas (strict: no unknown field) of
  the oldest and the newest version ``kubernetes-validate`` ships;
- every ScaledObject against KEDA's CRD schema, vendored: schemas/keda-scaledobject-v1alpha1.json
  is the ``openAPIV3Schema`` of ``config/crd/bases/keda.sh_scaledobjects.yaml`` of
  https://github.com/kedacore/keda at tag v2.20.2 (commit
  68a5b5028f35b22d50597c69819ab32c4e92f21a);
- nats-values.yaml against the chart's own keys: the chart has no values.schema.json, so
  every key we set must be one of its values.yaml (schemas/nats-chart-values.yaml is
  ``helm/charts/nats/values.yaml`` of https://github.com/nats-io/k8s at tag nats-2.14.2,
  commit 957650fba03e2e6ad8b5d54d66358f67a431157b), and the server configuration it makes
  passes ``nats-server -t``;
- what the policy and the settings say: a Deployment, a PodDisruptionBudget and a
  ScaledObject per role, each role's keys directory built from its own Secret alone, the
  probes on the health port, a grace period longer than the drain, KEDA reading each
  role's consumer on the tasks stream.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import posixpath
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from subprocess import Popen
from typing import Any, TypeVar

import jsonschema
import kubernetes_validate
import pytest
import yaml
from redis import Redis
from redis.exceptions import NoPermissionError, RedisError
from redis.sentinel import Sentinel

from jetmesh import MeshSettings
from jetmesh.embedded import free_port
from jetmesh.embedded.binaries import nats_server_binary, redis_server_binary
from jetmesh.identity.keystore import KeyStore
from jetmesh.logins import admin_login
from jetmesh.memory.redis_url import SentinelTarget
from jetmesh.policy import mesh_policy
from jetmesh.policy.servers import ACCOUNT
from services import research, support
from tests.compose.conftest import COMPOSE_DIR, DEMO_POLICY, ROOT, Processes

KUBE = COMPOSE_DIR / "kubernetes"
SCHEMAS = Path(__file__).with_name("schemas")
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
"""The oldest and the newest Kubernetes whose schemas kubernetes-validate ships (and we check)."""
ROOTS_SECRET = "jetmesh-roots"
ROOTS_FILE = "secrets/roots.yaml"
"""Made at deploy time by kubectl from secrets/admin/roots (README.md): not in the tree."""
NATS_RELEASE = "nats"
NATS_CONFIG_DIR = PurePosixPath("/etc/nats-config")
"""Where the chart mounts nats.conf; its includes are relative to it."""
AGENT_TARGETS = {
    **{role: f"services.support.{role}:agent" for role in support.ROLES},
    **support.PROCESSES,
    **{role: f"services.research.{role}:agent" for role in research.ROLES},
}
"""Every process of both meshes: its roles, and the tool gateway."""

Manifest = dict[str, Any]
T = TypeVar("T")


# --- rendering --------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    return loaded


def load_resources(names: list[str]) -> list[Manifest]:
    docs: list[Manifest] = []
    for name in names:
        if name == ROOTS_FILE:
            continue
        docs += [d for d in yaml.safe_load_all((KUBE / name).read_text()) if d]
    return docs


def _file_source(entry: str) -> tuple[str, str]:
    key, eq, path = entry.partition("=")
    return (key, path) if eq else (PurePosixPath(entry).name, entry)


def generator_files(secrets: Path) -> Iterator[tuple[str, str, Path]]:
    """(generator name, key, file) of every file a generator reads, ``secrets/`` being
    ``secrets``."""
    spec = kustomization()
    for generator in [*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])]:
        for entry in generator.get("files", []):
            key, path = _file_source(entry)
            source = KUBE / path
            if path.startswith("secrets/"):
                source = secrets / path.removeprefix("secrets/")
            yield generator["name"], key, source


def _literals(generator: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in generator.get("literals", []))


def generated(secrets: Path) -> list[Manifest]:
    """The ConfigMaps and Secrets the kustomization's generators make (names without the
    content hash kustomize appends: it rewrites the references along with them), and the
    roots Secret as ``kubectl create secret generic --from-file`` makes it."""
    spec = kustomization()
    data: dict[str, dict[str, str]] = {}
    for name, key, source in generator_files(secrets):
        data.setdefault(name, {})[key] = source.read_text()
    objects: list[Manifest] = []
    for generator in spec.get("configMapGenerator", []):
        name = generator["name"]
        merged = {**_literals(generator), **data.get(name, {})}
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": merged}
        )
    for generator in spec.get("secretGenerator", []):
        name = generator["name"]
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data[name].items()}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "type": "Opaque",
                "data": encoded,
            }
        )
    roots = {
        p.name: base64.b64encode(p.read_bytes()).decode()
        for p in sorted((secrets / "admin" / "roots").glob("*.pub"))
    }
    objects.append(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": ROOTS_SECRET}, "data": roots}
    )
    return objects


def render(secrets: Path) -> list[Manifest]:
    """What ``kubectl apply -k compose/kubernetes`` applies, for the checks here."""
    spec = kustomization()
    objects = copy.deepcopy(load_resources(spec["resources"])) + generated(secrets)
    for obj in objects:
        if obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = spec["namespace"]
    return objects


@pytest.fixture(scope="module")
def rendered(deploy_secrets: Path) -> list[Manifest]:
    return render(deploy_secrets)


def of_kind(objects: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_of(objects: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMaps (envFrom), then its own ``env``."""
    maps = of_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def visible_files(pod: dict[str, Any], container: dict[str, Any], under: str) -> set[str]:
    """The files of Secret volumes ``container`` sees below ``under``, relative to it, as
    the kubelet lays them out (``items`` paths, ``subPath`` mounts); a Secret volume without
    items shows every key of the Secret, written ``*`` here."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files: set[str] = set()
    root = PurePosixPath(under)
    for mount in container.get("volumeMounts", []):
        where = PurePosixPath(mount["mountPath"])
        if where != root and root not in where.parents:
            continue
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        paths = [i["path"] for i in secret.get("items", [])] or ["*"]
        sub = mount.get("subPath")
        for path in paths:
            if sub is not None:
                if path == sub:
                    path = "."
                elif path.startswith(sub + "/"):
                    path = path.removeprefix(sub + "/")
                else:
                    continue
            full = where / path
            files.add(str(full.relative_to(root)))
    return files


def mounted_secrets(pod: dict[str, Any]) -> set[str]:
    return {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}


# --- schemas ----------------------------------------------------------------------------


def kubernetes_problems(obj: Manifest, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}"]
    return []


def keda_problems(obj: Manifest) -> list[str]:
    schema = json.loads((SCHEMAS / "keda-scaledobject-v1alpha1.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    present = {
        str(p.relative_to(KUBE))
        for p in KUBE.rglob("*.yaml")
        if "secrets" not in p.relative_to(KUBE).parts
        and p.name not in ("kustomization.yaml", "nats-values.yaml")
    }
    assert listed == present | {ROOTS_FILE}


def test_every_file_a_generator_reads_is_there(deploy_secrets: Path) -> None:
    """The tree's files, and what ``jetmesh admin secrets --tool refund --tool handoff``
    writes: a generator naming a file it does not write would stop ``kubectl apply -k``."""
    missing = [str(f) for _, _, f in generator_files(deploy_secrets) if not f.is_file()]
    assert missing == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_kubernetes(rendered: list[Manifest], version: str) -> None:
    objects = [o for o in rendered if o["apiVersion"] != "keda.sh/v1alpha1"]
    assert len(objects) > 40
    assert [p for o in objects for p in kubernetes_problems(o, version)] == []


def test_every_scaled_object_is_valid_for_keda(rendered: list[Manifest]) -> None:
    scaled = list(of_kind(rendered, "ScaledObject").values())
    assert scaled
    assert [p for o in scaled for p in keda_problems(o)] == []


def test_the_schemas_catch_what_is_wrong(rendered: list[Manifest]) -> None:
    deployment = copy.deepcopy(of_kind(rendered, "Deployment")["billing"])
    pod_spec(deployment)["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/readyz"
    assert kubernetes_problems(deployment, KUBERNETES_VERSIONS[0])
    scaled = copy.deepcopy(of_kind(rendered, "ScaledObject")["billing"])
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 64  # KEDA wants strings
    del scaled["spec"]["scaleTargetRef"]
    assert len(keda_problems(scaled)) == 2


# --- the roles --------------------------------------------------------------------------


def test_every_role_has_a_deployment_a_budget_and_a_scaler(rendered: list[Manifest]) -> None:
    policy = mesh_policy(DEMO_POLICY)
    agents = {name for name, role in policy.roles.items() if not role.ingress}
    assert agents == set(AGENT_TARGETS)
    for kind in ("Deployment", "ScaledObject"):
        assert set(of_kind(rendered, kind)) == agents, kind
    servers = {"redis", "redis-sentinel"}
    assert set(of_kind(rendered, "PodDisruptionBudget")) == agents | servers


def test_each_deployment_runs_its_role(rendered: list[Manifest]) -> None:
    for role, deployment in of_kind(rendered, "Deployment").items():
        (container,) = pod_spec(deployment)["containers"]
        assert container["command"][:3] == ["jetmesh", "run", AGENT_TARGETS[role]], role
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), role
        budget = of_kind(rendered, "PodDisruptionBudget")[role]
        assert budget["spec"]["selector"]["matchLabels"] == selector, role
        assert "replicas" not in deployment["spec"], f"{role}: KEDA owns the replicas"


def test_each_role_sees_its_own_keys_directory_and_nothing_else(
    rendered: list[Manifest], deploy_secrets: Path
) -> None:
    """The files a role's container finds in JETMESH_KEYS_DIR are those of
    ``secrets/<role>/``, from its own Secret and the roots'."""
    secrets = of_kind(rendered, "Secret")
    for role, deployment in of_kind(rendered, "Deployment").items():
        pod = pod_spec(deployment)
        (container,) = pod["containers"]
        keys_dir = env_of(rendered, container)["JETMESH_KEYS_DIR"]
        written = {
            str(p.relative_to(deploy_secrets / role))
            for p in (deploy_secrets / role).rglob("*")
            if p.is_file()
        }
        roots = {f"roots/{name}" for name in secrets[ROOTS_SECRET]["data"]}
        seen = visible_files(pod, container, keys_dir)
        assert seen == (written - roots) | {"roots/*"}, role
        extra = {"jetmesh-tool-credentials"} if role == "toolgate" else set()
        assert mounted_secrets(pod) == {f"jetmesh-{role}", ROOTS_SECRET} | extra, role
        role_secret = next(v for v in pod["volumes"] if v["name"] == "keys")["secret"]
        assert {i["key"] for i in role_secret["items"]} == set(secrets[f"jetmesh-{role}"]["data"])
        assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] != "tmp")


def test_a_role_given_another_role_secret_is_found(rendered: list[Manifest]) -> None:
    deployment = copy.deepcopy(of_kind(rendered, "Deployment")["billing"])
    pod = pod_spec(deployment)
    next(v for v in pod["volumes"] if v["name"] == "keys")["secret"]["secretName"] = "jetmesh-kb"
    assert mounted_secrets(pod) != {"jetmesh-billing", ROOTS_SECRET}


def test_the_probes_ask_the_health_port(rendered: list[Manifest]) -> None:
    for role, deployment in of_kind(rendered, "Deployment").items():
        (container,) = pod_spec(deployment)["containers"]
        command = container["command"]
        port = int(command[command.index("--health-port") + 1])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"health": port}, role
        paths = {}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert ports.get(get["port"], get["port"]) == port, (role, probe)
            paths[probe] = get["path"]
        assert paths["readinessProbe"] == "/readyz", role
        assert paths["livenessProbe"] == paths["startupProbe"] == "/healthz", role
        assert env_of(rendered, container)["JETMESH_HEALTH_HOST"] == "0.0.0.0"


def test_the_grace_period_outlasts_the_drain(rendered: list[Manifest]) -> None:
    default = MeshSettings.model_fields["drain_timeout_s"].default
    for role, deployment in of_kind(rendered, "Deployment").items():
        pod = pod_spec(deployment)
        (container,) = pod["containers"]
        drain = float(env_of(rendered, container).get("JETMESH_DRAIN_TIMEOUT_S", default))
        grace = pod["terminationGracePeriodSeconds"]
        assert grace >= max(drain, default) + 10, role


def test_every_process_reaches_the_cluster_and_the_sentinels(rendered: list[Manifest]) -> None:
    sentinels = of_kind(rendered, "StatefulSet")["redis-sentinel"]
    service = sentinels["spec"]["serviceName"]
    expected = tuple(
        (f"{sentinels['metadata']['name']}-{i}.{service}", 26379)
        for i in range(sentinels["spec"]["replicas"])
    )
    monitor = re.search(
        r"^sentinel monitor (\S+) ", (KUBE / "redis" / "sentinel.conf").read_text(), re.M
    )
    assert monitor is not None
    workloads = [*of_kind(rendered, "Deployment").values(), *of_kind(rendered, "Job").values()]
    for workload in workloads:
        for container in pod_spec(workload)["containers"]:
            env = env_of(rendered, container)
            target = SentinelTarget.parse(env["JETMESH_REDIS_URL"])
            assert target.sentinels == expected
            assert target.service == monitor.group(1)
            assert env["JETMESH_NATS_URL"] == f"nats://{NATS_RELEASE}:4222"
            assert env["JETMESH_STREAM_REPLICAS"] == "3"
            policy = PurePosixPath(env["JETMESH_POLICY_FILE"])
            assert policy.is_relative_to("/etc/jetmesh/policy")


def test_the_policy_config_map_is_the_demo_policy() -> None:
    """The kustomization reads only files under its directory: the policy files are copies,
    kept equal to the meshes' own, laid out so that the demo's includes resolve."""
    copies = {
        "demo.toml": ROOT / "services" / "demo" / "policy.toml",
        "support.toml": ROOT / "services" / "support" / "policy.toml",
        "research.toml": ROOT / "services" / "research" / "policy.toml",
    }
    for name, source in copies.items():
        assert (KUBE / "policy" / name).read_text() == source.read_text(), name
    deployment = next(yaml.safe_load_all((KUBE / "agents" / "billing.yaml").read_text()))
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "policy")
    items = {i["key"]: i["path"] for i in volume["configMap"]["items"]}
    assert items == {
        "demo.toml": "demo/policy.toml",
        "support.toml": "support/policy.toml",
        "research.toml": "research/policy.toml",
    }


def test_the_admin_job_provisions_as_the_admin(
    rendered: list[Manifest], deploy_secrets: Path
) -> None:
    """The admin step's Secret holds everything of ``secrets/admin/`` but the roots (from
    their own Secret), laid out as the keys directory it copies them into."""
    (job,) = of_kind(rendered, "Job").values()
    pod = pod_spec(job)
    (container,) = pod["containers"]
    assert container["command"] == ["jetmesh", "admin", "provision"]
    (init,) = pod["initContainers"]
    admin = next(v for v in pod["volumes"] if v["name"] == "admin-secret")["secret"]
    written = {
        str(p.relative_to(deploy_secrets / "admin"))
        for p in (deploy_secrets / "admin").rglob("*")
        if p.is_file() and p.parent.name != "roots"
    }
    assert {i["path"] for i in admin["items"]} == written
    assert mounted_secrets(pod) == {"jetmesh-admin", ROOTS_SECRET}
    assert "/secrets/admin/* " in init["command"][-1]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 5


# --- KEDA -------------------------------------------------------------------------------


def test_keda_reads_each_role_consumer_on_the_tasks_stream(rendered: list[Manifest]) -> None:
    values = yaml.safe_load((KUBE / "nats-values.yaml").read_text())
    monitor = values["config"]["monitor"]
    assert monitor["enabled"] is True
    namespace = kustomization()["namespace"]
    endpoint = f"{NATS_RELEASE}-headless.{namespace}.svc.cluster.local:{monitor['port']}"
    for role, scaled in of_kind(rendered, "ScaledObject").items():
        assert scaled["spec"]["scaleTargetRef"]["name"] == role
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert meta["consumer"] == role
        assert meta["stream"] == MeshSettings().tasks_stream
        assert meta["account"] == ACCOUNT
        assert meta["natsServerMonitoringEndpoint"] == endpoint
        assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


# --- NATS -------------------------------------------------------------------------------


FREE_FORM = {"merge", "patch", "topologySpreadConstraints", "env"}
"""Chart keys whose contents are ours (nats.conf, JSON patches, maps), not the chart's keys."""


def unknown_keys(ours: Any, chart: Any, at: str = "") -> list[str]:
    if not isinstance(ours, dict):
        return []
    unknown: list[str] = []
    for key, value in ours.items():
        where = f"{at}.{key}" if at else key
        if not isinstance(chart, dict) or key not in chart:
            unknown.append(where)
        elif key not in FREE_FORM:
            unknown += unknown_keys(value, chart[key], where)
    return unknown


def chart_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SCHEMAS / "nats-chart-values.yaml").read_text())
    return loaded


def nats_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((KUBE / "nats-values.yaml").read_text())
    return loaded


def test_nats_values_are_the_chart_keys() -> None:
    assert unknown_keys(nats_values(), chart_values()) == []
    wrong = {"config": {"jetStream": {"enabled": True}}, "natsbox": {}}
    assert unknown_keys(wrong, chart_values()) == ["config.jetStream", "natsbox"]


def compose_nats_setting(name: str) -> str:
    conf = (COMPOSE_DIR / "nats" / "nats.conf").read_text()
    found = re.search(rf"^\s*{name}:\s*(\S+)\s*$", conf, re.M)
    assert found is not None, name
    return found.group(1)


def test_nats_values_make_a_durable_three_node_cluster() -> None:
    config = nats_values()["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert jetstream["merge"]["sync_interval"] == compose_nats_setting("sync_interval")
    assert config["merge"]["max_payload"] == f"<< {compose_nats_setting('max_payload')} >>"


def users_include() -> tuple[PurePosixPath, str]:
    """Where the users file the chart's configuration includes is, and the Secret mounted
    there."""
    values = nats_values()
    (include,) = [v for k, v in values["config"]["merge"].items() if k.endswith("$include")]
    resolved = PurePosixPath(posixpath.normpath(NATS_CONFIG_DIR / include))
    (mount,) = [p["value"] for p in values["container"]["patch"]]
    (volume,) = [p["value"] for p in values["podTemplate"]["patch"]]
    assert mount["name"] == volume["name"]
    assert resolved.parent == PurePosixPath(mount["mountPath"])
    return resolved, volume["secret"]["secretName"]


def test_the_users_include_is_the_generated_secret(rendered: list[Manifest]) -> None:
    path, secret_name = users_include()
    assert path == PurePosixPath("/etc/nats-users/nats-users.conf")
    (generator,) = [g for g in kustomization()["secretGenerator"] if g["name"] == secret_name]
    # the chart names it as it is: no content hash in its name
    assert generator["options"]["disableNameSuffixHash"] is True
    assert path.name in of_kind(rendered, "Secret")[secret_name]["data"]


def chart_config(values: dict[str, Any], users: str) -> str:
    """nats.conf as the chart writes it from ``values`` (files/config/*.yaml, then
    ``config.merge``; a ``$include`` key becomes an include directive), with the server's
    directories moved under a test's temporary one."""
    config = values["config"]
    lines = [
        "port: 4222",
        f"http_port: {config['monitor']['port']}",
        "jetstream {",
        '  store_dir: "STORE"',
        f"  max_file_store: {config['jetstream']['fileStore']['pvc']['size'].replace('i', '')}",
        *(f"  {k}: {v}" for k, v in config["jetstream"]["merge"].items()),
        "}",
    ]
    for key, value in sorted(config["merge"].items()):
        if key.endswith("$include"):
            lines.append(f"include {users};")
        else:
            lines.append(f"{key}: {str(value).removeprefix('<< ').removesuffix(' >>')}")
    return "\n".join(lines) + "\n"


def test_the_chart_config_with_the_generated_users_passes_nats_server(
    deploy_secrets: Path, tmp_path: Path
) -> None:
    etc = tmp_path / "etc"
    conf_dir = etc / NATS_CONFIG_DIR.name
    path, _ = users_include()
    users_dir = etc / path.parent.name
    conf_dir.mkdir(parents=True)
    users_dir.mkdir()
    (users_dir / path.name).write_text((deploy_secrets / "servers" / path.name).read_text())
    (include,) = [v for k, v in nats_values()["config"]["merge"].items() if k.endswith("$include")]
    conf = chart_config(nats_values(), include).replace("STORE", str(tmp_path / "js"))
    (conf_dir / "nats.conf").write_text(conf)
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(conf_dir / "nats.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout
    (users_dir / path.name).write_text("accounts { MESH { users: [ {nkey: broken} ] ")
    broken = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(conf_dir / "nats.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert broken.returncode != 0


# --- Redis ------------------------------------------------------------------------------


def directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found.setdefault(name, value)
    return found


def test_redis_keeps_the_compose_durability_settings() -> None:
    ours = directives((KUBE / "redis" / "redis.conf").read_text())
    compose = directives((COMPOSE_DIR / "redis" / "primary.conf").read_text())
    for name in ("appendonly", "appendfsync", "save", "maxmemory-policy", "aclfile", "masteruser"):
        assert ours[name] == compose[name], name
    sentinel = directives((KUBE / "redis" / "sentinel.conf").read_text())
    composed = directives((COMPOSE_DIR / "redis" / "sentinel.conf").read_text())
    assert sentinel["port"] == composed["port"]


def test_redis_pods_get_the_acl_and_the_admin_password(rendered: list[Manifest]) -> None:
    secrets = of_kind(rendered, "Secret")
    assert set(secrets["redis-users"]["data"]) == {"users.acl", "default.pass"}
    for name in ("redis", "redis-sentinel"):
        pod = pod_spec(of_kind(rendered, "StatefulSet")[name])
        assert mounted_secrets(pod) == {"redis-users"}, name
        (container,) = pod["containers"]
        script = container["command"][-1]
        config = of_kind(rendered, "ConfigMap")["redis-config"]["data"]
        assert PurePosixPath(script).name in config, name
        assert "/etc/redis-users/default.pass" in config[PurePosixPath(script).name], name


# --- Redis, started by its own scripts on loopback ----------------------------------------


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 20.0) -> T:
    """``probe()``'s first answer that is not None (its errors count as no answer yet)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            answer = probe()
        except (RedisError, OSError) as exc:
            last, answer = exc, None
        if answer is not None:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"{what}: no answer in {timeout_s} s (last error: {last})")


class Pod:
    """A pod's files on loopback: compose/kubernetes/redis/ copied under ``root`` with the
    pod's paths (/etc/redis, /etc/redis-users, /data) moved there, the other pods' names
    and the ports replaced by loopback ones, and the Secret's files in place."""

    def __init__(self, root: Path, secrets: Path, ports: dict[str, int]) -> None:
        self.root = root
        for sub in ("etc/redis", "etc/redis-users", "data"):
            (root / sub).mkdir(parents=True)
        users = root / "etc" / "redis-users"
        (users / "users.acl").write_text((secrets / "servers" / "redis-users.acl").read_text())
        (users / "default.pass").write_text(
            (secrets / "admin" / "redis" / "default.pass").read_text()
        )
        for source in (KUBE / "redis").iterdir():
            if source.suffix in (".conf", ".sh"):
                text = source.read_text()
                text = text.replace("/etc/", f"{root}/etc/").replace("/data", f"{root}/data")
                text = text.replace("bind * -::*", "bind 127.0.0.1")
                text = text.replace("port 6379", f"port {ports['redis']}")
                text = text.replace("port 26379", f"port {ports['sentinel']}")
                text = text.replace("redis-0.redis 6379", f"127.0.0.1 {ports['redis']}")
                (root / "etc" / "redis" / source.name).write_text(text)

    def start(self, processes: Processes, name: str, script: str, pod: str) -> Popen[bytes]:
        shim = self.root / "bin"
        shim.mkdir(exist_ok=True)
        if not (shim / "redis-server").exists():
            (shim / "redis-server").symlink_to(redis_server_binary())
        env = {"POD_NAME": pod, "PATH": f"{shim}:{os.environ['PATH']}"}
        return processes.start(name, ["sh", str(self.root / "etc" / "redis" / script)], env)


def test_redis_and_a_sentinel_started_by_their_scripts_serve_the_roles(
    deploy_secrets: Path, processes: Processes, tmp_path: Path
) -> None:
    """redis-0 starts as the primary (no Sentinel answers yet), a Sentinel from its script
    watches it with the admin's password, lets each role's user ask where the primary is
    and nothing more, and keeps what it learnt across a restart."""
    ports = {"redis": free_port(), "sentinel": free_port()}
    admin = (deploy_secrets / "admin" / "redis" / "default.pass").read_text().strip()
    billing = (deploy_secrets / "admin" / "redis" / "billing.pass").read_text().strip()
    with ExitStack() as clients:

        def client(port: int, **auth: str) -> Redis:
            return clients.enter_context(Redis(port=port, **auth))

        data_pod = Pod(tmp_path / "redis-0", deploy_secrets, ports)
        data_pod.start(processes, "redis-0", "start-redis.sh", "redis-0")
        primary = client(ports["redis"], username="default", password=admin)
        role = eventually(lambda: primary.info("replication")["role"], "the primary")
        assert role == "master", processes.log("redis-0")
        written = data_pod.root / "data" / "redis.conf"
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert "replicaof" not in written.read_text()

        sentinel_pod = Pod(tmp_path / "redis-sentinel-0", deploy_secrets, ports)
        started = sentinel_pod.start(processes, "sentinel", "start-sentinel.sh", "redis-sentinel-0")
        as_billing = client(ports["sentinel"], username="billing", password=billing)
        where = ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "jetmesh")
        answer = eventually(lambda: as_billing.execute_command(*where), "the Sentinel")
        assert [a.decode() for a in answer] == ["127.0.0.1", str(ports["redis"])]
        with pytest.raises(NoPermissionError):
            as_billing.execute_command("SENTINEL", "FAILOVER", "jetmesh")
        with pytest.raises(RedisError):
            client(ports["sentinel"]).execute_command(*where)
        auth = {"username": "billing", "password": billing}
        sentinels = Sentinel([("127.0.0.1", ports["sentinel"])], sentinel_kwargs=auth)
        for each in sentinels.sentinels:
            clients.enter_context(each)
        through = clients.enter_context(sentinels.master_for("jetmesh", **auth))
        assert through.ping() is True

        os.killpg(started.pid, signal.SIGTERM)
        started.wait(timeout=10)
        sentinel_pod.start(processes, "sentinel-again", "start-sentinel.sh", "redis-sentinel-0")
        answer = eventually(lambda: as_billing.execute_command(*where), "the restarted Sentinel")
        assert [a.decode() for a in answer] == ["127.0.0.1", str(ports["redis"])]
    conf = (sentinel_pod.root / "data" / "sentinel.conf").read_text().splitlines()
    assert len([line for line in conf if line.startswith("sentinel monitor ")]) == 1
    assert len([line for line in conf if line.startswith("user billing ")]) == 1
    assert any(line.startswith("sentinel myid ") for line in conf)


# --- the admin Job's keys directory -------------------------------------------------------


def secret_volume(at: Path, files: dict[str, str]) -> None:
    """A Secret volume as the kubelet writes it: the files in a timestamped directory,
    ``..data`` linking to it, and a link per top-level name into ``..data``."""
    real = at / "..2026_12_02_00_00_00.000000000"
    for path, text in files.items():
        (real / path).parent.mkdir(parents=True, exist_ok=True)
        (real / path).write_text(text)
    (at / "..data").symlink_to(real.name)
    for top in {PurePosixPath(p).parts[0] for p in files}:
        (at / top).symlink_to(f"..data/{top}")


def test_the_admin_job_copies_a_keys_directory_the_admin_step_reads(
    rendered: list[Manifest], deploy_secrets: Path, tmp_path: Path
) -> None:
    """The init container's command, run on Secret volumes laid out as the kubelet does,
    leaves a private keys directory with the admin's login, its identity and the roots."""
    (job,) = of_kind(rendered, "Job").values()
    pod = pod_spec(job)
    (init,) = pod["initContainers"]
    secrets = of_kind(rendered, "Secret")
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for name, where in mounts.items():
        local = tmp_path / where.lstrip("/")
        local.mkdir(parents=True)
        secret = volumes[name].get("secret")
        if secret is None:
            continue
        data = {
            k: base64.b64decode(v).decode()
            for k, v in secrets[secret["secretName"]]["data"].items()
        }
        items = secret.get("items") or [{"key": k, "path": k} for k in data]
        secret_volume(local, {i["path"]: data[i["key"]] for i in items})
    command = init["command"][-1]
    for where in mounts.values():
        command = command.replace(where, str(tmp_path / where.lstrip("/")))
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr

    (container,) = pod["containers"]
    keys = tmp_path / env_of(rendered, container)["JETMESH_KEYS_DIR"].lstrip("/")
    assert not list(keys.glob("..*"))
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in keys.rglob("*"))
    store = KeyStore(keys)
    assert store.has_root()
    roots = {PurePosixPath(name).stem for name in secrets[ROOTS_SECRET]["data"]}
    assert roots
    assert set(store.roots()) == roots
    assert (
        store.certificate("billing").kid
        == KeyStore(deploy_secrets / "billing").certificate("billing").kid
    )
    login = admin_login(MeshSettings(keys_dir=keys))
    assert login.user == "admin"
    assert login.nats_seed is not None
    admin_password = deploy_secrets / "admin" / "redis" / "default.pass"
    assert login.redis_password == admin_password.read_text().strip()


def test_a_restarted_redis_pod_keeps_a_shut_out_role_out_until_the_users_change(
    deploy_secrets: Path, processes: Processes, tmp_path: Path
) -> None:
    ports = {"redis": free_port(), "sentinel": free_port()}
    admin = (deploy_secrets / "admin" / "redis" / "default.pass").read_text().strip()
    pod = Pod(tmp_path / "redis-0", deploy_secrets, ports)

    def start(name: str) -> Popen[bytes]:
        started = pod.start(processes, name, "start-redis.sh", "redis-0")
        with Redis(port=ports["redis"], username="default", password=admin) as probe:
            eventually(lambda: probe.ping() or None, name)
        return started

    def billing_flags() -> list[str]:
        with Redis(port=ports["redis"], username="default", password=admin) as client:
            flags: list[str] = client.acl_getuser("billing")["flags"]
            return flags

    first = start("redis-0")
    with Redis(port=ports["redis"], username="default", password=admin) as client:
        client.acl_setuser("billing", enabled=False)  # as the shut-out step does
        client.acl_save()
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=10)
    second = start("redis-0-again")
    assert "off" in billing_flags()
    os.killpg(second.pid, signal.SIGTERM)
    second.wait(timeout=10)
    users = pod.root / "etc" / "redis-users" / "users.acl"
    users.write_text(users.read_text() + "\n")  # `jetmesh admin secrets` wrote other users
    start("redis-0-new-users")
    assert "on" in billing_flags()


# --- kustomize itself, where kubectl is installed ------------------------------------------


HASHED = re.compile(r"-[a-z0-9]{10}$")
"""The content hash kustomize appends to a generated ConfigMap's or Secret's name."""


def referenced_names(objects: list[Manifest]) -> set[str]:
    """Every ConfigMap and Secret a pod template names (volumes, envFrom)."""
    names: set[str] = set()
    for obj in objects:
        template = obj.get("spec", {}).get("template", {}).get("spec", {})
        for volume in template.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
            if "configMap" in volume:
                names.add(volume["configMap"]["name"])
        for container in [*template.get("containers", []), *template.get("initContainers", [])]:
            names |= {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
    return names


def test_kubectl_kustomize_builds_what_is_checked_here(
    rendered: list[Manifest], deploy_secrets: Path, tmp_path: Path
) -> None:
    """``kubectl kustomize`` (kustomize as kubectl ships it) on the directory with its
    secrets in place, as README.md's steps leave it: the same objects as the offline
    rendering above, each valid, every reference to a generated object rewritten to it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBE, tree, ignore=shutil.ignore_patterns("secrets"))
    shutil.copytree(deploy_secrets, tree / "secrets")
    roots = subprocess.run(
        [
            kubectl,
            "create",
            "secret",
            "generic",
            ROOTS_SECRET,
            "--dry-run=client",
            "-o",
            "yaml",
            f"--from-file={tree / 'secrets' / 'admin' / 'roots'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (tree / ROOTS_FILE).write_text(roots.stdout)
    built = subprocess.run(
        [kubectl, "kustomize", str(tree)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]

    def identity(obj: Manifest, built: bool) -> tuple[str, str, str | None]:
        name = obj["metadata"]["name"]
        if built and obj["kind"] in ("ConfigMap", "Secret") and name != "jetmesh-nats-users":
            name = HASHED.sub("", name)
        return obj["kind"], name, obj["metadata"].get("namespace")

    assert sorted(identity(o, True) for o in objects) == sorted(
        identity(o, False) for o in rendered
    )
    names = {o["metadata"]["name"] for o in objects if o["kind"] in ("ConfigMap", "Secret")}
    assert referenced_names(objects) <= names
    assert "jetmesh-nats-users" in names  # the chart's values name it as it is
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            assert keda_problems(obj) == []
        else:
            assert kubernetes_problems(obj, KUBERNETES_VERSIONS[0]) == []
