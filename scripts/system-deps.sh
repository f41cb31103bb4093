#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing and we may install them:
# Go and golang.org/x/mod for the interop test, Chromium and CJK fonts for the browser tests, the fonts the
# PDF certificates embed and poppler-utils, which renders them to images in the tests.
# Without root or apt-get it only says what is missing; the tests that need it then fail under CI=true.
# With --runtime, only what a served registry needs: the fonts its PDF certificates embed (`make run`).
set -euo pipefail
need=()
if [ "${1:-}" = "--runtime" ]; then
  [ -f /usr/share/fonts/truetype/arphic/uming.ttc ] || need+=(fonts-arphic-uming)
  [ -f /usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf ] || need+=(fonts-liberation)
else
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/golang.org/x/mod ] || need+=(golang-golang-x-mod-dev)
# The browser tests drive Debian's Chromium (Playwright downloads no browser); the CJK fonts make the
# Chinese pages legible in their screenshots.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
# The PDF certificates embed their fonts, and ReportLab embeds only TrueType outlines (Noto CJK's are CFF):
# AR PL UMing for Chinese, Liberation Serif and Mono for Latin text (registry/pages/pdf.py).
[ -f /usr/share/fonts/truetype/arphic/uming.ttc ] || need+=(fonts-arphic-uming)
[ -f /usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf ] || need+=(fonts-liberation)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "system-deps: missing Debian packages: ${need[*]} (install them: the tests, or the PDF certificates, need them)" >&2
fi
