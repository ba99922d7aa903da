#!/usr/bin/env bash
# The Helm chart: `helm lint --strict` and `helm template` with default values and with every
# optional feature on (helm/spindle/ci/all-features-values.yaml), the rendered manifests validated
# offline against the Kubernetes schemas (tools/ npm kubernetes-models), and value combinations
# that cannot work refused with a message.
#   tests/deploy/chart_test.sh [REPO_ROOT]
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
helm="$root/tools/bin/helm/helm"
chart="$root/helm/spindle"
validate="$root/tests/deploy/validate_manifests.cjs"
if [ ! -x "$helm" ] || [ ! -d "$root/tools/node_modules/kubernetes-models" ]; then
  echo "FAIL helm or kubernetes-models missing: run scripts/install-deps"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
run() {  # run NAME COMMAND...: one check
  local name=$1
  shift
  if out=$("$@" 2>&1); then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    echo "$out" | sed 's/^/  /' | tail -40
    failed=$((failed + 1))
  fi
}
refused() {  # refused NAME MESSAGE ARGS...: helm template must fail and say MESSAGE
  local name=$1 message=$2
  shift 2
  local out
  if out=$("$helm" template t "$chart" "$@" 2>&1); then
    echo "  rendered, but should have been refused"
    return 1
  fi
  if ! grep -qF -- "$message" <<<"$out"; then
    echo "  refused without saying '$message':"
    echo "$out"
    return 1
  fi
}

all="$chart/ci/all-features-values.yaml"
run lint_default "$helm" lint --strict "$chart"
run lint_all_features "$helm" lint --strict "$chart" -f "$all"
run template_default sh -c "'$helm' template t '$chart' --namespace spindle > '$work/default.yaml'"
run template_all_features sh -c "'$helm' template t '$chart' --namespace spindle -f '$all' > '$work/all.yaml'"
run validate_default node "$validate" "$root/tools" "$work/default.yaml" \
  ServiceAccount,ConfigMap,Secret,Deployment,Service,PodDisruptionBudget,NetworkPolicy,Pod
run validate_all_features node "$validate" "$root/tools" "$work/all.yaml" \
  ServiceAccount,ConfigMap,Secret,Deployment,Service,PodDisruptionBudget,NetworkPolicy,Pod,ServiceMonitor,PodMonitor,PrometheusRule
run plaintext_probes_are_grpc grep -q "grpc:" "$work/default.yaml"
run tls_probes_run_spindlectl grep -q -- "--tls-server-name=spindle.example.internal" "$work/all.yaml"
run generated_admin_token grep -q "admin-token:" "$work/default.yaml"
run refuses_tls_without_secret refused tls_secret "tls.enabled needs tls.existingSecret" --set tls.enabled=true
run refuses_open_port refused open_port "neither auth nor TLS" --set auth.enabled=false
run allows_insecure_when_asked "$helm" template t "$chart" --set auth.enabled=false --set config.insecure=true
run schema_refuses_bad_log_level refused log_level "logLevel" --set config.logLevel=loud
run schema_refuses_bad_role refused role "role" --set "auth.tokens[0].name=a" \
  --set "auth.tokens[0].role=root" --set "auth.tokens[0].token=0123456789abcdef0"
run schema_refuses_short_token refused short "token" --set "auth.tokens[0].name=a" \
  --set "auth.tokens[0].role=admin" --set "auth.tokens[0].token=short"
run schema_refuses_unknown_value refused unknown "Additional property typo is not allowed" --set service.typo=1
run spawn_policy_off_by_default sh -c "! grep -q -- '--spawn-policy' '$work/default.yaml'"
run spawn_policy_flag grep -q -- "--spawn-policy=/etc/spindle/spawn-policy/policy.json" "$work/all.yaml"
run spawn_policy_configmap grep -q "name: t-spindle-spawn-policy" "$work/all.yaml"
# The rendered policy is the JSON spindled reads: extracted from the ConfigMap, it must parse and
# hold the values (numbers as integers, not 4.294967296e+09).
run spawn_policy_is_json /usr/bin/python3 -c "
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open('$work/all.yaml')) if d]
cm = [d for d in docs if d['kind'] == 'ConfigMap' and d['metadata']['name'].endswith('-spawn-policy')][0]
policy = json.loads(cm['data']['policy.json'])
assert policy['limits']['max']['address_space_bytes'] == 4294967296, policy
assert '4294967296' in cm['data']['policy.json'], cm['data']['policy.json']
assert policy['identities']['overrides'] == {'token:ci': 8}, policy
"
run schema_refuses_bad_spawn_policy refused spawn_policy "alow" --set "spawnPolicy.executables.alow[0]=/bin/"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
