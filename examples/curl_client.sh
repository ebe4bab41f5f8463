#!/bin/sh
# A client in plain HTTP (POSIX sh + curl + jq): no SDK, any language can do the same.
#
#   EXCHANGE_URL=http://127.0.0.1:8080 EXCHANGE_CLIENT_ID=... EXCHANGE_CLIENT_SECRET=... \
#     examples/curl_client.sh publish health.births examples/births.jsonl
#   ... examples/curl_client.sh read health.births 3
#
# publish: one batch of JSON Lines (each line a record value; key = its birth_id);
# read: subscribe from the earliest record, pull pages (committing each) until COUNT granted
# records or an empty page, close.
# Tokens come from the OAuth client-credentials grant; they last minutes, so a long-running
# client asks for a new one when a call answers 401.
set -eu

: "${EXCHANGE_URL:?set EXCHANGE_URL}" "${EXCHANGE_CLIENT_ID:?}" "${EXCHANGE_CLIENT_SECRET:?}"

token() {
    curl -sS --fail-with-body -u "$EXCHANGE_CLIENT_ID:$EXCHANGE_CLIENT_SECRET" \
        -d grant_type=client_credentials "$EXCHANGE_URL/oauth/token" | jq -r .access_token
}

api() {  # api METHOD PATH [JSON-BODY]
    if [ $# -ge 3 ]; then
        curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $TOKEN" \
            -H 'Content-Type: application/json' --data-binary "$3" "$EXCHANGE_URL$2"
    else
        curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $TOKEN" "$EXCHANGE_URL$2"
    fi
}

TOKEN=$(token)
case "${1:-}" in
publish)
    body=$(jq -cs '{records: map({key: .birth_id, value: .})}' "$3")
    api POST "/v1/topics/$2/records" "$body" | jq -c '{schema_id, records: (.offsets | length)}'
    ;;
read)
    sub=$(api POST /v1/subscriptions "{\"topic\": \"$2\", \"start\": \"earliest\"}" | jq -r .id)
    left=${3:-10}
    # A page holds what has arrived so far (up to max): pull until COUNT or an empty page.
    while [ "$left" -gt 0 ]; do
        page=$(api GET "/v1/subscriptions/$sub/records?max=$left&wait_ms=3000")
        n=$(printf '%s\n' "$page" | jq '.records | length')
        [ "$n" -gt 0 ] || break
        printf '%s\n' "$page" | jq -c '.records[] | .value'
        cursor=$(printf '%s\n' "$page" | jq -r .cursor)
        api POST "/v1/subscriptions/$sub/commit" "{\"cursor\": \"$cursor\"}" >/dev/null
        left=$((left - n))
    done
    api DELETE "/v1/subscriptions/$sub" >/dev/null
    ;;
*)
    echo "usage: $0 publish TOPIC FILE.jsonl | read TOPIC [COUNT]" >&2
    exit 2
    ;;
esac
