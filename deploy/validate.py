"""Check the deployment files in deploy/ offline: what can be checked without a cluster, Docker or a network.

    python deploy/validate.py                      # every check below; one JSON object; exit 1 on a problem
    python deploy/validate.py config FILE [--write-json PATH]
    python deploy/validate.py k8s FILE...          # Kubernetes manifests
    python deploy/validate.py ray FILE             # a `ray up` cluster config
    python deploy/validate.py docker [DOCKERFILE]  # the Dockerfile (and compose.yaml beside it)
    python deploy/validate.py pip-steps            # the Dockerfile's pip steps, one shell command a line

* config: the TOML is read by memos' own loader (``memos.config.load_settings``, through the
  ``config.json`` it reads), so an unknown key or a bad value fails exactly as it would in memos;
  ``--write-json`` then writes that ``config.json``.
* k8s: core kinds against the strict Kubernetes JSON schemas of the ``kubernetes-validate`` package, the
  KubeRay kinds against the CRD schemas vendored in deploy/schemas/ (made strict: no unknown fields), plus
  the memos rules of :func:`memos_rules`.
* ray: Ray's own autoscaler config preparation and schema validation (``prepare_config``,
  ``validate_config``), plus the memos ports and ``memos up --address`` on the workers.
* docker: the extras that the Dockerfile's ``pip install`` steps name exist in pyproject.toml, the files it
  copies exist, it runs as a non-root user; compose.yaml refers only to services, volumes and build files
  that exist.

Needs PyYAML, jsonschema, kubernetes-validate and (for ``ray``) Ray; ``pip-steps`` needs only the standard
library, so deploy/docker/check_install.sh can run it with any Python.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
SCHEMAS = DEPLOY / "schemas"
#: Kubernetes minor version the core kinds are checked against (the oldest one the manifests target).
K8S_VERSION = "1.30"
CRD_SCHEMAS = {
    ("ray.io/v1", "RayCluster"): SCHEMAS / "kuberay" / "raycluster-ray-v1.json",
    ("ray.io/v1", "RayService"): SCHEMAS / "kuberay" / "rayservice-ray-v1.json",
}
#: Ports memos' own runtime uses (scheduler/runtime.py): Ray GCS and Ray client.
GCS_PORT, CLIENT_PORT = 6380, 10001
_OPTIONAL_KEY = re.compile(r"^# ([A-Za-z_][A-Za-z0-9_]*) = (.+)$")
_ACTIVE_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) = ")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class DeployError(ValueError):
    """A deployment file that does not pass its checks; ``problems`` lists every one found."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


def _yaml_docs(path: Path) -> list[Any]:
    import yaml

    try:
        return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except yaml.YAMLError as exc:
        raise DeployError(path, [f"not valid YAML: {exc}"]) from exc


# ------------------------------------------------------------------------------------------ config
def uncomment_optional(text: str) -> str:
    """The TOML with its optional keys (lines ``# key = value``) turned on."""
    return "\n".join(_OPTIONAL_KEY.sub(r"\1 = \2", line) for line in text.splitlines()) + "\n"


def read_config(path: str | Path, *, optional: bool = False) -> dict[str, Any]:
    import tomllib

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(uncomment_optional(text) if optional else text)
    except tomllib.TOMLDecodeError as exc:
        raise DeployError(path, [f"not valid TOML: {exc}"]) from exc


def load_config(path: str | Path, *, optional: bool = False) -> Any:
    """The :class:`memos.config.Settings` that memos' loader makes of the TOML (``optional``: with the
    commented-out optional keys turned on). Raises memos' ``InvalidInput`` as memos would."""
    from memos.config import load_settings

    data = read_config(path, optional=optional)
    with tempfile.TemporaryDirectory(prefix="memos-config-") as home:
        (Path(home) / "config.json").write_text(json.dumps(data), encoding="utf-8")
        return load_settings(home)


