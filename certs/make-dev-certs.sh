#!/usr/bin/env bash
# make-dev-certs.sh [OUTDIR]: a throwaway PKI for developing and testing replenish's
# mutual TLS (see certs/README.md). OUTDIR defaults to certs/dev next to this script.
#
# Makes, all ECDSA P-256 / SHA-256, valid 825 days:
#   ca.pem, ca.key                 the dev CA ("replenish dev CA")
#   server.pem, server.key         the switch: localhost, 127.0.0.1 and ::1 (SAN)
#   client.pem, client.key         an acquirer: CN acquirer-bank-a, signed by the dev CA
#   rogue-ca.pem, rogue-ca.key     an unrelated CA ("replenish rogue CA")
#   rogue-client.pem, rogue-client.key
#                                  CN acquirer-bank-a again, but signed by the rogue CA:
#                                  a mutual-TLS listener must refuse it
#
# Idempotent: a file that exists, verifies against its CA and is valid for at least
# another day is kept; anything missing, broken or expiring is made again (and a new
# CA means new certificates under it).
set -euo pipefail

if ! command -v openssl >/dev/null 2>&1; then
    echo "make-dev-certs.sh: openssl not found on PATH; install it first" \
        "(Debian/Ubuntu: apt-get install -y openssl)" >&2
    exit 127
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/dev}"
days=825
umask 077
mkdir -p "$out"
cd "$out"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

new_key() { # FILE
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# A certificate is current when it parses and stays valid for at least a day.
current() { # CERT
    [[ -s "$1" ]] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1
}

# The key belongs to the certificate.
matches() { # KEY CERT
    [[ -s "$1" ]] &&
        [[ "$(openssl pkey -in "$1" -pubout 2>/dev/null)" == \
            "$(openssl x509 -in "$2" -noout -pubkey 2>/dev/null)" ]]
}

# NAME CN: a self-signed CA, unless a current one is already there. Sets made_ca to
# "yes" when it made one, so that the certificates under it get made again.
made_ca=""
make_ca() {
    local name="$1" cn="$2"
    made_ca=""
    if current "$name.pem" && matches "$name.key" "$name.pem"; then
        return 0
    fi
    new_key "$name.key"
    openssl req -x509 -new -key "$name.key" -sha256 -days "$days" -subj "/CN=$cn" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$name.pem"
    echo "made $out/$name.pem"
    made_ca=yes
}

# NAME CA CN EXTENSIONS FORCE: a leaf certificate signed by CA, unless a current one
# that verifies against CA is already there and FORCE is empty.
make_leaf() {
    local name="$1" ca="$2" cn="$3" extensions="$4" force="$5"
    if [[ -z "$force" ]] && current "$name.pem" && matches "$name.key" "$name.pem" &&
        openssl verify -CAfile "$ca.pem" "$name.pem" >/dev/null 2>&1; then
        return 0
    fi
    new_key "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$work/$name.csr"
    printf '%s\n' "$extensions" >"$work/$name.ext"
    openssl x509 -req -in "$work/$name.csr" -CA "$ca.pem" -CAkey "$ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$days" \
        -extfile "$work/$name.ext" -out "$name.pem" 2>/dev/null
    echo "made $out/$name.pem"
}

leaf_common="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"
server_ext="$leaf_common
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
client_ext="$leaf_common
extendedKeyUsage=clientAuth"

make_ca ca "replenish dev CA"
make_leaf server ca localhost "$server_ext" "$made_ca"
make_leaf client ca acquirer-bank-a "$client_ext" "$made_ca"
make_ca rogue-ca "replenish rogue CA"
make_leaf rogue-client rogue-ca acquirer-bank-a "$client_ext" "$made_ca"
chmod 600 ./*.key
echo "dev certificates in $out (for development and tests only)"
