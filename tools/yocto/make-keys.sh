#!/usr/bin/env bash
# Makes a development signing setup for RAUC bundles in yocto/keys/ (git-ignored):
#   ca.cert.pem              the keyring installed on the box (rauc-conf)
#   development-1.key.pem    signs bundles (undertone-bundle), with
#   development-1.cert.pem   its certificate, issued by the CA above.
# A box only installs bundles signed under the CA it was flashed with: keep these files (or
# your production ones, via UNDERTONE_RAUC_KEYS_DIR) for as long as the boxes live.
#
#   tools/yocto/make-keys.sh [DIR]     # DIR defaults to yocto/keys; refuses to overwrite
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/yocto/keys}
# Ten years: boxes in venues are not re-keyed often; production keys are the owner's call.
DAYS=3650

if [ -e "$dir/ca.cert.pem" ]; then
  echo "make-keys: $dir/ca.cert.pem exists; not overwriting it (boxes flashed with it would reject new bundles). Remove the folder first to start over." >&2
  exit 1
fi
command -v openssl >/dev/null || { echo "make-keys: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"

openssl req -x509 -newkey rsa:4096 -nodes -days "$DAYS" -sha256 \
  -keyout ca.key.pem -out ca.cert.pem -subj "/O=undertone/CN=undertone development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:4096 -nodes -sha256 \
  -keyout development-1.key.pem -out development-1.csr.pem \
  -subj "/O=undertone/CN=undertone development-1" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' > ext.cnf
openssl x509 -req -in development-1.csr.pem -CA ca.cert.pem -CAkey ca.key.pem -CAcreateserial \
  -days "$DAYS" -sha256 -extfile ext.cnf -out development-1.cert.pem 2>/dev/null
rm -f development-1.csr.pem ext.cnf ca.cert.srl
chmod 600 ca.key.pem development-1.key.pem
openssl verify -CAfile ca.cert.pem development-1.cert.pem >/dev/null
echo "make-keys: wrote $dir (ca.cert.pem, development-1.key.pem, development-1.cert.pem; ca.key.pem: keep offline)"
