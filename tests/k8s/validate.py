#!/usr/bin/env python3
"""Validate every Kubernetes manifest under k8s/ offline.

For each YAML document in each *.yaml / *.yml file under k8s/:

- core kinds (Deployment, Service, ConfigMap, ...) are checked, strictly (no
  unknown fields), against the Kubernetes OpenAPI schemas bundled in the PyPI
  package `kubernetes-validate`;
- Istio kinds (VirtualService, AuthorizationPolicy, Gateway, ...) against the
  `openAPIV3Schema` of the matching version in Istio's CRD file, tightened so
  unknown fields fail as they do with `kubectl apply` (strict field validation);
- the `istio` ConfigMap's `mesh` (not a CRD) gets a structural check of the
  `extensionProviders` fields, plus the settings authgate needs;
- every embedded `authgate.yaml` is run through `authgate check` when
  `--authgate PATH` is given (skipped, with a message, when it is not);
- cross-references that would only fail at runtime: Services that select no
  pod or name a missing port, VirtualServices routing to missing Services,
  volumes naming missing ConfigMaps/Secrets, CUSTOM policies naming an unknown
  provider, extension providers pointing at a missing Service port;
- the rollout of an authgate Deployment: `maxUnavailable: 0`, a `preStop`
  sleep, `terminationGracePeriodSeconds` above it plus `server.shutdown_grace`.

Prints one line per check and, last, exactly `N passed, M failed`; exits 1 on
any failure.

    python3 -m venv /tmp/k8s-venv && /tmp/k8s-venv/bin/pip install -r tests/k8s/requirements.txt
    /tmp/k8s-venv/bin/python tests/k8s/validate.py [--authgate target/release/authgate]
"""

from __future__ import annotations

import argparse
import base64
import copy
import os
import re
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

import jsonschema
import kubernetes_validate
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
# A throwaway P-256 key for `authgate check` of `assertion.signing_key_file`;
# never deployed anywhere.
DUMMY_ASSERTION_KEY = """-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIBwv//pWLTEMa6FoNt/ifl98Y8vlRNeg9iPiU2pi5augoAoGCCqGSM49
AwEHoUQDQgAEQTpgb6qkPJL1DXhe1kWkZ4CR41xR127qx0qF8mREssE4z1oStp5N
oda7Wjc5azKshYkeYUNgJmhprANomyNIDw==
-----END EC PRIVATE KEY-----"""
DEFAULT_ISTIO_CRDS = "../shared/k8s-schemas/istio-crd-all.gen.yaml"
DEFAULT_K8S_VERSION = "1.30.0"

# === results ===================================================================


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def ok(self, what: str, note: str = "") -> None:
        self.passed += 1
        print(f"ok    {what}" + (f" ({note})" if note else ""))

    def fail(self, what: str, problems: Iterable[str]) -> None:
        self.failed += 1
        print(f"FAIL  {what}")
        for problem in problems:
            print(f"      - {problem}")

    def skip(self, what: str, why: str) -> None:
        self.skipped += 1
        print(f"skip  {what}: {why}")

    def check(self, what: str, problems: list[str], note: str = "") -> None:
        if problems:
            self.fail(what, problems)
        else:
            self.ok(what, note)


@dataclass
class Doc:
    """One YAML document and where it came from."""

    path: str
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def group(self) -> str:
        api = str(self.body.get("apiVersion", ""))
        return api.rsplit("/", 1)[0] if "/" in api else ""

    @property
    def namespace(self) -> str:
        return str(self.body.get("metadata", {}).get("namespace", "default"))

    @property
    def name(self) -> str:
        return str(self.body.get("metadata", {}).get("name", ""))

    def label(self) -> str:
        ns = self.body.get("metadata", {}).get("namespace")
        name = f"{ns}/{self.name}" if ns else self.name
        return f"{self.path}#{self.index} {self.body.get('apiVersion')} {self.kind} {name}"


@dataclass
class Inventory:
    """Everything the manifests declare, for cross-reference checks."""

    docs: list[Doc] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d.kind == kind]

    def find(self, kind: str, namespace: str, name: str) -> Doc | None:
        for d in self.of_kind(kind):
            if d.namespace == namespace and d.name == name:
                return d
        return None


# === loading ===================================================================


