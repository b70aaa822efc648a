#!/usr/bin/env bash
# Makes a test PKI in DIR with the openssl CLI (Debian's; `make` installs
# it if missing), all keys EC P-256, all node certificates (but
# cluster.pem) for 127.0.0.1, ::1 and localhost, all with both serverAuth
# and clientAuth (a node's certificate is its client certificate too):
#
#   ca.pem ca.key                the cluster's CA
#   node.pem node.key            a node certificate from it (30 days)
#   node2.pem node2.key          another one from it, another key (rotation)
#   expired.pem expired.key      from it, valid 2020-01-01 to 2020-01-02 only
#   other-ca.pem                 another CA
#   both-ca.pem                  ca.pem and other-ca.pem (a bundle)
#   other.pem other.key          a node certificate from the other CA
#   wrongname.pem wrongname.key  from the CA, for elsewhere.example only
#   cluster.pem cluster.key      from the CA, for the DNS name groupcache-peers
#                                only (no IP address: tls_server_name)
#
#   bash tests/tls/make-certs.sh DIR
set -euo pipefail
dir="$1"
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "make-certs.sh: needs the openssl CLI" >&2; exit 1; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 30 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}

ext() { # SANs
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$1"
}

node() { # name ca sans
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -sha256 -days 30 \
    -extfile <(ext "$3") -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}

LOOPBACK="IP:127.0.0.1,IP:::1,DNS:localhost"
ca ca "groupcache test CA"
ca other-ca "another CA"
cat ca.pem other-ca.pem > both-ca.pem
node node ca "$LOOPBACK"
node node2 ca "$LOOPBACK"
node other other-ca "$LOOPBACK"
node wrongname ca "DNS:elsewhere.example"
node cluster ca "DNS:groupcache-peers"

# A certificate from the CA whose validity ended long ago: `openssl x509`
# (3.0) cannot backdate, `openssl ca` can.
key expired.key
openssl req -new -key expired.key -subj "/CN=expired" -out expired.csr 2>/dev/null
mkdir -p ca-db
: > ca-db/index.txt
echo 1000 > ca-db/serial
cat > ca-db/ca.cnf <<CNF
[ca]
default_ca = CA_default
[CA_default]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
CNF
openssl ca -batch -notext -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
  -startdate 20200101000000Z -enddate 20200102000000Z -extfile <(ext "$LOOPBACK") \
  -out expired.pem 2>/dev/null
rm -rf expired.csr ca-db ./*.srl
