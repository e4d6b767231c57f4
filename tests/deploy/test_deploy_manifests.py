"""deploy/kuberay/ against the Kubernetes and KubeRay schemas, deploy/ray/cluster.yaml against Ray's own
autoscaler validation, and the memos rules both must follow (ports, joining with memos up --address)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERAY = DEPLOY / "kuberay"


def _docs(name):
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def _write(tmp_path, name, docs):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


# ------------------------------------------------------------------------------------------ kubernetes
def test_every_manifest_matches_its_schema(validate):
    checked = validate.check_k8s(validate.kubernetes_files())
    kinds = {(c["kind"], c["name"]) for c in checked}
    assert {("RayCluster", "memos"), ("RayService", "memos-rest"), ("StatefulSet", "memos-redis"),
            ("Service", "memos-redis"), ("PersistentVolumeClaim", "memos-home"),
            ("NetworkPolicy", "memos-redis"), ("NetworkPolicy", "memos-ray")} <= kinds


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_core_kinds_on_several_kubernetes_versions(validate, version):
    for name in ("redis.yaml", "storage.yaml", "networkpolicy.yaml"):
        for doc in _docs(name):
            assert validate.schema_problems(doc, version) == [], (name, doc["kind"])


def test_misspelt_crd_field_is_rejected(validate):
    doc = _docs("raycluster.yaml")[0]
    doc["spec"]["workerGroupSpecs"][0]["minReplica"] = 2  # strict: unknown field
    problems = validate.schema_problems(doc)
    assert any("minReplica" in p for p in problems)
    doc = _docs("raycluster.yaml")[0]
    doc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # rayStartParams values are strings
    assert any("rayStartParams.num-cpus" in p for p in validate.schema_problems(doc))


def test_pod_template_fields_are_checked_inside_the_crd(validate):
    doc = _docs("rayservice.yaml")[0]
    container = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container["resources"]["limit"] = {"memory": "1Gi"}
    assert any("resources" in p and "limit" in p for p in validate.schema_problems(doc))


def test_misspelt_core_field_is_rejected(validate):
    doc = next(d for d in _docs("redis.yaml") if d["kind"] == "StatefulSet")
    doc["spec"]["replica"] = 1
    assert validate.schema_problems(doc) != []
    doc = next(d for d in _docs("redis.yaml") if d["kind"] == "StatefulSet")
    doc["spec"]["replicas"] = "one"
    assert validate.schema_problems(doc) != []


def test_rayservice_runs_the_raycluster_spec(validate):
    cluster = _docs("raycluster.yaml")[0]
    service = _docs("rayservice.yaml")[0]
    assert service["spec"]["rayClusterConfig"] == cluster["spec"], "keep rayservice.yaml's cluster = raycluster.yaml"


def test_memos_rules(validate, tmp_path):
    cluster = _docs("raycluster.yaml")[0]
    assert validate.memos_rules(cluster) == []
    no_join = copy.deepcopy(cluster)
    no_join["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["args"] = ["ray start --block"]
    assert any("memos-node --address" in p for p in validate.memos_rules(no_join))
    scaled = copy.deepcopy(cluster)
    scaled["spec"]["workerGroupSpecs"][0]["maxReplicas"] = 5
    assert any("maxReplicas" in p for p in validate.memos_rules(scaled))
    no_auth = copy.deepcopy(cluster)
    del no_auth["spec"]["authOptions"]
    assert any("token" in p for p in validate.memos_rules(no_auth))
    latest = copy.deepcopy(cluster)
    latest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = "memos:latest"
    assert any("not pinned" in p for p in validate.memos_rules(latest))
    service = _docs("rayservice.yaml")[0]
    assert validate.memos_rules(service) == []
    upgrade = copy.deepcopy(service)
    upgrade["spec"]["upgradeStrategy"]["type"] = "NewCluster"
    assert any("upgradeStrategy" in p for p in validate.memos_rules(upgrade))
    moved = copy.deepcopy(service)
    moved["spec"]["serveConfigV2"] = moved["spec"]["serveConfigV2"].replace("memos_serve:app", "memos_rest:app")
    assert any("memos_rest" in p for p in validate.memos_rules(moved))


def test_dangling_claim_is_reported(validate, tmp_path):
    path = _write(tmp_path, "cluster.yaml", _docs("raycluster.yaml"))
    with pytest.raises(validate.DeployError, match="PersistentVolumeClaim 'memos-home'"):
        validate.check_k8s([path])  # storage.yaml not given


def test_serve_module_is_what_the_image_ships(validate):
    """The RayService imports memos_serve:app; the Dockerfile copies that file onto PYTHONPATH."""
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "COPY deploy/kuberay/memos_serve.py /opt/memos/serve/memos_serve.py" in dockerfile
    assert "PYTHONPATH=/opt/memos/serve" in dockerfile
    source = (KUBERAY / "memos_serve.py").read_text()
    compile(source, "memos_serve.py", "exec")
    assert "create_app(" in source and "MemOS.connect(" in source


def test_versions_and_images_agree(validate):
    import tomllib

    version = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["version"]
    ray_version = validate.check_dockerfile()["ray_version"]
    images = set()
    for name in ("raycluster.yaml", "rayservice.yaml"):
        doc = _docs(name)[0]
        spec = validate._ray_cluster_spec(doc)
        assert spec["rayVersion"] == ray_version, f"{name}: rayVersion != the Dockerfile's RAY_VERSION"
        images |= {c["image"] for s in validate.pod_specs(doc) for c in s["containers"]}
    images.add(yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())["docker"]["image"])
    images.add(yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())["x-memos"]["image"])
    assert images == {f"memos:{version}"}


# ------------------------------------------------------------------------------------------------- ray
def test_ray_cluster_passes_rays_own_validation(validate):
    out = validate.check_ray_cluster(DEPLOY / "ray" / "cluster.yaml")
    assert out["provider"] == "local" and out["max_workers"] == 2


def test_ray_cluster_uses_memos_ports(validate):
    from scheduler.runtime import CLIENT_PORT, GCS_PORT

    assert (validate.GCS_PORT, validate.CLIENT_PORT) == (GCS_PORT, CLIENT_PORT)


def _ray_config():
    return yaml.safe_load((DEPLOY / "ray" / "cluster.yaml").read_text())


def test_ray_schema_errors_are_reported(validate, tmp_path):
    bad = _ray_config()
    bad["idle_timeout_minutes"] = "five"  # Ray's schema: a number
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(validate.DeployError, match="Ray rejects it"):
        validate.check_ray_cluster(path)
    unknown = _ray_config()
    unknown["worker_start_commands"] = []  # not a key of Ray's schema
    path.write_text(yaml.safe_dump(unknown))
    with pytest.raises(validate.DeployError, match="Ray rejects it"):
        validate.check_ray_cluster(path)
    no_head = _ray_config()
    del no_head["provider"]["head_ip"]  # the on-premise provider's own preparation refuses it
    path.write_text(yaml.safe_dump(no_head))
    with pytest.raises(validate.DeployError, match="head_ip"):
        validate.check_ray_cluster(path)


def test_ray_memos_rules(validate, tmp_path):
    path = tmp_path / "b.yaml"
    wrong_port = _ray_config()
    wrong_port["head_start_ray_commands"] = [c.replace("--port=6380", "--port=6379")
                                             for c in wrong_port["head_start_ray_commands"]]
    path.write_text(yaml.safe_dump(wrong_port))
    with pytest.raises(validate.DeployError, match="--port=6380"):
        validate.check_ray_cluster(path)
    plain = _ray_config()
    plain["worker_start_ray_commands"] = ["ray stop", "ray start --address=$RAY_HEAD_IP:6380"]
    path.write_text(yaml.safe_dump(plain))
    with pytest.raises(validate.DeployError, match="memos --json up --address"):
        validate.check_ray_cluster(path)


def test_strict_schema_keeps_open_objects_open(validate):
    import jsonschema

    schema = validate.strict_schema({"type": "object", "properties": {
        "properties": {"type": "object", "properties": {"a": {"type": "string"}}},  # a field named properties
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {}},
        "map": {"type": "object", "additionalProperties": {"type": "string"}},
    }})
    ok = {"properties": {"a": "x"}, "open": {"anything": 1}, "map": {"k": "v"}}
    jsonschema.validate(ok, schema)
    for bad in ({"propertie": {}}, {"properties": {"b": "x"}}, {"map": {"k": 1}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
