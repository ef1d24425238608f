#!/bin/sh
# Certificates for the broker's TLS listener (docs/security.md#mqtt-broker-and-device-credentials).
#
#   deploy/make-certs.sh -o DIR -n NAME [-n NAME...] [-i IP...] [-c CLIENT...] [-f] [-d DAYS]
#
#   -o DIR     where to write (default ./certs); ebshed.conf expects ca.crt,
#              server.crt and server.key in BROKER_DIR/certs
#   -n NAME    a DNS name devices use to reach the broker (repeat it)
#   -i IP      an IP address devices use to reach the broker (repeat it)
#   -c CLIENT  also a client certificate with this common name, e.g. demo-1.board.b1
#              (repeat it; for `--require-certificate`); CLIENT.crt and CLIENT.key
#   -f         make a new server certificate (and the named client ones) even if
#              they exist: rotation. The CA is kept; to replace the CA, move DIR away.
#   -d DAYS    validity of the server and client certificates (default 825)
#
# Files: ca.crt (give it to every device and to the controller's mqtt.ca_file),
# ca.key (keep it offline if you can: whoever has it can make certificates the
# devices trust), server.crt and server.key (the broker's; the key readable by
# the mosquitto user only). Existing files are kept unless -f is given, so a
# re-run adds client certificates without touching the rest.
#
# Example, a shed box reached as shed-1.local and 192.168.10.2:
#   deploy/make-certs.sh -o /etc/mosquitto/ebshed/certs -n shed-1.local -i 192.168.10.2
#   chown -R root:mosquitto /etc/mosquitto/ebshed/certs && chmod 0640 /etc/mosquitto/ebshed/certs/*.key
set -eu

out=./certs
days=825
force=0
names=""
ips=""
clients=""
while getopts "o:n:i:c:d:fh" opt; do
    case "$opt" in
        o) out=$OPTARG ;;
        n) names="$names $OPTARG" ;;
        i) ips="$ips $OPTARG" ;;
        c) clients="$clients $OPTARG" ;;
        d) days=$OPTARG ;;
        f) force=1 ;;
        h) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "usage: $0 -o DIR -n NAME [-i IP] [-c CLIENT] [-f] [-d DAYS]" >&2; exit 2 ;;
    esac
done
if [ -z "$names$ips" ]; then
    echo "error: name the broker with -n NAME and/or -i IP (devices check it)" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "error: openssl not found" >&2; exit 2; }

umask 077
if [ ! -d "$out" ]; then mkdir -p "$out" && chmod 0755 "$out"; fi
cd "$out"

if [ ! -f ca.key ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.crt -days 3650 -subj "/CN=ebshed broker CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
    echo "made ca.crt (new CA: give it to every device)"
fi

sign() {  # sign NAME EXTFILE: NAME.key and NAME.crt, signed by the CA
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "/CN=$3" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out "$1.crt" -days "$days" -sha256 -extfile "$2" 2>/dev/null
    rm -f "$1.csr" "$2"
}

if [ "$force" = 1 ] || [ ! -f server.crt ]; then
    san=""
    for n in $names; do san="$san,DNS:$n"; done
    for i in $ips; do san="$san,IP:$i"; done
    ext=$(mktemp ./ext.XXXXXX)
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
        "${san#,}" > "$ext"
    first=$(echo $names $ips | cut -d' ' -f1)
    sign server "$ext" "$first"
    echo "made server.crt for ${san#,}"
fi

for c in $clients; do
    if [ "$force" = 1 ] || [ ! -f "$c.crt" ]; then
        ext=$(mktemp ./ext.XXXXXX)
        printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > "$ext"
        sign "$c" "$ext" "$c"
        echo "made $c.crt"
    fi
done
chmod 0644 ./*.crt
