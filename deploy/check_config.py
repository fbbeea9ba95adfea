#!/usr/bin/env python3
"""Static checks of the deployment files that a JSON schema cannot express:
the topology docker-compose.yml describes, the nginx balancer's settings,
and the Dockerfile's recipe. Run by deploy/test.sh with the venv's Python
(ruamel.yaml comes with check-jsonschema).

Prints `PASS: name` / `FAIL: name: why` per check; exits 1 on any failure.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import tomllib
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def load_compose() -> dict:
    return YAML(typ="safe", pure=True).load((ROOT / "docker-compose.yml").read_text())


COMPOSE = load_compose()
SERVICES: dict = COMPOSE["services"]
REPLICAS = sorted(n for n in SERVICES if re.fullmatch(r"app\d+", n))
NGINX = (ROOT / "deploy" / "nginx.conf").read_text()
NGINX_CODE = "\n".join(line.split("#", 1)[0] for line in NGINX.splitlines())
UPSTREAMS = (ROOT / "deploy" / "compose" / "upstreams.conf").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def env_of(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def default_of(value: str) -> str:
    """`${VAR:-default}` -> default; a plain value -> itself."""
    m = re.fullmatch(r"\$\{[A-Z0-9_]+:-([^}]*)\}", value)
    return m.group(1) if m else value


# --- compose ------------------------------------------------------------------


@check
def compose_has_the_topology():
    for name in ("postgres", "redis", "migrate", "lb"):
        assert name in SERVICES, f"no {name} service"
    assert len(REPLICAS) >= 3, f"replicas: {REPLICAS}"


@check
def depends_on_targets_exist_with_conditions():
    for name, svc in SERVICES.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form with conditions"
        for dep, spec in deps.items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            assert spec.get("condition") in ("service_healthy", "service_completed_successfully"), \
                f"{name} -> {dep}: condition {spec.get('condition')!r}"
            if spec["condition"] == "service_healthy":
                assert SERVICES[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy, but it has no healthcheck"


@check
def migrations_run_once_before_the_replicas():
    assert SERVICES["migrate"].get("command") == ["migrate"], SERVICES["migrate"].get("command")
    assert str(SERVICES["migrate"].get("restart", "no")) == "no"
    for r in REPLICAS:
        deps = SERVICES[r]["depends_on"]
        assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", f"{r}: {deps}"
        assert deps.get("postgres", {}).get("condition") == "service_healthy", r
        assert deps.get("redis", {}).get("condition") == "service_healthy", r
        assert SERVICES[r].get("image") == SERVICES["migrate"].get("image"), f"{r} and migrate run different images"


@check
def replicas_are_checked_on_readyz_with_several_workers():
    for r in REPLICAS:
        test = SERVICES[r]["healthcheck"]["test"]
        assert "/readyz" in " ".join(test), f"{r}: {test}"
        env = env_of(r)
        assert env.get("CALCACHE_ENV") == "production", f"{r}: CALCACHE_ENV={env.get('CALCACHE_ENV')}"
        workers = int(default_of(env["CALCACHE__SERVER__WORKERS"]))
        assert workers >= 2, f"{r}: {workers} worker(s)"
        assert env.get("CALCACHE__SERVER__PORT") == "8080"
    assert (ROOT / "config" / "production.toml").is_file()


@check
def lb_waits_for_every_replica_and_alone_publishes_a_port():
    lb = SERVICES["lb"]
    assert set(lb["depends_on"]) == set(REPLICAS), lb["depends_on"]
    assert any(str(p).endswith(":8080") for p in lb["ports"]), lb["ports"]
    for name, svc in SERVICES.items():
        if name != "lb":
            assert not svc.get("ports"), f"{name} publishes {svc['ports']}: only the balancer should"


@check
def secrets_come_from_the_environment():
    required = set()
    for name in SERVICES:
        for key, value in env_of(name).items():
            if "PASSWORD" in key or key.endswith("_URL") or key == "REDISCLI_AUTH":
                refs = re.findall(r"\$\{([A-Z0-9_]+)(:\?[^}]*)?\}", value)
                secret_refs = [r for r in refs if "PASSWORD" in r[0]]
                assert secret_refs, f"{name}.{key} holds no ${{..._PASSWORD}} reference: {value!r}"
                for var, required_form in secret_refs:
                    assert required_form, f"{name}.{key}: ${{{var}}} must be required (${{{var}:?...}})"
                    required.add(var)
                literal = re.sub(r"\$\{[^}]*\}", "", value)
                assert not re.search(r":[^@/:]+@", literal), f"{name}.{key}: literal credentials in {value!r}"
    mac = env_of(REPLICAS[0]).get("CALCACHE__REDIS__MAC_KEY", "")
    assert re.fullmatch(r"\$\{CALCACHE_MAC_KEY:\?[^}]*\}", mac), f"the MAC key must be a required variable: {mac!r}"
    required.add("CALCACHE_MAC_KEY")
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    for var in required:
        assert re.search(rf"^{var}=", example, re.M), f"{var} missing from deploy/compose.env.example"


@check
def env_overrides_name_real_config_keys():
    defaults = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    for name in SERVICES:
        for key in env_of(name):
            if key.startswith("CALCACHE__"):
                section, field = key.removeprefix("CALCACHE__").lower().split("__", 1)
                assert field in defaults.get(section, {}), f"{name}: {key} is not a key of config/default.toml"


@check
def redis_never_evicts_version_keys():
    cmd = SERVICES["redis"]["command"]
    text = " ".join(cmd) if isinstance(cmd, list) else cmd
    m = re.search(r"--maxmemory-policy\s+(\S+)", text)
    assert m and m.group(1) in ("volatile-lru", "volatile-ttl", "volatile-lfu"), f"policy: {m and m.group(1)}"
    assert re.search(r"--maxmemory\s+\S+", text), "no --maxmemory"
    assert SERVICES["redis"].get("healthcheck")


@check
def mounted_files_exist():
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes") or []:
            src = str(vol).split(":", 1)[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name} mounts missing {src}"


# --- nginx --------------------------------------------------------------------


@check
def upstreams_are_the_compose_replicas():
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)\s+([^;]*);", UPSTREAMS, re.M)
    assert sorted(h for h, _, _ in servers) == REPLICAS, f"upstreams {servers} vs replicas {REPLICAS}"
    for host, port, params in servers:
        assert port == "8080", f"{host}:{port}"
        assert "max_fails=" in params and "fail_timeout=" in params, f"{host}: no passive health parameters"
        assert "down" not in params.split(), f"{host} is left drained (down)"


@check
def nginx_balances_round_robin_without_stickiness_or_caching():
    for forbidden in ("ip_hash", "sticky", "hash ", "least_conn", "proxy_cache_path", "proxy_hide_header",
                      "proxy_ignore_headers", "expires ", "non_idempotent"):
        assert forbidden not in NGINX_CODE, f"nginx.conf uses {forbidden.strip()}"
    assert not re.search(r"add_header\s+Cache-Control", NGINX_CODE.split("location @", 1)[0]), \
        "nginx.conf sets Cache-Control on proxied responses"
    for needed in (
        r"proxy_next_upstream\s+error timeout http_502 http_503;",
        r"proxy_no_cache\s+1;",
        r"proxy_cache_bypass\s+1;",
        r"proxy_cache\s+off;",
        r"client_max_body_size\s+64k;",
        r"keepalive\s+\d+;",
        r"proxy_http_version\s+1\.1;",
        r'proxy_set_header\s+Connection\s+"";',
        # overwritten, not appended to: the app trusts the first entry
        r"proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;",
        r'proxy_set_header\s+Forwarded\s+"";',
        r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme;",
        r"include\s+calcache/upstreams\.conf;",
        r"include\s+calcache/listen\.conf;",
        # the control plane is not public
        r"location\s+=\s+/metrics\s*\{[^}]*return\s+404",
    ):
        assert re.search(needed, NGINX_CODE), f"nginx.conf lacks {needed}"


# --- image --------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    pats = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line.rstrip("/"))
    return pats


def ignored(path: str, pats: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (or a parent of it) out of the context.
    A simplified model of Docker's matcher: no `!` exceptions."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    anywhere = ["/".join(parts[j : i + 1]) for i in range(len(parts)) for j in range(i + 1)]
    for pat in pats:
        assert not pat.startswith("!"), "negated .dockerignore patterns are not modelled here"
        if pat.startswith("**/"):
            if any(fnmatch.fnmatchcase(c, pat[3:]) for c in anywhere):
                return True
        elif any(fnmatch.fnmatchcase(c, pat) for c in prefixes):
            return True
    return False


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@check
def dockerfile_copies_only_what_the_context_holds():
    pats = dockerignore_patterns()
    for word, rest in dockerfile_instructions():
        if word != "COPY" or "--from=" in rest:
            continue
        *sources, _dest = rest.split()
        for src in sources:
            matches = list(ROOT.glob(src.rstrip("/")))
            assert matches, f"COPY {src}: not in the repository"
            for m in matches:
                rel = str(m.relative_to(ROOT))
                assert not ignored(rel, pats), f"COPY {src}: excluded by .dockerignore"
    for must in ("**/target", ".git", ".env", "**/node_modules", "web/assets/vendor"):
        assert must in pats, f".dockerignore should exclude {must}"


@check
def runtime_image_is_small_non_root_and_healthchecked():
    instr = dockerfile_instructions()
    stages = [i for i, (w, _) in enumerate(instr) if w == "FROM"]
    final = instr[stages[-1]:]
    assert re.match(r"debian:\$\{DEBIAN_RELEASE\}-slim|debian:[\w.]+-slim", final[0][1]), final[0]
    runs = " ".join(r for w, r in final if w == "RUN")
    assert "libpq5" in runs and "ca-certificates" in runs and "--no-install-recommends" in runs
    users = [r for w, r in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), f"USER {users}"
    hc = [r for w, r in final if w == "HEALTHCHECK"]
    assert hc and "/healthz" in hc[-1], hc
    envs = " ".join(r for w, r in final if w == "ENV")
    assert "CALCACHE_ENV=production" in envs, envs
    copies = " ".join(r for w, r in final if w == "COPY")
    assert "config/" in copies and "web/" in copies, copies
    # The build stage: dependencies cooked by cargo-chef from the planner's
    # recipe before any source is copied, then one build of the binary; the
    # page's files only in the runtime stage (a CSS change rebuilds no Rust).
    names = {r.split()[-1]: i for i, (w, r) in enumerate(instr) if w == "FROM" and " AS " in r.upper()}
    assert {"planner", "build", "runtime"} <= set(names), names
    nxt = lambda i: min([s for s in stages if s > i] + [len(instr)])
    build = instr[names["build"]:nxt(names["build"])]
    runs = [(i, r) for i, (w, r) in enumerate(build) if w == "RUN"]
    cook = [i for i, r in runs if "cargo chef cook" in r and "--release" in r]
    builds = [i for i, r in runs if "cargo build" in r and "--locked" in r]
    assert cook and len(builds) == 1, "expected cargo chef cook, then one application build"
    src_copies = [i for i, (w, r) in enumerate(build) if w == "COPY" and r.split()[0] == "src"]
    assert src_copies and cook[0] < src_copies[0] < builds[0], "sources copied before the dependency layer"
    assert not any(w == "COPY" and "web" in r for w, r in build), "web/ copied into the build stage"
    planner = instr[names["planner"]:nxt(names["planner"])]
    assert any(w == "RUN" and "cargo chef prepare" in r for w, r in planner), "no cargo chef prepare"


# --- the operations guide ------------------------------------------------------


@check
def operations_guide_lists_every_config_key_and_metric():
    guide = (ROOT / "docs" / "operations.md").read_text()
    defaults = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    missing = [f"{section}.{key}" for section, table in defaults.items() for key in table
               if f"`{section}.{key}`" not in guide]
    assert not missing, f"docs/operations.md does not describe {missing}"
    metrics = re.findall(r'register\(\s*"([a-z_]+)"', (ROOT / "src" / "metrics.rs").read_text())
    assert metrics, "no metrics found in src/metrics.rs"
    missing = [f"calcache_{m}" for m in metrics if f"calcache_{m}" not in guide]
    assert not missing, f"docs/operations.md does not describe the metrics {missing}"


def main() -> int:
    passed = failed = 0
    for fn in CHECKS:
        try:
            fn()
        except AssertionError as e:
            failed += 1
            print(f"FAIL: {fn.__name__}: {e}")
        else:
            passed += 1
            print(f"PASS: {fn.__name__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
