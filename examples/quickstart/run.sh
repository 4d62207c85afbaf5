#!/usr/bin/env bash
# The README's "Using it" walkthrough as one script, run by test/e2e/quickstart.test.ts exactly as
# written here. Usage: examples/quickstart/run.sh [work dir]   (default: a new temp dir)
# Needs `arcade` on PATH (README: "Install the arcade command"). Stops what it started on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
cp "$here/server.toml" "$here/agent.yaml" .
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
echo "working in $work"

# README.md quotes everything between these two markers, verbatim (the test checks it).
# --- walkthrough ---
# 1. a local CA with certificates for the server, agent build-7, and you (pki/admins/admin.pem)
arcade certs init --out pki --hosts localhost,127.0.0.1 --agents build-7
# 2. the publisher's signing key (keep the secret half offline); server and agents trust the public half
arcade keys generate --name "ACME Release" --email release@acme.example --out keys

# 3. the server (server.toml: mTLS, SQLite in ./data), here in the background
arcade server start --config server.toml > server.log 2>&1 &
# the admin commands below connect with your client certificate and the admin token in data/
export ARCADE_CA=pki/ca.pem ARCADE_CERT=pki/admins/admin.pem ARCADE_KEY=pki/admins/admin.key ARCADE_DATA_DIR=data
arcade server wait --timeout 60

# 4. package, sign, check and publish a plugin
arcade plugin init hello --id acme/hello --version 1.0.0
arcade plugin pack hello -o hello.tgz
arcade plugin sign hello.tgz --key keys/publisher.secret.asc
arcade plugin verify hello.tgz --keyring keys/publisher.asc
arcade plugin publish hello.tgz

# 5. an agent: created by an operator, granted plugins (deny by default), enrolled on its first start
arcade agent create build-7 --labels os=linux > enrollment.token
arcade acl grant labels:os=linux 'acme/*' --versions '^1'
arcade agent start --config agent.yaml > agent.log 2>&1 &

# 6. a job: commands plus plugins at stages before / on_success / on_failure / after
arcade job submit --agent build-7 --run "echo hello from build-7" --plugin acme/hello@1.0.0:before --wait --wait-timeout 120
arcade audit query --action plugin.download
# --- end of walkthrough ---