def settings_keys(model: Any = None, prefix: str = "") -> set[str]:
    """Every key of Settings, dotted (``storage.url``); a nested model's fields, not the model itself."""
    from pydantic import BaseModel

    from memos.config import Settings

    out: set[str] = set()
    for name, field in (model or Settings).model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= settings_keys(ann, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def config_keys(data: dict[str, Any], model: Any = None, prefix: str = "") -> set[str]:
    """The dotted keys a parsed config sets, tables of Settings' nested models walked into."""
    from pydantic import BaseModel

    from memos.config import Settings

    fields = (model or Settings).model_fields
    out: set[str] = set()
    for key, value in data.items():
        ann = fields[key].annotation if key in fields else None
        if isinstance(value, dict) and isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= config_keys(value, ann, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def undocumented_keys(path: str | Path) -> list[str]:
    """Key lines (active or optional) with no comment line right above them or above their block."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    bad = []
    for i, line in enumerate(lines):
        if _ACTIVE_KEY.match(line) or _OPTIONAL_KEY.match(line):
            j = i - 1
            while j >= 0 and _OPTIONAL_KEY.match(lines[j]):
                j -= 1  # a run of optional keys shares the comment above it
            if j < 0 or not lines[j].startswith("#"):
                bad.append(line.split("=")[0].strip("# "))
    return bad


def check_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    problems = []
    settings = load_config(path)
    load_config(path, optional=True)  # the optional keys' example values must load too
    missing = settings_keys() - config_keys(read_config(path, optional=True))
    if missing:
        problems.append(f"Settings keys missing: {sorted(missing)}")
    if "home" in read_config(path):
        problems.append("`home` is set, but the loader ignores it (the home is where config.json is)")
    if undocumented := undocumented_keys(path):
        problems.append(f"keys without a comment: {undocumented}")
    if problems:
        raise DeployError(path, problems)
    return {"file": str(path), "keys": len(settings_keys()), "storage": settings.storage.backend}


def write_config_json(path: str | Path, out: str | Path) -> Path:
    """Check the TOML with memos' loader, then write it as the ``config.json`` memos reads."""
    load_config(path)
    data = read_config(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


# -------------------------------------------------------------------------------------- kubernetes
def strict_schema(schema: Any) -> Any:
    """A copy of a CRD schema that rejects unknown fields, as the API server's strict field validation does:
    every object that lists its properties gets ``additionalProperties: false`` unless it preserves unknown
    fields or already says what else it takes."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in {"properties", "patternProperties", "definitions"} and isinstance(value, dict):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}  # a map of schemas
        else:
            out[key] = strict_schema(value)
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@cache
def _crd_validator(path: Path) -> Any:
    import jsonschema

    schema = strict_schema(json.loads(path.read_text(encoding="utf-8")))
    cls = jsonschema.validators.Draft7Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _where(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def schema_problems(doc: dict[str, Any], k8s_version: str = K8S_VERSION) -> list[str]:
    """Problems of one manifest against its schema (strict), empty if none."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        validator = _crd_validator(CRD_SCHEMAS[key])
        return [f"{_where(e)}: {e.message}" for e in sorted(validator.iter_errors(doc), key=str)]
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, k8s_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {key[1]} {key[0]} in Kubernetes {k8s_version}"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(str(p) for p in exc.path) or '(top)'}: {exc.message}"]
    return []


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("containers", [])) + list(pod_spec.get("initContainers", []))


def _ray_cluster_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") == "RayCluster":
        return doc.get("spec", {})
    if doc.get("kind") == "RayService":
        return doc.get("spec", {}).get("rayClusterConfig", {})
    return None


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs of a manifest (workloads, RayCluster groups)."""
    cluster = _ray_cluster_spec(doc)
    if cluster is not None:
        groups = [cluster.get("headGroupSpec", {}), *cluster.get("workerGroupSpecs", [])]
        return [g.get("template", {}).get("spec", {}) for g in groups]
    template = doc.get("spec", {}).get("template")
    return [template.get("spec", {})] if isinstance(template, dict) else []


def memos_rules(doc: dict[str, Any]) -> list[str]:
    """memos' own rules for its manifests, beyond the schemas."""
    problems = []
    name = doc.get("metadata", {}).get("name", "")
    if not _DNS_1123.match(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r} is not a DNS-1123 name")
    for spec in pod_specs(doc):
        for c in _containers(spec):
            image = str(c.get("image", ""))
            if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                problems.append(f"container {c.get('name')}: image {image!r} is not pinned to a tag")
        if spec and not (spec.get("securityContext", {}).get("runAsNonRoot")):
            problems.append("a pod template does not set securityContext.runAsNonRoot")
    cluster = _ray_cluster_spec(doc)
    if cluster is not None:
        annotations = doc.get("metadata", {}).get("annotations", {})
        if annotations.get("ray.io/overwrite-container-cmd") != "true":
            problems.append("KubeRay would replace our container commands: set the annotation "
                            "ray.io/overwrite-container-cmd: \"true\"")
        if cluster.get("authOptions", {}).get("mode") != "token":
            problems.append("Ray token auth is off: set authOptions.mode: token")
        for group in cluster.get("workerGroupSpecs", []):
            args = " ".join(" ".join(c.get("args", []) + c.get("command", []))
                            for c in group.get("template", {}).get("spec", {}).get("containers", []))
            if "memos-node" not in args or "--address" not in args:
                problems.append(f"worker group {group.get('groupName')}: its pods must join with "
                                "`memos-node --address ...` (memos up --address)")
            if not group.get("minReplicas") == group.get("replicas") == group.get("maxReplicas"):
                problems.append(f"worker group {group.get('groupName')}: replicas, minReplicas and "
                                "maxReplicas must be equal (a removed pod strands its cubes)")
    if doc.get("kind") == "RayService":
        problems += _serve_config_problems(doc)
    return problems


def _serve_config_problems(doc: dict[str, Any]) -> list[str]:
    import yaml

    spec = doc.get("spec", {})
    problems = []
    if spec.get("upgradeStrategy", {}).get("type") != "None":
        problems.append("upgradeStrategy.type must be None: a NewCluster upgrade runs two memos clusters "
                        "on one Redis prefix")
    try:
        serve = yaml.safe_load(spec.get("serveConfigV2", "")) or {}
    except yaml.YAMLError as exc:
        return problems + [f"serveConfigV2 is not valid YAML: {exc}"]
    apps = serve.get("applications") or []
    if not apps:
        problems.append("serveConfigV2 has no applications")
    for app in apps:
        module, _, attr = str(app.get("import_path", "")).partition(":")
        source = DEPLOY / "kuberay" / f"{module}.py"
        if not source.exists():
            problems.append(f"application {app.get('name')}: import_path module {module!r} is not "
                            f"deploy/kuberay/{module}.py (the file the image puts on PYTHONPATH)")
        elif not re.search(rf"^{re.escape(attr)}\s*=", source.read_text(encoding="utf-8"), re.MULTILINE):
            problems.append(f"application {app.get('name')}: {module}.py defines no {attr!r}")
    return problems


def check_k8s(paths: list[str | Path], k8s_version: str = K8S_VERSION) -> list[dict[str, Any]]:
    """Check manifests one by one, then what they refer to across files (claims, config maps)."""
    checked, problems = [], []
    defined: set[tuple[str, str]] = set()
    wanted: set[tuple[str, str]] = set()
    for path in map(Path, paths):
        for doc in _yaml_docs(path):
            if not isinstance(doc, dict):
                raise DeployError(path, ["a YAML document is not a mapping"])
            label = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            problems += [f"{label}: {p}" for p in schema_problems(doc, k8s_version) + memos_rules(doc)]
            defined.add((str(doc.get("kind")), str(doc.get("metadata", {}).get("name"))))
            for spec in pod_specs(doc):
                for vol in spec.get("volumes", []):
                    if "persistentVolumeClaim" in vol:
                        wanted.add(("PersistentVolumeClaim", vol["persistentVolumeClaim"].get("claimName")))
                    if "configMap" in vol:
                        wanted.add(("ConfigMap", vol["configMap"].get("name")))
            checked.append({"file": str(path), "kind": doc.get("kind"), "name": doc.get("metadata", {}).get("name")})
    problems += [f"{kind} {name!r} is used but defined in none of the files" for kind, name in
                 sorted(wanted - defined)]
    if problems:
        raise DeployError(", ".join(str(p) for p in paths), problems)
    return checked


# ---------------------------------------------------------------------------------------------- ray
def check_ray_cluster(path: str | Path) -> dict[str, Any]:
    """Ray's own checks of a `ray up` config (defaults merged as `ray up` merges them), then memos' ports."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    path = Path(path)
    docs = _yaml_docs(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise DeployError(path, ["expected one YAML mapping"])
    try:
        prepared = prepare_config(copy.deepcopy(docs[0]))
        validate_config(prepared)
    except Exception as exc:  # Ray raises jsonschema, ValueError and click errors: each is a finding
        raise DeployError(path, [f"Ray rejects it: {type(exc).__name__}: {exc}"]) from exc
    head = " ".join(prepared.get("head_start_ray_commands", []))
    workers = " ".join(prepared.get("worker_start_ray_commands", []))
    problems = []
    for flag in (f"--port={GCS_PORT}", f"--ray-client-server-port={CLIENT_PORT}", "--autoscaling-config"):
        if flag not in head:
            problems.append(f"head_start_ray_commands: no {flag}")
    if f"memos --json up --address $RAY_HEAD_IP:{GCS_PORT}" not in workers or "--redis-url" not in workers:
        problems.append("worker_start_ray_commands must join with "
                        f"`memos --json up --address $RAY_HEAD_IP:{GCS_PORT} ... --redis-url ...`")
    if "~/.ray/auth_token" not in prepared.get("file_mounts", {}):
        problems.append("file_mounts must copy ~/.ray/auth_token (Ray token auth) to every node")
    if problems:
        raise DeployError(path, problems)
    node_types = prepared["available_node_types"]
    return {"file": str(path), "provider": prepared["provider"]["type"], "max_workers": prepared["max_workers"],
            "node_types": sorted(node_types)}


# ------------------------------------------------------------------------------------------- docker
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments and blank lines dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def _arg_defaults(instructions: list[tuple[str, str]]) -> dict[str, str]:
    defaults = {}
    for instr, args in instructions:
        if instr == "ARG":
            name, _, value = args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def _substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def pip_steps(dockerfile: str | Path = DEPLOY / "docker" / "Dockerfile") -> list[str]:
    """The Dockerfile's ``pip install`` commands, ARG defaults substituted, in order."""
    instructions = dockerfile_instructions(Path(dockerfile).read_text(encoding="utf-8"))
    values = _arg_defaults(instructions)
    steps = []
    for instr, args in instructions:
        if instr == "RUN":
            for part in re.split(r"\s*&&\s*", _substitute(args, values)):
                if re.match(r"^(python3? -m )?pip3? install\b", part):
                    steps.append(" ".join(part.split()))
    return steps


def pyproject_extras(pyproject: str | Path = ROOT / "pyproject.toml") -> set[str]:
    import tomllib

    data = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))
    return set(data["project"].get("optional-dependencies", {}))