def load_documents(k8s_dir: Path, report: Report) -> Inventory:
    inv = Inventory()
    files = sorted(p for p in k8s_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        report.fail(str(k8s_dir), ["no YAML files found"])
    for path in files:
        rel = os.path.relpath(path, REPO_ROOT)
        try:
            raw_docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as err:
            report.fail(rel, [f"YAML parse error: {err}"])
            continue
        real = [d for d in raw_docs if d is not None]
        if not real:
            report.fail(rel, ["file holds no YAML document"])
        for index, body in enumerate(real, start=1):
            where = f"{rel}#{index}"
            if not isinstance(body, dict):
                report.fail(where, [f"document is a {type(body).__name__}, not a mapping"])
                continue
            missing = [k for k in ("apiVersion", "kind") if not body.get(k)]
            if missing:
                report.fail(where, [f"empty or missing {', '.join(missing)}"])
                continue
            if not body.get("metadata", {}).get("name"):
                report.fail(where, ["metadata.name is missing"])
                continue
            inv.docs.append(Doc(rel, index, body))
    return inv


# === core kinds ================================================================


def validate_core(doc: Doc, k8s_version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc.body, k8s_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as err:
        return [err.message]
    except kubernetes_validate.ValidationError as err:
        where = ".".join(str(p) for p in err.path) or "(document)"
        return [f"{where}: {err.message}"]
    return []


# === Istio kinds ===============================================================


def load_istio_crds(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, kind, version) -> strict openAPIV3Schema."""
    schemas: dict[tuple[str, str, str], dict[str, Any]] = {}
    for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec.get("versions", []):
            if not version.get("served", False):
                continue
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema is None:
                continue
            key = (spec["group"], spec["names"]["kind"], version["name"])
            schemas[key] = strict_schema(schema)
    return schemas


def strict_schema(schema: Any) -> Any:
    """Close every object that lists its properties, as the API server prunes /
    rejects unknown fields, unless the CRD says to preserve them."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validate_istio(doc: Doc, crds: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    api = str(doc.body["apiVersion"])
    group, _, version = api.partition("/")
    schema = crds.get((group, doc.kind, version))
    if schema is None:
        served = sorted(v for (g, k, v) in crds if g == group and k == doc.kind)
        return [f"no served CRD version {api} for {doc.kind} (served: {served or 'none'})"]
    # metadata is an opaque object in CRD schemas: the API server checks it.
    body = {k: v for k, v in doc.body.items() if k != "metadata"}
    schema = {k: v for k, v in schema.items()}
    schema["properties"] = {k: v for k, v in schema.get("properties", {}).items()}
    schema["properties"].setdefault("apiVersion", {"type": "string"})
    schema["properties"].setdefault("kind", {"type": "string"})
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in err.path) or "(document)"
        problems.append(f"{where}: {err.message[:300]}")
    problems += istio_semantics(doc)
    return problems


def istio_semantics(doc: Doc) -> list[str]:
    """The CEL rules of the CRDs that matter here (jsonschema ignores CEL)."""
    if doc.kind != "AuthorizationPolicy":
        return []
    spec = doc.body.get("spec") or {}
    problems = []
    if spec.get("action") == "CUSTOM" and not (spec.get("provider") or {}).get("name"):
        problems.append("spec.provider.name: required with action CUSTOM")
    if spec.get("provider") and spec.get("action") != "CUSTOM":
        problems.append("spec.provider: only allowed with action CUSTOM")
    if spec.get("action") == "CUSTOM":
        for rule in spec.get("rules") or []:
            for to in rule.get("to") or []:
                hosts = (to.get("operation") or {}).get("hosts") or []
                for host in hosts:
                    # `Host: a.example.com:443` does not match `a.example.com`:
                    # a CUSTOM policy without the port form can be skipped.
                    if ":" not in host and f"{host}:*" not in hosts:
                        problems.append(
                            f"spec.rules.to.operation.hosts: {host!r} without {host + ':*'!r} "
                            "lets a Host header with a port skip the check"
                        )
    return problems


# === meshConfig ================================================================

# Fields of MeshConfig.ExtensionProvider.EnvoyExternalAuthorization{Http,Grpc}Provider
# (istio/api mesh/v1alpha1/config.proto); istiod parses the mesh strictly.
HTTP_PROVIDER_FIELDS: dict[str, Callable[[Any], bool]] = {
    "service": lambda v: isinstance(v, str) and bool(v),
    "port": lambda v: isinstance(v, int) and 0 < v < 65536,
    "timeout": lambda v: isinstance(v, str) and bool(re.fullmatch(r"\d+(\.\d+)?s", v)),
    "pathPrefix": lambda v: isinstance(v, str) and v.startswith("/"),
    "failOpen": lambda v: isinstance(v, bool),
    "statusOnError": lambda v: isinstance(v, str) and bool(re.fullmatch(r"[1-5]\d\d", v)),
    "includeRequestHeadersInCheck": lambda v: is_str_list(v),
    "includeAdditionalHeadersInCheck": lambda v: isinstance(v, dict)
    and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
    "includeRequestBodyInCheck": lambda v: isinstance(v, dict),
    "headersToUpstreamOnAllow": lambda v: is_str_list(v),
    "headersToDownstreamOnDeny": lambda v: is_str_list(v),
    "headersToDownstreamOnAllow": lambda v: is_str_list(v),
}
GRPC_PROVIDER_FIELDS = {
    k: HTTP_PROVIDER_FIELDS[k]
    for k in ("service", "port", "timeout", "failOpen", "statusOnError", "includeRequestBodyInCheck")
}
# The MeshConfig top-level fields these manifests may set.
MESH_FIELDS = {
    "defaultConfig",
    "enablePrometheusMerge",
    "rootNamespace",
    "trustDomain",
    "extensionProviders",
    "accessLogFile",
    "accessLogEncoding",
    "outboundTrafficPolicy",
    "enableTracing",
    "defaultProviders",
}


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x for x in value)


