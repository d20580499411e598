#!/usr/bin/env bash
# Generates a private CA and the certificates of a Baton cluster with openssl (ECDSA P-256):
#
#   ca.crt ca.key                 the CA (keep ca.key offline in real use)
#   member-<id>.crt member-<id>.key   one per member: SAN URI baton://member/<id> (the member
#                                 id it speaks for on the peer port), DNS baton<id> and
#                                 localhost, IP 127.0.0.1 and the compose address 172.29.74.1<id>,
#                                 plus --host names; serverAuth + clientAuth
#   client.crt client.key         a client certificate (CN client, clientAuth; names no member,
#                                 so it is refused on the peer port)
#
#   scripts/gen-certs.sh [--dir certs] [--members 3] [--host NAME_OR_IP]... [--days 825]
#                        [--readable]
#
#   --readable   keys readable by every user (0644): for the compose example, whose server
#                runs as uid 65532 in the container; never for real keys
#
# An existing CA in --dir is reused, so more members or a renewed certificate can be added
# later with the same trust (batond reloads its files on SIGHUP).
set -euo pipefail

DIR=certs
MEMBERS=3
DAYS=825
READABLE=0
HOSTS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) DIR="${2:?--dir needs a value}"; shift 2 ;;
    --members) MEMBERS="${2:?--members needs a value}"; shift 2 ;;
    --host) HOSTS+=("${2:?--host needs a value}"); shift 2 ;;
    --days) DAYS="${2:?--days needs a value}"; shift 2 ;;
    --readable) READABLE=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gen-certs: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$MEMBERS" =~ ^[1-9][0-9]*$ ]] || { echo "gen-certs: --members must be a positive number" >&2; exit 2; }
command -v openssl >/dev/null 2>&1 || { echo "gen-certs: openssl not found" >&2; exit 1; }

mkdir -p "$DIR"
cd "$DIR"
umask 077
log() { echo "[gen-certs] $*" >&2; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -f ca.key || ! -f ca.crt ]]; then
  key ca.key
  openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -subj "/CN=Baton CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
  log "made the CA: $DIR/ca.crt"
else
  log "reusing the CA in $DIR"
fi

# issue NAME CN SAN EKU
issue() {
  local name="$1" cn="$2" san="$3" eku="$4"
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n' \
    "$eku" "${san:+subjectAltName=$san}" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$DAYS" -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

extra=""
for h in "${HOSTS[@]+"${HOSTS[@]}"}"; do
  if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then extra+=",IP:$h"; else extra+=",DNS:$h"; fi
done
for id in $(seq 1 "$MEMBERS"); do
  compose=""
  [[ $id -le 9 ]] && compose=",IP:172.29.74.1$id"
  issue "member-$id" "member-$id" \
    "URI:baton://member/$id,DNS:baton$id,DNS:localhost,IP:127.0.0.1$compose$extra" \
    "serverAuth,clientAuth"
  log "member $id: $DIR/member-$id.crt"
done
issue client client "" "clientAuth"
log "client: $DIR/client.crt"
rm -f ca.srl
chmod 0644 ./*.crt
if [[ $READABLE -eq 1 ]]; then
  chmod 0644 ./member-*.key client.key
fi