def _project_extras(step: str) -> list[set[str]]:
    """The extras of every requirement of a pip step that installs this project (``.``, ``.[x]``)."""
    found = []
    for token in shlex.split(step):
        m = re.fullmatch(r"(?:\.|memos)(?:\[([^\]]*)\])?", token)
        if m:
            found.append({e.strip() for e in (m.group(1) or "").split(",") if e.strip()})
    return found


def check_dockerfile(path: str | Path = DEPLOY / "docker" / "Dockerfile",
                     pyproject: str | Path = ROOT / "pyproject.toml") -> dict[str, Any]:
    path = Path(path)
    instructions = dockerfile_instructions(path.read_text(encoding="utf-8"))
    extras = pyproject_extras(pyproject)
    problems = []
    steps = pip_steps(path)
    installs = [e for step in steps for e in _project_extras(step)]
    if not installs:
        problems.append("no pip step installs memos itself (`pip install \".[...]\"`)")
    for wanted in installs:
        if unknown := wanted - extras:
            problems.append(f"pip installs extras {sorted(unknown)} that pyproject.toml does not define "
                            f"(it has {sorted(extras)})")
    for instr, args in instructions:
        if instr in {"COPY", "ADD"} and "--from" not in args:
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for src in parts[:-1]:
                if not (ROOT / src).exists():
                    problems.append(f"{instr} {src}: no such file in the build context (the repository root)")
    users = [args for instr, args in instructions if instr == "USER"]
    if not users or users[-1] in {"root", "0"}:
        problems.append("the image must end as a non-root USER")
    if not any(instr == "FROM" for instr, _ in instructions):
        problems.append("no FROM")
    if problems:
        raise DeployError(path, problems)
    return {"file": str(path), "pip_steps": steps, "ray_version": _arg_defaults(instructions).get("RAY_VERSION")}