def mesh_providers(doc: Doc) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Parse the `mesh` key of an `istio` ConfigMap: providers by name, problems."""
    problems: list[str] = []
    providers: dict[str, dict[str, Any]] = {}
    try:
        mesh = yaml.safe_load((doc.body.get("data") or {}).get("mesh", ""))
    except yaml.YAMLError as err:
        return providers, [f"data.mesh: YAML parse error: {err}"]
    if not isinstance(mesh, dict):
        return providers, ["data.mesh: not a mapping"]
    for key in mesh:
        if key not in MESH_FIELDS:
            problems.append(f"data.mesh.{key}: not a MeshConfig field this check knows")
    entries = mesh.get("extensionProviders")
    if not isinstance(entries, list) or not entries:
        return providers, problems + ["data.mesh.extensionProviders: missing or empty"]
    for i, entry in enumerate(entries):
        where = f"data.mesh.extensionProviders[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"{where}: needs a string `name`")
            continue
        name = entry["name"]
        if name in providers:
            problems.append(f"{where}: duplicate name {name!r}")
        kinds = [k for k in entry if k != "name"]
        if len(kinds) != 1:
            problems.append(f"{where}: exactly one provider type expected, got {kinds}")
            continue
        kind = kinds[0]
        fields = {"envoyExtAuthzHttp": HTTP_PROVIDER_FIELDS, "envoyExtAuthzGrpc": GRPC_PROVIDER_FIELDS}
        if kind not in fields:
            continue  # tracing/logging providers: not ours to check
        body = entry[kind]
        if not isinstance(body, dict):
            problems.append(f"{where}.{kind}: not a mapping")
            continue
        for key, value in body.items():
            check = fields[kind].get(key)
            if check is None:
                problems.append(f"{where}.{kind}.{key}: unknown field")
            elif not check(value):
                problems.append(f"{where}.{kind}.{key}: invalid value {value!r}")
        for key in ("service", "port"):
            if key not in body:
                problems.append(f"{where}.{kind}.{key}: required")
        problems += authgate_provider_lint(f"{where}.{kind}", kind, body)
        providers[name] = {"kind": kind, **body}
    return providers, problems


def authgate_provider_lint(where: str, kind: str, body: dict[str, Any]) -> list[str]:
    """What authgate needs from Envoy, learnt from the article's config."""
    problems = []
    if "timeout" not in body:
        problems.append(f"{where}.timeout: unset means Istio's 600 s: set a few seconds")
    if kind != "envoyExtAuthzHttp":
        return problems
    lower = lambda key: [h.lower() for h in body.get(key) or []]  # noqa: E731
    if "cookie" not in lower("includeRequestHeadersInCheck"):
        problems.append(f"{where}.includeRequestHeadersInCheck: must list cookie (the session)")
    if "set-cookie" not in lower("headersToDownstreamOnDeny"):
        problems.append(f"{where}.headersToDownstreamOnDeny: must list set-cookie (login flow)")
    if "set-cookie" not in lower("headersToDownstreamOnAllow"):
        problems.append(f"{where}.headersToDownstreamOnAllow: must list set-cookie (refreshed sessions)")
    for header in lower("includeRequestHeadersInCheck"):
        if header.startswith(("x-auth-request-", "x-forwarded-user", "x-forwarded-email", "x-forwarded-groups")):
            problems.append(
                f"{where}.includeRequestHeadersInCheck: {header} is client-controlled identity; "
                "authgate reads identity from the session"
            )
    return problems


