// Validates rendered chart manifests offline: every object against the Kubernetes (and Prometheus
// Operator) schemas of the npm package kubernetes-models, plus the chart's own promises (non-root,
// read-only root filesystem, dropped capabilities, probes, resources, one replica, dashboard JSON).
//
//   node validate_manifests.cjs TOOLS_DIR MANIFESTS.yaml Kind,Kind,...   (the kinds that must be there)
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const [toolsDir, file, expectedKinds] = process.argv.slice(2);
const req = createRequire(path.join(path.resolve(toolsDir), "package.json"));
const YAML = req("yaml");

function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "monitoring.coreos.com") {
    return req(`@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`)[kind];
  }
  const dir = group === "" ? version : `${group}/${version}`;
  return req(`kubernetes-models/${dir}/${kind}`)[kind];
}

const failures = [];
function check(condition, message) {
  if (!condition) failures.push(message);
}

const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"))
  .map((d) => d.toJS())
  .filter((d) => d !== null && d !== undefined);
const kinds = new Set();
for (const obj of docs) {
  const id = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
  kinds.add(obj.kind);
  let Model;
  try {
    Model = modelFor(obj.apiVersion, obj.kind);
  } catch (e) {
    failures.push(`${id}: no schema for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    failures.push(`${id}: ${e.message}`);
  }
  const labels = (obj.metadata && obj.metadata.labels) || {};
  check(labels["app.kubernetes.io/name"] === "spindle", `${id}: no app.kubernetes.io/name label`);

  if (obj.kind === "Deployment") {
    const spec = obj.spec;
    check(spec.replicas === 1, `${id}: replicas must be 1 (state is in memory)`);
    check(spec.strategy && spec.strategy.type === "Recreate", `${id}: strategy must be Recreate`);
    const pod = spec.template.spec;
    check(pod.securityContext && pod.securityContext.runAsNonRoot === true, `${id}: pod not runAsNonRoot`);
    check(pod.automountServiceAccountToken === false, `${id}: service account token mounted`);
    for (const c of pod.containers) {
      const sc = c.securityContext || {};
      check(sc.readOnlyRootFilesystem === true, `${id}/${c.name}: root filesystem writable`);
      check(sc.allowPrivilegeEscalation === false, `${id}/${c.name}: privilege escalation allowed`);
      check(sc.capabilities && sc.capabilities.drop && sc.capabilities.drop.includes("ALL"),
            `${id}/${c.name}: capabilities not dropped`);
      for (const probe of ["livenessProbe", "readinessProbe"]) {
        const p = c[probe];
        check(p && (p.grpc || p.exec), `${id}/${c.name}: no gRPC or exec ${probe}`);
      }
      check(c.resources && c.resources.requests && c.resources.limits, `${id}/${c.name}: no resources`);
      const ports = (c.ports || []).map((p) => p.name).sort().join(",");
      check(ports === "grpc,metrics", `${id}/${c.name}: ports ${ports}`);
    }
  }
  if (obj.kind === "Service") {
    const ports = obj.spec.ports.map((p) => p.name).sort().join(",");
    check(ports === "grpc,metrics", `${id}: ports ${ports}`);
  }
  if (obj.kind === "ConfigMap" && labels.grafana_dashboard !== undefined) {
    check(labels.grafana_dashboard === "1", `${id}: grafana_dashboard label is not "1"`);
    for (const [key, value] of Object.entries(obj.data)) {
      try {
        const board = JSON.parse(value);
        check(board.panels && board.panels.length > 10, `${id}: ${key} has few panels`);
      } catch (e) {
        failures.push(`${id}: ${key} is not JSON: ${e.message}`);
      }
    }
  }
  if (obj.kind === "Pod") {
    const hook = (obj.metadata.annotations || {})["helm.sh/hook"];
    check(hook === "test", `${id}: a Pod that is not a helm test hook`);
  }
  if (obj.kind === "PrometheusRule") {
    const alerts = obj.spec.groups.flatMap((g) => g.rules.map((r) => r.alert));
    check(alerts.includes("SpindleExecutorLag"), `${id}: alerts missing: ${alerts}`);
  }
}
for (const kind of (expectedKinds || "").split(",").filter(Boolean)) {
  check(kinds.has(kind), `no ${kind} rendered (have: ${[...kinds].join(", ")})`);
}
if (failures.length) {
  console.log(failures.map((f) => `  ${f}`).join("\n"));
  process.exit(1);
}
console.log(`  ${docs.length} objects valid: ${[...kinds].sort().join(", ")}`);
