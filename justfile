# ferry's everyday commands. `just --list` shows them.

# Build every binary (release: what you carry to a source host).
build:
    cargo build --workspace --release

# The test suite (the same command CI runs).
test:
    cargo test --workspace

# Export the sample database into demo-bundle/.
demo:
    cargo run -p ferry-export -- --source samples/identity.db --out demo-bundle --force

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate the sample database.
fixtures:
    rm -f samples/identity.db
    cargo run -p ferry-fixtures -- --users 24 --generation core-v3 --seed 42 --out samples/identity.db --credentials samples/credentials.csv

# Benchmarks (release builds; see bench/README.md). USERS defaults to 1,000,000.
bench-export users="1000000":
    bench/export.py {{users}}
