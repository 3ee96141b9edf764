"""Static checks of deploy/: the manifests parse, their `artmator` commands are valid for the real CLI, the
Dockerfile builds the project into a Ray-ready image, and no credentials are written down. No network."""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from artmator.pipeline.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RAYJOB = DEPLOY / "kuberay-rayjob.yaml"
RAY_UP = DEPLOY / "ray-cluster.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
README = DEPLOY / "README.md"


# --------------------------------------------------------------------------------------------- helpers

def parse_cli(argv: list[str]):
    """Parse `artmator SUB ...` with the real click command (types, choices, ranges); returns its params."""
    assert argv[0] == "artmator", argv
    command = main.commands[argv[1]]
    ctx = command.make_context(f"artmator {argv[1]}", list(argv[2:]), resilient_parsing=False)
    return ctx.params


def run_option_names() -> set[str]:
    names: set[str] = set()
    for p in main.commands["run"].params:
        names.update(p.opts)
        names.update(p.secondary_opts)
    return {n for n in names if n.startswith("--")}


def rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def entrypoint_argv() -> list[str]:
    return shlex.split(rayjob()["spec"]["entrypoint"])


def readme_commands() -> list[list[str]]:
    """argv of every `artmator ...` command in README code blocks (after `ray job submit --` too)."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            argv = shlex.split(line)
            if "artmator" in argv:
                argv = argv[argv.index("artmator"):]
                commands.append(argv)
    return commands


def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def gpus_of(container: dict) -> float:
    return float(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


# ------------------------------------------------------------------------------------------- RayJob

def test_rayjob_is_a_kuberay_v1_rayjob():
    doc = rayjob()
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    spec = doc["spec"]
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] >= 0
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 1
    for key in ("rayStartParams",):
        for value in spec["rayClusterSpec"]["headGroupSpec"][key].values():
            assert isinstance(value, str), "KubeRay wants rayStartParams values as strings"


def test_rayjob_has_cpu_head_and_autoscaled_gpu_workers():
    cluster = rayjob()["spec"]["rayClusterSpec"]
    head = containers(cluster["headGroupSpec"]["template"])
    assert len(head) == 1 and gpus_of(head[0]) == 0
    gpu_groups = [g for g in cluster["workerGroupSpecs"]
                  if any(gpus_of(c) >= 1 for c in containers(g["template"]))]
    assert gpu_groups, "no worker group with an nvidia.com/gpu limit"
    for group in gpu_groups:
        assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
        for c in containers(group["template"]):
            limits = c["resources"]["limits"]
            assert float(c["resources"]["requests"].get("nvidia.com/gpu", limits["nvidia.com/gpu"])) \
                == float(limits["nvidia.com/gpu"]), "GPU requests must equal limits"
    if cluster.get("enableInTreeAutoscaling") is not True:
        assert all(g["minReplicas"] == g["maxReplicas"] for g in gpu_groups)


def test_rayjob_entrypoint_is_a_valid_artmator_run():
    argv = entrypoint_argv()
    assert argv[:2] == ["artmator", "run"]
    known = run_option_names()
    used = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    assert used <= known, f"unknown options: {sorted(used - known)}"
    params = parse_cli(argv)
    assert params["manifest"].startswith("s3://") and params["out_uri"].startswith("s3://")
    assert params["gpus_per_actor"] > 0


def test_rayjob_entrypoint_loads_every_pretrained_weight_from_a_uri():
    """The cluster runs with HF_HUB_OFFLINE=1, so CLIP and LPIPS weights must be named, not downloaded."""
    params = parse_cli(entrypoint_argv())                   # option values parsed by the real option types
    assert params["backbone__preset"] == "anifacegan"
    parts = {part for part, _ in params["backbone__weights"]}
    assert params["official_root"] or parts >= {"generator", "deform", "vae_id", "vae_exp"}
    assert params["tune__encoders__clip"], "no --clip"
    for clip in params["tune__encoders__clip"]:
        assert clip.checkpoint_uri, clip
    assert params["tune__encoders__lpips"] and params["tune__encoders__lpips"].backbone_weights_uri


def test_rayjob_actor_pool_fits_the_gpu_group():
    cluster = rayjob()["spec"]["rayClusterSpec"]
    params = parse_cli(entrypoint_argv())
    max_gpus = sum(g["maxReplicas"] * max(gpus_of(c) for c in containers(g["template"]))
                   for g in cluster["workerGroupSpecs"])
    if params["actors"] is not None:
        assert params["actors"] * params["gpus_per_actor"] <= max_gpus
    starts_empty = any(g["minReplicas"] == 0 and g.get("replicas", 0) == 0 for g in cluster["workerGroupSpecs"])
    if starts_empty:
        # The pool is sized from the GPUs present at start unless --actors is given: with 0 workers that is 1.
        assert params["actors"] is not None and params["actors"] > 1
    # One actor's CPUs must fit a worker pod, else it can never be placed.
    for g in cluster["workerGroupSpecs"]:
        for c in containers(g["template"]):
            if gpus_of(c) and "cpu" in c["resources"]["limits"]:
                assert params["cpus_per_actor"] * math.ceil(gpus_of(c) / params["gpus_per_actor"]) \
                    <= float(c["resources"]["limits"]["cpu"])


def test_rayjob_pods_get_credentials_from_a_secret_and_run_offline():
    cluster = rayjob()["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        for c in containers(pod):
            env = {e["name"]: e for e in c.get("env", [])}
            from_secret = any("secretRef" in e for e in c.get("envFrom", [])) or any(
                "secretKeyRef" in e.get("valueFrom", {}) for e in env.values())
            assert from_secret, f"{c['name']}: no credentials from a Secret"
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                assert "value" not in env.get(name, {}), f"{c['name']}: literal {name}"
            assert env["HF_HUB_OFFLINE"]["value"] == "1"


def test_rayjob_ray_version_matches_the_image_and_the_project():
    ray_version = rayjob()["spec"]["rayClusterSpec"]["rayVersion"]
    pinned = re.search(r"^ARG RAY_VERSION=(\S*)$", DOCKERFILE.read_text(), flags=re.M)
    assert pinned and pinned.group(1) == ray_version
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    minimum = next(re.search(r">=([\d.]+)", d).group(1) for d in deps if d.startswith("ray["))
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(ray_version) >= as_tuple(minimum)


# -------------------------------------------------------------------------------------------- ray up

def test_ray_up_config_passes_rays_own_schema():
    import jsonschema
    import ray.autoscaler

    config = yaml.safe_load(RAY_UP.read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]
    assert config["docker"]["image"].endswith(":cuda")
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert any(re.match(r"(g\d|p\d)", v["node_config"]["InstanceType"]) for v in workers.values()), \
        "no GPU worker node type"
    assert all(v.get("max_workers", 0) <= config["max_workers"] for v in workers.values())
    assert "HF_HUB_OFFLINE=1" in " ".join(config["docker"].get("run_options", []))


def test_ray_up_config_prepares_like_ray_up_does():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(yaml.safe_load(RAY_UP.read_text())))


def test_ray_up_start_commands_use_only_ray():
    config = yaml.safe_load(RAY_UP.read_text())
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        for part in cmd.split(";"):
            words = shlex.split(part)
            assert words[0] in {"ray", "ulimit"}, cmd


# ---------------------------------------------------------------------------------------------- README

def test_readme_artmator_commands_are_valid():
    commands = readme_commands()
    subcommands = {c[1] for c in commands}
    assert {"run", "status"} <= subcommands
    for argv in commands:
        assert argv[1] in main.commands, argv
        parse_cli(argv)


def test_readme_parser_catches_a_wrong_option():
    with pytest.raises(Exception):
        parse_cli(["artmator", "run", "m.parquet", "--gpu-per-actor", "1"])
    with pytest.raises(Exception):
        parse_cli(["artmator", "run", "m.parquet", "--preset", "eg3d"])


def test_readme_names_the_deploy_files_and_the_build_variants():
    text = README.read_text()
    for needle in ("kubectl apply -f deploy/kuberay-rayjob.yaml", "ray up deploy/ray-cluster.yaml",
                   "docker build -f deploy/Dockerfile", "--build-arg BASE=", "--build-arg TORCH_INDEX_URL=",
                   "HF_HUB_OFFLINE=1", "--gpus-per-actor 0.5", "artmator status s3://"):
        assert needle in text, needle


# ------------------------------------------------------------------------------------------ Dockerfile

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_base_is_a_build_arg():
    ins = dockerfile_instructions()
    assert ins[0][0] == "ARG" and ins[0][1].startswith("BASE=")
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms == ["${BASE}"]
    args = {rest.split("=", 1)[0] for word, rest in ins if word == "ARG"}
    assert {"BASE", "TORCH_INDEX_URL", "EXTRAS"} <= args


def test_dockerfile_installs_the_project_with_existing_extras():
    ins = dockerfile_instructions()
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r'pip install "\.\[\$\{EXTRAS\}\]"', runs)
    assert re.search(r'--index-url "\$\{TORCH_INDEX_URL\}" "torch', runs)
    assert "ray[default" in runs, "the dashboard/job server (ray[default]) is needed by RayJob submission"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    default = next(rest.split("=", 1)[1] for word, rest in ins if word == "ARG" and rest.startswith("EXTRAS="))
    assert set(default.split(",")) <= set(extras)
    assert {"s3", "gcs", "azure"} <= set(extras)


def test_dockerfile_copies_only_what_exists_and_is_not_ignored():
    ins = dockerfile_instructions()
    sources = []
    for word, rest in ins:
        if word in {"COPY", "ADD"}:
            parts = [p for p in rest.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert {"pyproject.toml", "model", "pipeline"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source {src} is missing"
    # Dockerfile-specific ignore file: the copied paths must be re-included after any blanket exclusion.
    ignore = DEPLOY / "Dockerfile.dockerignore"
    if ignore.exists():
        patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
        for src in sources:
            state = True
            for pat in patterns:
                neg = pat.startswith("!")
                pat = pat.lstrip("!").rstrip("/")
                if pat == "**" or src == pat or src.startswith(pat + "/"):
                    state = neg
            assert state, f"{src} is excluded by {ignore.name}"


def test_dockerfile_image_fits_kuberay_and_ray_up():
    ins = dockerfile_instructions()
    words = [w for w, _ in ins]
    assert "ENTRYPOINT" not in words, "KubeRay runs its own `ray start`; an ENTRYPOINT would wrap it"
    cmds = [rest for w, rest in ins if w == "CMD"]
    for cmd in cmds:
        assert shlex.split(cmd.strip("[]"))[0].strip('",') in {"bash", "ray", "artmator"}
    users = [rest for w, rest in ins if w == "USER"]
    assert users and users[-1] not in {"root", "0"}
    runs = " ".join(rest for w, rest in ins if w == "RUN")
    assert re.search(r"useradd [^&]*--create-home[^&]* " + re.escape(users[-1]) + r"\b", runs)
    for tool in ("wget", "rsync", "openssh-client"):  # KubeRay probes; `ray up` file sync and SSH
        assert tool in runs, tool
    env = " ".join(rest for w, rest in ins if w == "ENV")
    assert "/opt/venv/bin" in env and "/etc/profile.d/" in runs, "ray must be on PATH in login shells too"
    assert "command -v ray" in runs and "artmator --help" in runs


# --------------------------------------------------------------------------------------------- secrets

AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
SECRET_VALUE = re.compile(
    r"(?i)(aws_secret_access_key|secret_access_key|aws_session_token|password|token)\s*[:=]\s*"
    r"[\"']?(?![\"']?\$)(?!\{\{)[A-Za-z0-9/+=]{16,}")


def find_secrets(text: str) -> list[str]:
    return [m.group(0) for m in AWS_KEY_ID.finditer(text)] + [m.group(0) for m in SECRET_VALUE.finditer(text)]


def test_secret_scanner_catches_literal_keys():
    fake_id = "AKIA" + "Q" * 16
    fake_secret = "aws_secret_access_key: " + "x" * 40
    assert find_secrets(f"key: {fake_id}")
    assert find_secrets(fake_secret)
    assert find_secrets("AWS_SECRET_ACCESS_KEY=" + "Ab1/" * 10)
    assert not find_secrets('--from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"')


@pytest.mark.parametrize("path", sorted(p for p in DEPLOY.rglob("*") if p.is_file()), ids=lambda p: p.name)
def test_no_literal_secrets_in_deploy(path):
    assert not find_secrets(path.read_text(errors="replace")), path
    if path.suffix in {".yaml", ".yml"}:
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), "Secrets are created with kubectl"


def test_deploy_yamls_parse():
    for path in DEPLOY.glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), path
    assert os.path.exists(RAYJOB) and os.path.exists(RAY_UP)