# === authgate check ============================================================


def authgate_configs(doc: Doc) -> list[tuple[str, str]]:
    if doc.kind != "ConfigMap":
        return []
    data = doc.body.get("data") or {}
    return [(k, v) for k, v in data.items() if k == "authgate.yaml" or k.endswith(".authgate.yaml")]


def prepare_for_check(text: str, workdir: Path) -> tuple[Path, list[str]]:
    """Copy of an embedded authgate.yaml that `authgate check` can load in CI.

    Two rewrites, in the copy only:
    - every `*_file` secret path (/etc/authgate/secrets/... exists only in the
      pod) points at a dummy file with a well-formed value;
    - every upstream URL's host becomes 127.0.0.1 (port kept): authgate
      resolves upstreams when it loads the config, and cluster DNS names such
      as grafana.monitoring.svc.cluster.local do not resolve outside the cluster.
    """
    notes: list[str] = []
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ValueError("authgate.yaml is not a mapping")
    config = copy.deepcopy(config)

    dummy_values = {
        # 32 random bytes, base64url without padding: what `authgate secret` prints.
        "secret_file": base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
        "client_secret_file": "dummy-client-secret-for-authgate-check",
        # A throwaway P-256 key, only ever used for `authgate check` here.
        "signing_key_file": DUMMY_ASSERTION_KEY,
    }

    def rewrite_files(node: Any, dotted: str) -> None:
        if isinstance(node, dict):
            for key, value in list(node.items()):
                path = f"{dotted}.{key}" if dotted else key
                if key.endswith("_file") and isinstance(value, str) and value:
                    if key not in dummy_values:
                        raise ValueError(f"{path}: no dummy content known for this file")
                    target = workdir / path.replace(".", "_")
                    target.write_text(dummy_values[key] + "\n", encoding="utf-8")
                    node[key] = str(target)
                    notes.append(f"{path} -> dummy file")
                else:
                    rewrite_files(value, path)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                rewrite_files(item, f"{dotted}[{i}]")

    rewrite_files(config, "")

    for i, upstream in enumerate(config.get("upstreams") or []):
        if isinstance(upstream, dict) and isinstance(upstream.get("url"), str):
            parts = urlsplit(upstream["url"])
            if parts.hostname and parts.hostname != "127.0.0.1":
                netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
                upstream["url"] = urlunsplit(parts._replace(netloc=netloc))
                notes.append(f"upstreams[{i}].url host -> 127.0.0.1")

    out = workdir / "authgate.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return out, notes


