#!/usr/bin/env bash
# The whole journey on the sample database: export, validate, fix by hand, seal,
# load into a store file, and log in as a sample user with the password they always had.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building ferry-export and ferry-import (the first build takes a few minutes)…"
cargo build -p ferry-export -p ferry-import
bin=target/debug
demo=demo
rm -rf "$demo"
mkdir -p "$demo"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say ferry-export --source samples/identity.db --out $demo/bundle
$bin/ferry-export --source samples/identity.db --out $demo/bundle

say ferry-import validate $demo/bundle --schema schemas/scim-user.json
$bin/ferry-import validate $demo/bundle --schema schemas/scim-user.json || true

echo
echo "One problem to fix by hand: ken's e-mail duplicates judy's. Edit the bundle, then"
echo "seal the edit:"
sed -i 's/"Email":"JUDY@EXAMPLE.COM","NormalizedEmail":"JUDY@EXAMPLE.COM"/"Email":"ken@example.com","NormalizedEmail":"KEN@EXAMPLE.COM"/' $demo/bundle/users-00000.ndjson

say ferry-import seal $demo/bundle
$bin/ferry-import seal $demo/bundle

say ferry-import validate $demo/bundle --schema schemas/scim-user.json
$bin/ferry-import validate $demo/bundle --schema schemas/scim-user.json

say ferry-import load $demo/bundle --schema schemas/scim-user.json --target $demo/users.db
$bin/ferry-import load $demo/bundle --schema schemas/scim-user.json --target $demo/users.db

say "echo 'bob-Passw0rd!' | ferry-import login --target $demo/users.db --user BOB"
echo 'bob-Passw0rd!' | $bin/ferry-import login --target $demo/users.db --user BOB

say "echo 'bob-Passw0rd!' | ferry-import login --target $demo/users.db --user bob@example.com"
echo 'bob-Passw0rd!' | $bin/ferry-import login --target $demo/users.db --user bob@example.com
