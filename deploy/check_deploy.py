#!/usr/bin/env python3
"""The project's rules on its deployment files, checked with the real tools where there are
some (deploy/check.sh installs them and runs this script with their paths):

- the Helm chart deploy/helm/mailfleet: `helm lint --strict`, `helm template` of several value
  sets (and of bad ones, which must fail), the rendered objects validated against the
  Kubernetes 1.25 and 1.37 OpenAPI schemas (kubernetes-validate, strict), then the rules below;
- docker-compose.yml: `docker-compose config` (Compose 1.29), the Compose Specification schema
  (check-jsonschema), then the rules below; the OpenTelemetry Collector's configuration;
- deploy/Dockerfile and deploy/mailserver/Dockerfile: hadolint, multi-stage, COPY sources;
- the mail server container's Dovecot and Postfix configuration: doveconf and postconf.

It renders and runs nothing else: no Docker engine and no cluster are needed.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy/helm/mailfleet"
CI_VALUES = CHART / "ci/test-values.yaml"
COMPOSE = ROOT / "docker-compose.yml"
K8S_VERSIONS = ["1.25.0", "1.37.0"]
RECOMMENDED_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
]
SECRET_KEYS = ["MAILFLEET_SECRET_KEY", "MAILFLEET_API_TOKEN", "DATABASE_URL", "AMQP_URL"]
# A worker drains for at most 25 s after SIGTERM (README; drain_timeout 20 s).
WORKER_DRAIN_SECS = 25
# Keys of a KEDA ScaledObject's spec and of its rabbitmq trigger's metadata (keda.sh docs).
KEDA_SPEC_KEYS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced",
    "triggers",
}
KEDA_RABBITMQ_KEYS = {
    "host", "protocol", "mode", "value", "activationValue", "queueName", "vhostName",
    "hostFromEnv", "usernameFromEnv", "passwordFromEnv", "unsafeSsl", "useRegex",
    "excludeUnacknowledged", "pageSize", "operation", "timeout",
}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def section(self, title: str) -> None:
        print(f"-- {title}", flush=True)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            msg = what + (f": {detail.strip()}" if detail and detail.strip() else "")
            self.failed.append(msg)
            print(f"   FAIL {msg}", flush=True)
        return ok

    def note(self, text: str) -> None:
        print(f"   {text}", flush=True)


def run(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True)


def config_rs_env_names() -> set[str]:
    """The environment variables the binary reads (clap `env = "..."`), from the source."""
    text = (ROOT / "crates/cli/src/config.rs").read_text()
    return set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', text))


# ----------------------------------------------------------------------------- Helm chart


class Rendered:
    def __init__(self, docs: list[dict]):
        self.docs = docs

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def get(self, kind: str, name: str) -> dict | None:
        for d in self.all(kind):
            if d["metadata"]["name"] == name:
                return d
        return None

    def one(self, kind: str, component: str) -> dict | None:
        found = [
            d for d in self.all(kind)
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]
        return found[0] if len(found) == 1 else None


def helm_template(helm: str, args: list[str]) -> subprocess.CompletedProcess:
    return run([helm, "template", "mf", str(CHART), "--namespace", "mail", *args])


def container(deploy: dict) -> dict:
    return deploy["spec"]["template"]["spec"]["containers"][0]


def env_map(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def hook_weight(obj: dict) -> int:
    return int(obj["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))


def is_hook(obj: dict, events: set[str]) -> bool:
    hooks = obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return events <= {h.strip() for h in hooks.split(",") if h.strip()}


def check_probes(r: Report, what: str, c: dict, port_name: str) -> None:
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        r.check(
            get.get("path") == path and get.get("port") in (port_name, ports.get(port_name)),
            f"{what}: {probe} is GET {path} on port {port_name}",
            str(get),
        )


def check_rendered(r: Report, name: str, out: Rendered, expect: dict) -> None:
    """The rules every rendering must follow; `expect` says what its values were."""
    prefix = expect["queuePrefix"]
    existing = expect.get("existingSecret")
    keda = expect.get("keda", False)
    kinds = sorted({d["kind"] for d in out.docs})
    r.note(f"{name}: {len(out.docs)} objects: {', '.join(kinds)}")

    # Labels on every object and every pod template.
    for d in out.docs:
        meta_name = f"{d['kind']}/{d['metadata']['name']}"
        labels = d["metadata"].get("labels", {})
        missing = [label for label in RECOMMENDED_LABELS if not labels.get(label)]
        r.check(not missing, f"{name}: {meta_name} has the recommended labels", f"missing {missing}")
        r.check(labels.get("app.kubernetes.io/part-of") == "mailfleet"
                and labels.get("app.kubernetes.io/managed-by") == "Helm",
                f"{name}: {meta_name} is part-of mailfleet, managed-by Helm")
        tmpl = d.get("spec", {}).get("template")
        if tmpl:
            tl = tmpl["metadata"].get("labels", {})
            missing = [label for label in RECOMMENDED_LABELS if not tl.get(label)]
            r.check(not missing, f"{name}: {meta_name} pod template has the recommended labels",
                    f"missing {missing}")
            pod = tmpl["spec"]
            r.check(pod.get("securityContext", {}).get("runAsNonRoot") is True,
                    f"{name}: {meta_name} pods run as non-root")
            r.check(pod.get("automountServiceAccountToken") is False,
                    f"{name}: {meta_name} pods mount no service account token")

    secrets = {d["metadata"]["name"]: d for d in out.all("Secret")}
    configmaps = {d["metadata"]["name"]: d for d in out.all("ConfigMap")}

    def secret_has(secret: str, key: str) -> bool:
        if existing and secret == existing:
            return True  # provided by the operator; NOTES.txt lists the keys
        s = secrets.get(secret)
        return bool(s) and key in {**s.get("data", {}), **s.get("stringData", {})}

    def check_refs(what: str, c: dict) -> None:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                r.check(secret_has(ref["name"], ref["key"]),
                        f"{name}: {what} env {e['name']} reads an existing Secret key",
                        f"{ref['name']}/{ref['key']}")
        for ef in c.get("envFrom", []):
            if "configMapRef" in ef:
                r.check(ef["configMapRef"]["name"] in configmaps,
                        f"{name}: {what} envFrom names a rendered ConfigMap")

    # ConfigMap and Secret.
    cm = out.one("ConfigMap", "config")
    if r.check(cm is not None, f"{name}: one ConfigMap"):
        data = cm.get("data", {})
        r.check(data.get("MAILFLEET_QUEUE_PREFIX") == prefix,
                f"{name}: ConfigMap sets MAILFLEET_QUEUE_PREFIX={prefix}")
        r.check(all(isinstance(v, str) for v in data.values()), f"{name}: ConfigMap values are strings")
        leaked = [k for k in SECRET_KEYS if k in data]
        r.check(not leaked, f"{name}: no secret setting in the ConfigMap", str(leaked))
        unknown = [k for k in data if k.startswith("MAILFLEET_") and k not in config_rs_env_names()]
        r.check(not unknown, f"{name}: every MAILFLEET_* of the ConfigMap is read by the binary",
                str(unknown))
        if expect.get("otel"):
            r.check(data.get("OTEL_EXPORTER_OTLP_ENDPOINT") == expect["otel"],
                    f"{name}: ConfigMap sets OTEL_EXPORTER_OTLP_ENDPOINT")
    main_secret = [s for s in out.all("Secret") if not is_hook(s, {"pre-install"})]
    if existing:
        r.check(not main_secret, f"{name}: no Secret rendered with existingSecret")
    elif r.check(len(main_secret) == 1, f"{name}: one Secret"):
        sd = main_secret[0].get("stringData", {})
        r.check(all(sd.get(k) for k in SECRET_KEYS), f"{name}: the Secret holds {', '.join(SECRET_KEYS)}")
    secret_name = existing or (main_secret[0]["metadata"]["name"] if main_secret else None)

    # Coordinator.
    coord = out.one("Deployment", "coordinator")
    if r.check(coord is not None, f"{name}: one coordinator Deployment"):
        c = container(coord)
        env = env_map(c)
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        r.check(c.get("args") == ["coordinator"], f"{name}: coordinator runs `mailfleet coordinator`")
        r.check("http" in ports and env.get("MAILFLEET_API_ADDR", {}).get("value") == f"0.0.0.0:{ports.get('http')}",
                f"{name}: MAILFLEET_API_ADDR listens on the container port `http`")
        check_probes(r, f"{name}: coordinator", c, "http")
        r.check(all(k in env for k in SECRET_KEYS), f"{name}: coordinator gets the four secret settings")
        check_refs("coordinator", c)
        sel = coord["spec"]["selector"]["matchLabels"]
        r.check(sel.items() <= coord["spec"]["template"]["metadata"]["labels"].items(),
                f"{name}: coordinator selector matches its pods")
        svc = [s for s in out.all("Service")]
        if r.check(len(svc) == 1, f"{name}: one Service"):
            s = svc[0]
            r.check(s["spec"]["selector"] == sel, f"{name}: the Service selects the coordinator pods")
            r.check(all(p["targetPort"] in (ports.keys() | set(ports.values())) for p in s["spec"]["ports"]),
                    f"{name}: the Service targets the coordinator's API port")

    # Worker.
    worker = out.one("Deployment", "worker")
    if r.check(worker is not None, f"{name}: one worker Deployment"):
        spec = worker["spec"]
        pod = spec["template"]["spec"]
        c = container(worker)
        env = env_map(c)
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        r.check(c.get("args") == ["worker"], f"{name}: worker runs `mailfleet worker`")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        r.check(grace > WORKER_DRAIN_SECS,
                f"{name}: worker terminationGracePeriodSeconds ({grace}) is above the {WORKER_DRAIN_SECS} s drain")
        r.check(env.get("MAILFLEET_HEALTH_ADDR", {}).get("value") == f"0.0.0.0:{ports.get('health')}",
                f"{name}: MAILFLEET_HEALTH_ADDR=0.0.0.0:<health port>")
        check_probes(r, f"{name}: worker", c, "health")
        r.check({"MAILFLEET_SECRET_KEY", "DATABASE_URL", "AMQP_URL"} <= env.keys()
                and "MAILFLEET_API_TOKEN" not in env,
                f"{name}: worker gets the secret key and URLs, not the API token")
        check_refs("worker", c)
        if keda:
            r.check("replicas" not in spec, f"{name}: with KEDA the worker Deployment leaves replicas to it")
        else:
            r.check(spec.get("replicas") == expect["workerReplicas"], f"{name}: worker replicas from values")
        if expect.get("extraCA"):
            r.check(env.get("MAILFLEET_EXTRA_CA_FILE", {}).get("value", "").startswith("/etc/mailfleet/extra-ca/")
                    and any(v.get("configMap", {}).get("name") == expect["extraCA"] for v in pod.get("volumes", [])),
                    f"{name}: the extra CA ConfigMap is mounted and MAILFLEET_EXTRA_CA_FILE set")
        wsel = spec["selector"]["matchLabels"]
        r.check(wsel.items() <= spec["template"]["metadata"]["labels"].items(),
                f"{name}: worker selector matches its pods")
        if coord is not None:
            r.check(wsel != coord["spec"]["selector"]["matchLabels"],
                    f"{name}: worker and coordinator selectors differ")
        pdbs = out.all("PodDisruptionBudget")
        if r.check(len(pdbs) == 1, f"{name}: one PodDisruptionBudget"):
            p = pdbs[0]["spec"]
            r.check(p["selector"]["matchLabels"] == wsel, f"{name}: the PodDisruptionBudget selects the workers")
            r.check("maxUnavailable" in p or "minAvailable" in p, f"{name}: the PodDisruptionBudget has a budget")

    # Migrate Job: a pre-install/pre-upgrade hook whose own needs are hooks that come first.
    jobs = out.all("Job")
    if r.check(len(jobs) == 1, f"{name}: one Job"):
        job = jobs[0]
        r.check(is_hook(job, {"pre-install", "pre-upgrade"}), f"{name}: the Job is a pre-install,pre-upgrade hook")
        pod = job["spec"]["template"]["spec"]
        c = pod["containers"][0]
        r.check(c.get("args") == ["migrate"], f"{name}: the Job runs `mailfleet migrate`")
        r.check(pod.get("restartPolicy") in ("Never", "OnFailure"), f"{name}: the Job's pods do not restart forever")
        ref = env_map(c).get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        if r.check(ref is not None, f"{name}: the Job reads DATABASE_URL from a Secret"):
            if existing:
                r.check(ref["name"] == existing, f"{name}: the Job reads the existing Secret")
            else:
                hs = out.get("Secret", ref["name"])
                r.check(hs is not None and is_hook(hs, {"pre-install", "pre-upgrade"})
                        and hook_weight(hs) < hook_weight(job)
                        and hs.get("stringData", {}).get("DATABASE_URL"),
                        f"{name}: the Job's Secret is a hook created before it")
        sa = out.get("ServiceAccount", pod.get("serviceAccountName", "default"))
        r.check(sa is not None and is_hook(sa, {"pre-install", "pre-upgrade"}) and hook_weight(sa) < hook_weight(job),
                f"{name}: the Job's ServiceAccount is a hook created before it")

    # KEDA.
    sos = out.all("ScaledObject")
    tas = out.all("TriggerAuthentication")
    if not keda:
        r.check(not sos and not tas, f"{name}: no KEDA objects when keda.enabled is false")
        return
    if not (r.check(len(sos) == 1, f"{name}: one ScaledObject") and r.check(len(tas) == 1, f"{name}: one TriggerAuthentication")):
        return
    so, ta = sos[0], tas[0]
    r.check(so["apiVersion"] == "keda.sh/v1alpha1" and ta["apiVersion"] == "keda.sh/v1alpha1",
            f"{name}: KEDA objects are keda.sh/v1alpha1")
    spec = so["spec"]
    r.check(set(spec) <= KEDA_SPEC_KEYS, f"{name}: ScaledObject spec has only KEDA's fields",
            str(set(spec) - KEDA_SPEC_KEYS))
    target = spec["scaleTargetRef"]
    r.check(worker is not None and target.get("name") == worker["metadata"]["name"]
            and target.get("kind", "Deployment") == "Deployment",
            f"{name}: the ScaledObject scales the worker Deployment")
    r.check(0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], f"{name}: minReplicaCount <= maxReplicaCount")
    triggers = spec.get("triggers", [])
    if r.check(len(triggers) == 1 and triggers[0]["type"] == "rabbitmq", f"{name}: one rabbitmq trigger"):
        t = triggers[0]
        md = t["metadata"]
        r.check(set(md) <= KEDA_RABBITMQ_KEYS, f"{name}: rabbitmq trigger metadata has only KEDA's keys",
                str(set(md) - KEDA_RABBITMQ_KEYS))
        r.check(all(isinstance(v, str) for v in md.values()), f"{name}: trigger metadata values are strings")
        r.check(md.get("mode") == "QueueLength", f"{name}: trigger mode QueueLength")
        r.check(md.get("queueName") == f"{prefix}.sync", f"{name}: trigger watches {prefix}.sync", md.get("queueName", ""))
        r.check(str(md.get("value", "")).isdigit() and int(md["value"]) > 0, f"{name}: trigger value is a positive count")
        r.check("host" not in md, f"{name}: the AMQP URL is not in the ScaledObject")
        r.check(t.get("authenticationRef", {}).get("name") == ta["metadata"]["name"],
                f"{name}: the trigger uses the TriggerAuthentication")
    refs = ta["spec"].get("secretTargetRef", [])
    host = [x for x in refs if x.get("parameter") == "host"]
    if r.check(len(host) == 1, f"{name}: the TriggerAuthentication sets `host` from a Secret"):
        r.check(host[0]["name"] == secret_name, f"{name}: ... from the release's Secret", str(host[0]))
        r.check(host[0]["key"] == expect.get("hostSecretKey", "AMQP_URL") and secret_has(host[0]["name"], host[0]["key"]),
                f"{name}: ... under the configured key")


def check_chart(r: Report, helm: str) -> None:
    r.section(f"Helm chart {CHART.relative_to(ROOT)} ({run([helm, 'version', '--short']).stdout.strip()})")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    unknown = [k for k in values["config"] if k.startswith("MAILFLEET_") and k not in config_rs_env_names()]
    r.check(not unknown, "values.yaml: config sets only variables the binary reads", str(unknown))
    r.check(values["queuePrefix"] == "mailfleet", "values.yaml: queuePrefix defaults to the binary's `mailfleet`")

    for args in (["-f", str(CI_VALUES)], ["--set", "existingSecret=mailfleet-env"]):
        p = run([helm, "lint", "--strict", str(CHART), *args])
        r.check(p.returncode == 0, f"helm lint --strict {' '.join(args)}", p.stdout + p.stderr)

    scenarios = [
        ("ci-values (chart Secret, KEDA, OTel)", ["-f", str(CI_VALUES)],
         {"queuePrefix": "mailfleet", "keda": True, "otel": "http://otel-collector.observability:4318"}),
        ("existingSecret, no KEDA", [
            "--set", "existingSecret=mailfleet-env", "--set", "queuePrefix=acme",
            "--set", "worker.replicas=3", "--set", "worker.extraCA.configMap=mail-ca"],
         {"queuePrefix": "acme", "existingSecret": "mailfleet-env", "workerReplicas": 3, "extraCA": "mail-ca"}),
        ("existingSecret, KEDA with its own key", [
            "--set", "existingSecret=mailfleet-env", "--set", "keda.enabled=true",
            "--set", "keda.hostSecretKey=KEDA_AMQP_URL", "--set", "queuePrefix=crm-mail"],
         {"queuePrefix": "crm-mail", "existingSecret": "mailfleet-env", "keda": True, "hostSecretKey": "KEDA_AMQP_URL"}),
    ]
    for name, args, expect in scenarios:
        p = helm_template(helm, args)
        if not r.check(p.returncode == 0, f"helm template {name}", p.stderr):
            continue
        docs = [d for d in yaml.safe_load_all(p.stdout) if d]
        kube_validate(r, name, docs)
        check_rendered(r, name, Rendered(docs), expect)

    # Values that must be refused, with the reason in the message.
    bad = [
        ("no secret values and no existingSecret", [], "secret.secretKey"),
        ("worker grace period within the drain", ["-f", str(CI_VALUES), "--set", "worker.terminationGracePeriodSeconds=25"], "terminationGracePeriodSeconds"),
        ("a secret setting in config", ["-f", str(CI_VALUES), "--set", "config.AMQP_URL=amqp://x"], "config.AMQP_URL"),
        ("a mistyped key", ["-f", str(CI_VALUES), "--set", "keda.enable=true"], "enable"),
        ("KEDA min above max", ["-f", str(CI_VALUES), "--set", "keda.minReplicaCount=5", "--set", "keda.maxReplicaCount=2"], "minReplicaCount"),
        ("a bad queue prefix", ["-f", str(CI_VALUES), "--set", "queuePrefix=a/b"], "queuePrefix"),
    ]
    for name, args, needle in bad:
        p = helm_template(helm, args)
        r.check(p.returncode != 0 and needle in p.stderr, f"helm template refuses {name}",
                f"exit {p.returncode}: {p.stderr[-300:]}")


def kube_validate(r: Report, name: str, docs: list[dict]) -> None:
    import kubernetes_validate

    for d in docs:
        if d["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked field by field in check_rendered
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
                ok, detail = True, ""
            except Exception as e:  # ValidationError, SchemaNotFoundError, ...
                ok, detail = False, str(e)[:400]
            r.check(ok, f"{name}: {d['kind']}/{d['metadata']['name']} is valid Kubernetes {version}", detail)
    r.note(f"{name}: built-in objects validated against Kubernetes {' and '.join(K8S_VERSIONS)} (strict)")


# ----------------------------------------------------------------------------- Compose


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def check_compose(r: Report, docker_compose: str | None) -> None:
    r.section("docker-compose.yml")
    dummy = {"MAILFLEET_SECRET_KEY": "x", "MAILFLEET_API_TOKEN": "y"}
    if docker_compose:
        version = run([docker_compose, "version", "--short"]).stdout.strip()
        p = run([docker_compose, "-f", str(COMPOSE), "--profile", "demo", "config", "-q"], env=dummy)
        r.check(p.returncode == 0, f"docker-compose {version} config accepts the file", p.stderr)
        p = run([docker_compose, "-f", str(COMPOSE), "--profile", "demo", "config", "--services"], env=dummy)
        r.note(f"docker-compose {version} config: services {' '.join(sorted(p.stdout.split()))}")
        clean = {k: v for k, v in os.environ.items() if k not in dummy}
        p = subprocess.run([docker_compose, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, env=clean,
                           capture_output=True, text=True)
        r.check(p.returncode != 0 and "MAILFLEET_SECRET_KEY" in p.stderr,
                "docker-compose config refuses to run without MAILFLEET_SECRET_KEY")
    else:
        r.note("docker-compose not installed: Compose's own parser skipped")
    p = run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    r.check(p.returncode == 0, "docker-compose.yml follows the Compose Specification schema", p.stdout + p.stderr)

    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    for s in ["postgres", "rabbitmq", "mailserver", "otel-collector", "migrate", "coordinator", "worker", "demo"]:
        r.check(s in services, f"compose: service {s}")
    if "rabbitmq" in services:
        r.check("management" in services["rabbitmq"].get("image", ""), "compose: RabbitMQ with the management plugin")
    otel = services.get("otel-collector", {})
    image = otel.get("image", "")
    r.check(image.startswith("otel/opentelemetry-collector:") and not image.endswith(":latest"),
            "compose: otel/opentelemetry-collector at a pinned version", image)

    for name, svc in services.items():
        for p in svc.get("ports", []):
            r.check(str(p).startswith("127.0.0.1:"), f"compose: {name} publishes {p} on 127.0.0.1 only")
        for v in svc.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith((".", "/")):
                r.check((ROOT / src).exists(), f"compose: {name} mounts {src}, which exists")
            else:
                r.check(src in volumes, f"compose: {name} uses volume {src}, which is declared")
        build = svc.get("build")
        if isinstance(build, dict):
            df = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            r.check(df.is_file(), f"compose: {name} builds {df.relative_to(ROOT)}, which exists")
        for dep in (svc.get("depends_on") or {}):
            r.check(dep in services, f"compose: {name} depends on {dep}, a service")
        for key, val in env_of(svc).items():
            if key.startswith("MAILFLEET_"):
                r.check(key in config_rs_env_names(), f"compose: {name} sets {key}, which the binary reads")

    worker = services.get("worker", {})
    r.check("container_name" not in worker and "ports" not in worker,
            "compose: worker has no container_name and no host port (--scale worker=N)")
    grace = str(worker.get("stop_grace_period", "10s"))
    m = re.fullmatch(r"(\d+)s", grace)
    r.check(bool(m) and int(m.group(1)) > WORKER_DRAIN_SECS,
            f"compose: worker stop_grace_period ({grace}) is above the {WORKER_DRAIN_SECS} s drain")
    wenv = env_of(worker)
    r.check(wenv.get("MAILFLEET_HEALTH_ADDR", "").startswith("0.0.0.0:"), "compose: worker health on 0.0.0.0")
    r.check("healthcheck" in worker, "compose: worker has a healthcheck")
    ca = wenv.get("MAILFLEET_EXTRA_CA_FILE", "")
    r.check(ca.startswith("/var/lib/mailfleet-dev/"), "compose: workers trust the mail server's CA", ca)

    grpc_port = None
    otel_conf = ROOT / "deploy/otel-collector.yaml"
    for name in ("coordinator", "worker"):
        env = env_of(services.get(name, {}))
        ep = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        r.check(re.fullmatch(r"http://otel-collector:\d+", ep) is not None,
                f"compose: {name} sends OTLP to the otel-collector service", ep)
        r.check(env.get("MAILFLEET_SECRET_KEY", "").startswith("${MAILFLEET_SECRET_KEY:?"),
                f"compose: {name} requires MAILFLEET_SECRET_KEY from the environment")
    r.check(env_of(services.get("coordinator", {})).get("MAILFLEET_API_ADDR", "").startswith("0.0.0.0:"),
            "compose: coordinator API on 0.0.0.0 inside its container")
    demo = services.get("demo", {})
    r.check(demo.get("network_mode") == "service:mailserver" and "demo" in demo.get("profiles", []),
            "compose: demo runs in the mail server's network, in profile `demo`")
    r.check("MAILFLEET_SECRET_KEY" not in env_of(demo), "compose: demo makes its own key")

    # The collector's configuration.
    conf = yaml.safe_load(otel_conf.read_text())
    protocols = conf.get("receivers", {}).get("otlp", {}).get("protocols", {})
    grpc = protocols.get("grpc", {}).get("endpoint", "")
    r.check(grpc.endswith(":4317") and protocols.get("http", {}).get("endpoint", "").endswith(":4318"),
            "otel-collector.yaml: OTLP gRPC on 4317 and HTTP on 4318")
    # mailfleet exports OTLP over HTTP (opentelemetry-otlp with the http-proto/http-json
    # features; no gRPC client is built in).
    http_port = protocols.get("http", {}).get("endpoint", "").rsplit(":", 1)[-1]
    ep = env_of(services.get("worker", {})).get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    r.check(ep.endswith(f":{http_port}"), "compose: the OTLP endpoint is the collector's HTTP port")
    pipelines = conf.get("service", {}).get("pipelines", {})
    r.check({"traces", "metrics", "logs"} <= pipelines.keys(), "otel-collector.yaml: traces, metrics and logs pipelines")
    for pname, pl in pipelines.items():
        for part in ("receivers", "processors", "exporters"):
            names = pl.get(part, [])
            defined = set((conf.get(part) or {}).keys())
            r.check(set(names) <= defined, f"otel-collector.yaml: pipeline {pname}'s {part} are defined",
                    str(set(names) - defined))
        r.check(bool(pl.get("receivers")) and bool(pl.get("exporters")),
                f"otel-collector.yaml: pipeline {pname} receives and exports")


# ----------------------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(path: pathlib.Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def check_dockerfiles(r: Report, hadolint: str) -> None:
    r.section("Dockerfiles")
    files = [ROOT / "deploy/Dockerfile", ROOT / "deploy/mailserver/Dockerfile"]
    p = run([hadolint, *map(str, files)])
    r.check(p.returncode == 0, "hadolint deploy/Dockerfile deploy/mailserver/Dockerfile", p.stdout + p.stderr)

    ins = dockerfile_instructions(files[0])
    stages = [rest for word, rest in ins if word == "FROM"]
    r.check(len(stages) >= 2, f"deploy/Dockerfile is multi-stage ({len(stages)} stages)")
    r.check(any(w == "COPY" and rest.startswith("--from=build") for w, rest in ins),
            "deploy/Dockerfile copies the binary from the build stage")
    last = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [rest for w, rest in last if w == "USER"]
    r.check(bool(users) and not users[-1].startswith(("root", "0")),
            "deploy/Dockerfile: the default (last) stage runs as a non-root user", str(users))
    r.check("runtime" in stages[-1], "deploy/Dockerfile: the last stage is `runtime`", stages[-1])
    compose_targets = {s.get("build", {}).get("target") for s in yaml.safe_load(COMPOSE.read_text())["services"].values()
                       if isinstance(s.get("build"), dict)} - {None}
    names = {s.split()[-1] for s in stages if " AS " in s.upper()}
    r.check(compose_targets <= names, "docker-compose.yml builds only targets deploy/Dockerfile has",
            str(compose_targets - names))
    for df in files:
        for w, rest in dockerfile_instructions(df):
            if w == "COPY" and not rest.startswith("--from"):
                srcs = [s for s in rest.split()[:-1] if not s.startswith("--")]
                for s in srcs:
                    if s != ".":
                        r.check((ROOT / s).exists(), f"{df.relative_to(ROOT)}: COPY {s} exists")
    ignore = (ROOT / ".dockerignore").read_text().split()
    r.check("target" in ignore or "/target" in ignore, ".dockerignore leaves out target/")


def check_mailserver(r: Report) -> None:
    r.section("mail server container configuration (deploy/mailserver)")
    entry = ROOT / "deploy/mailserver/entrypoint.sh"
    p = run(["bash", "-n", str(entry)])
    r.check(p.returncode == 0, "entrypoint.sh parses", p.stderr)
    r.check(os.access(entry, os.X_OK), "entrypoint.sh is executable")
    doveconf = shutil.which("doveconf")
    if doveconf:
        p = run([doveconf, "-c", str(ROOT / "deploy/mailserver/dovecot.conf"), "-n"])
        r.check(p.returncode == 0, "doveconf accepts dovecot.conf", p.stderr)
    else:
        r.note("doveconf not installed (scripts/services-up.sh installs it): skipped")
    postconf = shutil.which("postconf") or ("/usr/sbin/postconf" if os.path.exists("/usr/sbin/postconf") else None)
    if postconf:
        d = str(ROOT / "deploy/mailserver/postfix")
        for flag, what in (("-n", "main.cf"), ("-M", "master.cf")):
            p = run([postconf, "-c", d, flag])
            r.check(p.returncode == 0 and "warning" not in p.stderr, f"postconf accepts {what}", p.stderr)
    else:
        r.note("postconf not installed (scripts/services-up.sh installs it): skipped")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--helm", required=True)
    ap.add_argument("--hadolint", required=True)
    ap.add_argument("--docker-compose", default=None)
    args = ap.parse_args()
    r = Report()
    check_chart(r, args.helm)
    check_compose(r, args.docker_compose)
    check_dockerfiles(r, args.hadolint)
    check_mailserver(r)
    if r.failed:
        print(f"deploy: {len(r.failed)} of {r.passed + len(r.failed)} checks FAILED")
        return 1
    print(f"deploy: all {r.passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