def run_authgate_check(binary: Path, text: str) -> tuple[list[str], str]:
    with tempfile.TemporaryDirectory(prefix="authgate-check-") as tmp:
        try:
            config_path, notes = prepare_for_check(text, Path(tmp))
        except (ValueError, yaml.YAMLError) as err:
            return [str(err)], ""
        try:
            done = subprocess.run(
                [str(binary), "check", "--config", str(config_path)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return [f"could not run {binary}: {err}"], ""
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip().splitlines() or ["(no output)"]
            return [f"authgate check exited {done.returncode}"] + output, ""
        return [], "; ".join(notes)


# === cross-references ==========================================================


def check_grafana_jwt(inv: Inventory) -> list[str]:
    """Every Grafana `[auth.jwt]` section (a ConfigMap's grafana.ini) is on,
    reads its header from an authgate config in the same namespace whose
    `assertion.header` is that header, fetches keys from authgate's
    `/oauth2/jwks.json` on that config's `listen` port, maps email and
    username claims and takes the role from `groups`."""
    import configparser

    problems: list[str] = []
    assertions: dict[str, list[tuple[str, int]]] = {}
    for doc in inv.of_kind("ConfigMap"):
        for _, text in authgate_configs(doc):
            try:
                cfg = yaml.safe_load(text) or {}
            except yaml.YAMLError:
                continue
            header = ((cfg.get("assertion") or {}).get("header") or "").lower()
            listen = str((cfg.get("server") or {}).get("listen") or "0.0.0.0:4180")
            if header:
                port = int(listen.rsplit(":", 1)[-1])
                assertions.setdefault(doc.namespace, []).append((header, port))
    for doc in inv.of_kind("ConfigMap"):
        ini = (doc.body.get("data") or {}).get("grafana.ini")
        if not ini:
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(ini)
        except configparser.Error as err:
            problems.append(f"{doc.label()}: grafana.ini does not parse: {err}")
            continue
        if not parser.has_section("auth.jwt"):
            continue
        jwt = parser["auth.jwt"]
        where = f"{doc.label()} [auth.jwt]"
        if jwt.get("enabled", "false").strip().lower() != "true":
            problems.append(f"{where}: enabled must be true")
        for key in ("header_name", "jwk_set_url", "email_claim", "username_claim", "role_attribute_path"):
            if not jwt.get(key, "").strip():
                problems.append(f"{where}: {key} is missing")
        url = urlsplit(jwt.get("jwk_set_url", ""))
        if url.path != "/oauth2/jwks.json":
            problems.append(f"{where}: jwk_set_url must be authgate's /oauth2/jwks.json")
        if "groups" not in jwt.get("role_attribute_path", ""):
            problems.append(f"{where}: role_attribute_path should map the assertion's groups")
        header = jwt.get("header_name", "").strip().lower()
        ports = [p for h, p in assertions.get(doc.namespace, []) if h == header]
        if not ports:
            problems.append(
                f"{where}: no authgate config in namespace {doc.namespace} sets assertion.header {header!r}"
            )
        elif url.port not in ports:
            problems.append(f"{where}: jwk_set_url port {url.port} is not authgate's listen port {ports}")
    return problems


def pod_templates(inv: Inventory) -> list[tuple[Doc, dict[str, Any]]]:
    out = []
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for d in inv.of_kind(kind):
            out.append((d, d.body.get("spec", {}).get("template", {})))
    return out


def container_ports(template: dict[str, Any]) -> tuple[set[str], set[int]]:
    names, numbers = set(), set()
    for c in template.get("spec", {}).get("containers", []):
        for p in c.get("ports") or []:
            if p.get("name"):
                names.add(p["name"])
            numbers.add(p.get("containerPort"))
    return names, numbers


def check_services(inv: Inventory) -> list[str]:
    problems = []
    for svc in inv.of_kind("Service"):
        selector = svc.body.get("spec", {}).get("selector") or {}
        matches = [
            (d, t)
            for d, t in pod_templates(inv)
            if d.namespace == svc.namespace
            and selector
            and all(t.get("metadata", {}).get("labels", {}).get(k) == v for k, v in selector.items())
        ]
        if not matches:
            problems.append(f"Service {svc.namespace}/{svc.name}: selector {selector} matches no pod template")
            continue
        for port in svc.body["spec"].get("ports", []):
            target = port.get("targetPort", port.get("port"))
            for d, t in matches:
                names, numbers = container_ports(t)
                if isinstance(target, str) and target not in names:
                    problems.append(
                        f"Service {svc.namespace}/{svc.name} port {port.get('name')}: "
                        f"targetPort {target!r} is not a named port of {d.kind} {d.name}"
                    )
    return problems


def check_probes(inv: Inventory) -> list[str]:
    """A probe's named port is looked up in its own container only."""
    problems = []
    for d, t in pod_templates(inv):
        for c in t.get("spec", {}).get("containers", []):
            own = {p.get("name") for p in c.get("ports") or []}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in own:
                    problems.append(
                        f"{d.kind} {d.namespace}/{d.name} container {c['name']}: {probe} port "
                        f"{port!r} is not one of this container's ports"
                    )
    return problems


def duration_seconds(text: str) -> float | None:
    """authgate's duration syntax (`30s`, `1h30m`, `500ms`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(int(n) * units[u] for n, u in parts)


def mounted_authgate_configs(inv: Inventory, namespace: str, template: dict[str, Any]) -> list[dict[str, Any]]:
    """The authgate.yaml files of the ConfigMaps a pod template mounts."""
    names = set()
    for v in template.get("spec", {}).get("volumes") or []:
        if "configMap" in v:
            names.add(v["configMap"].get("name"))
        for src in (v.get("projected") or {}).get("sources") or []:
            if "configMap" in src:
                names.add(src["configMap"].get("name"))
    out = []
    for name in names:
        cm = inv.find("ConfigMap", namespace, name)
        for _, text in authgate_configs(cm) if cm else []:
            try:
                out.append(yaml.safe_load(text) or {})
            except yaml.YAMLError:
                pass
    return out


def check_rollout(inv: Inventory) -> list[str]:
    """An authgate Deployment rolls without dropping a request: new pods
    before old ones go (`maxUnavailable: 0`), a `preStop` sleep so endpoints
    are removed before SIGTERM, and a termination grace period above that
    sleep plus `server.shutdown_grace` (so SIGKILL never cuts the drain)."""
    problems = []
    for d in inv.of_kind("Deployment"):
        template = d.body.get("spec", {}).get("template", {})
        containers = template.get("spec", {}).get("containers", [])
        if not containers or not all(str(c.get("image", "")).startswith("authgate") for c in containers):
            continue  # authgate only as a sidecar of a single-replica app
        where = f"Deployment {d.namespace}/{d.name}"
        strategy = d.body.get("spec", {}).get("strategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate" or (
            (strategy.get("rollingUpdate") or {}).get("maxUnavailable") not in (0, "0", "0%")
        ):
            problems.append(f"{where}: needs a RollingUpdate with maxUnavailable: 0")
        graces = [
            duration_seconds(str((c.get("server") or {}).get("shutdown_grace", "5s")))
            for c in mounted_authgate_configs(inv, d.namespace, template)
        ]
        if any(g is None for g in graces):
            problems.append(f"{where}: server.shutdown_grace is not a duration")
        grace = max([g for g in graces if g is not None] or [5])
        period = template.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        for c in containers:
            pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
            sleep = (pre.get("sleep") or {}).get("seconds")
            if not isinstance(sleep, int) or sleep <= 0:
                problems.append(f"{where} container {c.get('name')}: needs a lifecycle.preStop sleep")
                sleep = 0
            if period <= sleep + grace:
                problems.append(
                    f"{where}: terminationGracePeriodSeconds {period} must exceed preStop "
                    f"{sleep}s + shutdown_grace {grace:g}s"
                )
    return problems


def check_volumes(inv: Inventory) -> list[str]:
    problems = []

    def need(kind: str, namespace: str, name: str, keys: list[str], owner: str) -> None:
        found = inv.find(kind, namespace, name)
        if found is None:
            # Secrets may be created with kubectl instead (see the README).
            if kind == "Secret":
                return
            problems.append(f"{owner}: {kind} {namespace}/{name} is not defined under k8s/")
            return
        data = dict(found.body.get("data") or {})
        data.update(found.body.get("stringData") or {})
        for key in keys:
            if key not in data:
                problems.append(f"{owner}: {kind} {namespace}/{name} has no key {key!r}")

    for d, t in pod_templates(inv):
        owner = f"{d.kind} {d.namespace}/{d.name}"
        for vol in t.get("spec", {}).get("volumes", []):
            sources = []
            if "configMap" in vol:
                sources.append(("ConfigMap", vol["configMap"]))
            if "secret" in vol:
                sources.append(("Secret", {"name": vol["secret"].get("secretName"), **vol["secret"]}))
            for src in (vol.get("projected") or {}).get("sources", []):
                if "configMap" in src:
                    sources.append(("ConfigMap", src["configMap"]))
                if "secret" in src:
                    sources.append(("Secret", src["secret"]))
            for kind, ref in sources:
                keys = [item["key"] for item in ref.get("items") or []]
                need(kind, d.namespace, ref.get("name", ""), keys, owner)
    return problems


def service_ports(inv: Inventory) -> dict[str, set[int]]:
    """FQDN -> Service ports."""
    return {
        f"{s.name}.{s.namespace}.svc.cluster.local": {p.get("port") for p in s.body["spec"].get("ports", [])}
        for s in inv.of_kind("Service")
    }


def check_virtual_services(inv: Inventory) -> list[str]:
    problems = []
    services = service_ports(inv)
    gateways = {f"{g.namespace}/{g.name}" for g in inv.of_kind("Gateway")}
    for vs in inv.of_kind("VirtualService"):
        spec = vs.body.get("spec", {})
        for gw in spec.get("gateways") or []:
            full = gw if "/" in gw or gw == "mesh" else f"{vs.namespace}/{gw}"
            if full != "mesh" and full not in gateways:
                problems.append(f"VirtualService {vs.namespace}/{vs.name}: Gateway {full} is not defined")
        for route in spec.get("http") or []:
            for dest in route.get("route") or []:
                host = dest.get("destination", {}).get("host", "")
                port = dest.get("destination", {}).get("port", {}).get("number")
                if host not in services:
                    problems.append(f"VirtualService {vs.namespace}/{vs.name}: no Service {host}")
                elif port is not None and port not in services[host]:
                    problems.append(f"VirtualService {vs.namespace}/{vs.name}: {host} has no port {port}")
    return problems


def check_providers(inv: Inventory, providers: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    services = service_ports(inv)
    for name, p in providers.items():
        service = str(p.get("service", "")).split("/")[-1]
        if service not in services:
            problems.append(f"extension provider {name}: no Service {service}")
        elif p.get("port") not in services[service]:
            problems.append(f"extension provider {name}: {service} has no port {p.get('port')}")
    for ap in inv.of_kind("AuthorizationPolicy"):
        spec = ap.body.get("spec") or {}
        if spec.get("action") == "CUSTOM":
            wanted = (spec.get("provider") or {}).get("name")
            if wanted not in providers:
                problems.append(
                    f"AuthorizationPolicy {ap.namespace}/{ap.name}: provider {wanted!r} is not in "
                    f"meshConfig extensionProviders {sorted(providers)}"
                )
    return problems


# === main ======================================================================


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k8s-dir", default="k8s", help="manifest directory (relative to the repo root)")
    parser.add_argument(
        "--istio-crds",
        default=DEFAULT_ISTIO_CRDS,
        help="Istio CRD bundle; the default is relative to the repo root",
    )
    parser.add_argument("--kubernetes-version", default=DEFAULT_K8S_VERSION)
    parser.add_argument("--authgate", help="authgate binary: run `authgate check` on embedded configs")
    args = parser.parse_args(argv)

    k8s_dir = REPO_ROOT / args.k8s_dir
    crd_path = Path(args.istio_crds)
    if args.istio_crds == DEFAULT_ISTIO_CRDS:
        crd_path = REPO_ROOT / crd_path
    report = Report()

    try:
        crds = load_istio_crds(crd_path)
    except (OSError, yaml.YAMLError, KeyError) as err:
        print(f"cannot load Istio CRDs from {crd_path}: {err}", file=sys.stderr)
        return 2

    binary = Path(args.authgate) if args.authgate else None
    if binary is not None and not binary.is_absolute() and not binary.exists():
        binary = REPO_ROOT / binary

    inv = load_documents(k8s_dir, report)
    providers: dict[str, dict[str, Any]] = {}
    for doc in inv.docs:
        if doc.group.endswith("istio.io"):
            report.check(doc.label(), validate_istio(doc, crds))
        else:
            report.check(doc.label(), validate_core(doc, args.kubernetes_version))

        if doc.kind == "ConfigMap" and doc.namespace == "istio-system" and "mesh" in (doc.body.get("data") or {}):
            found, problems = mesh_providers(doc)
            providers.update(found)
            report.check(f"{doc.label()} meshConfig extensionProviders", problems, ", ".join(sorted(found)))

        for key, text in authgate_configs(doc):
            what = f"{doc.label()} data.{key}: authgate check"
            if binary is None:
                report.skip(what, "no --authgate binary given")
            elif not binary.exists():
                report.skip(what, f"{binary} does not exist (build it: cargo build --release)")
            else:
                problems, note = run_authgate_check(binary, text)
                report.check(what, problems, note)

    cross = [
        ("Services select pods and name existing ports", check_services(inv)),
        ("probes name their own container's ports", check_probes(inv)),
        ("volumes name defined ConfigMaps/Secrets and keys", check_volumes(inv)),
        ("VirtualServices route to defined Gateways/Services", check_virtual_services(inv)),
        ("CUSTOM policies and extension providers resolve", check_providers(inv, providers)),
        ("Grafana [auth.jwt] reads authgate's signed assertion", check_grafana_jwt(inv)),
        ("authgate Deployments roll and drain without dropping requests", check_rollout(inv)),
    ]
    for what, problems in cross:
        report.check(f"cross-reference: {what}", problems)

    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