def check_compose(path: str | Path = DEPLOY / "docker" / "compose.yaml") -> dict[str, Any]:
    """What `docker compose config` would refuse, and the references it would only find at run time."""
    path = Path(path)
    docs = _yaml_docs(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise DeployError(path, ["expected one YAML mapping"])
    doc = docs[0]
    services = doc.get("services") or {}
    volumes = set(doc.get("volumes") or {})
    problems = []
    if not services:
        problems.append("no services")
    for name, svc in services.items():
        if "image" not in svc and "build" not in svc:
            problems.append(f"service {name}: neither image nor build")
        build = svc.get("build")
        if isinstance(build, dict):
            context = (path.parent / build.get("context", ".")).resolve()
            if not context.is_dir():
                problems.append(f"service {name}: build context {context} does not exist")
            elif not (context / build.get("dockerfile", "Dockerfile")).exists():
                problems.append(f"service {name}: no {build.get('dockerfile')} in {context}")
        deps = svc.get("depends_on") or {}
        for dep in deps:
            if dep not in services:
                problems.append(f"service {name}: depends on unknown service {dep}")
        for mount in svc.get("volumes") or []:
            source = str(mount).split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                problems.append(f"service {name}: volume {source} is not declared under volumes")
        for port in svc.get("ports") or []:
            if isinstance(port, str) and port.count(":") == 1:
                problems.append(f"service {name}: port {port} is published on every interface; "
                                "bind it to an address (127.0.0.1:HOST:CONTAINER)")
    if problems:
        raise DeployError(path, problems)
    return {"file": str(path), "services": sorted(services)}


# ---------------------------------------------------------------------------------------------- all
def kubernetes_files() -> list[Path]:
    return sorted((DEPLOY / "kuberay").glob("*.yaml"))


def check_all() -> dict[str, Any]:
    """Every check, each file once; a file's problems do not stop the others from being checked."""
    report: dict[str, Any] = {"ok": True, "checks": {}, "problems": []}
    checks = {
        "config": lambda: check_config(DEPLOY / "memos.example.toml"),
        "kubernetes": lambda: check_k8s(kubernetes_files()),
        "ray": lambda: check_ray_cluster(DEPLOY / "ray" / "cluster.yaml"),
        "dockerfile": check_dockerfile,
        "compose": check_compose,
    }
    from memos.errors import MemosError

    for name, check in checks.items():
        try:
            report["checks"][name] = check()
        except (DeployError, MemosError, ValueError, OSError) as exc:
            report["ok"] = False
            report["problems"].append({"check": name, "error": str(exc)})
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    cfg = sub.add_parser("config")
    cfg.add_argument("file")
    cfg.add_argument("--write-json", metavar="PATH")
    k8s = sub.add_parser("k8s")
    k8s.add_argument("files", nargs="+")
    k8s.add_argument("--kubernetes-version", default=K8S_VERSION)
    ray = sub.add_parser("ray")
    ray.add_argument("file")
    docker = sub.add_parser("docker")
    docker.add_argument("dockerfile", nargs="?", default=str(DEPLOY / "docker" / "Dockerfile"))
    sub.add_parser("pip-steps")
    args = ap.parse_args(argv)
    if args.cmd == "pip-steps":
        print("\n".join(pip_steps()))
        return 0
    from memos.errors import MemosError

    try:
        if args.cmd is None:
            out: Any = check_all()
        elif args.cmd == "config":
            out = check_config(args.file)
            if args.write_json:
                out["written"] = str(write_config_json(args.file, args.write_json))
        elif args.cmd == "k8s":
            out = check_k8s(args.files, args.kubernetes_version)
        elif args.cmd == "ray":
            out = check_ray_cluster(args.file)
        else:
            out = check_dockerfile(args.dockerfile)
            out["compose"] = check_compose(Path(args.dockerfile).parent / "compose.yaml")
    except (DeployError, MemosError, ValueError, OSError) as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    print(json.dumps(out, indent=2))
    return 0 if not isinstance(out, dict) or out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
