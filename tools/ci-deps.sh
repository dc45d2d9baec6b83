#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust: Debian's chromium, for tests/report_html.rs
# (the reject report is checked in a real browser). Safe to run twice. CI calls it before
# `cargo test`; with CI set, the browser test fails instead of skipping when chromium is missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "ci-deps: chromium already installed: $(command -v chromium || command -v chromium-browser)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
chromium --version
