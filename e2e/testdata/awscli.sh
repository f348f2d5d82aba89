#!/usr/bin/env bash
# The AWS CLI against a Stratus server, end to end, as a user drives it:
# create a function from a zip, wait until it is active, invoke it with
# its log's tail, update its code, publish versions, split an alias
# between two of them (200 calls through boto3, the split checked within
# statistical bounds), throttle it with reserved concurrency 0, configure
# its asynchronous invocations and its function URL, tag it, and delete
# it. Every step checks the JSON the CLI prints.
#
# Environment: ENDPOINT (the server's URL), AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY (a key from `stratus keys create`),
# AWS_DEFAULT_REGION, WORK (a scratch folder), TOPIC (a Stratus topic
# that exists), and optionally AWS (the aws command).
set -euo pipefail

: "${ENDPOINT:?}" "${WORK:?}" "${TOPIC:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}" "${AWS_DEFAULT_REGION:?}"
# The interpreter itself, not a version manager's shim, and the CLI as
# its module when it has it: each call starts faster.
PY=$(python3 -c 'import sys; print(sys.executable)')
if [ -n "${AWS:-}" ]; then
	read -r -a AWS_CMD <<<"$AWS"
elif "$PY" -c 'import awscli' 2>/dev/null; then
	AWS_CMD=("$PY" -m awscli) # the AWS CLI v1 (v2 is no Python module)
else
	AWS_CMD=(aws)
fi
# AWS CLI v2 reads --payload as base64 unless told otherwise; v1 has no
# such option.
BLOB=()
if [ "${AWS_CMD[0]}" != "$PY" ] && "${AWS_CMD[@]}" --version 2>&1 | grep -q '^aws-cli/2'; then
	BLOB=(--cli-binary-format raw-in-base64-out)
fi
# No retries: a throttled call must show its error, not be retried away.
export AWS_MAX_ATTEMPTS=1 AWS_RETRY_MODE=standard AWS_PAGER="" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
FN=cli-e2e
cd "$WORK"

step() { printf '== %s (at %ds)\n' "$*" "$SECONDS"; }
lambda() { "${AWS_CMD[@]}" lambda --endpoint-url "$ENDPOINT" --output json "$@"; }

# check FILE EXPR: EXPR, a Python expression over d (FILE's JSON), holds.
# The CLI prints nothing for an empty answer: that is {}.
check() {
	"$PY" - "$1" "$2" <<'EOF'
import base64, json, sys
text = open(sys.argv[1]).read()
d = json.loads(text) if text.strip() else {}
if not eval(sys.argv[2]):
    sys.exit("check failed: %s\non: %s" % (sys.argv[2], json.dumps(d, indent=1)))
EOF
}

# fails TYPE CMD...: CMD fails with the Lambda error TYPE.
fails() {
	local typ=$1
	shift
	if "$@" >out.json 2>err.txt; then
		echo "expected $typ from: $*; it succeeded: $(cat out.json)" >&2
		exit 1
	fi
	if ! grep -q "($typ)" err.txt; then
		echo "expected $typ from: $*; got: $(cat err.txt)" >&2
		exit 1
	fi
}

# Two versions of a Python handler, zipped.
for v in v1 v2; do
	mkdir -p "code-$v"
	cat >"code-$v/app.py" <<EOF
def handler(event, context):
    print("hello from $v")
    return {"code": "$v", "version": context.function_version}
EOF
	(cd "code-$v" && "$PY" -m zipfile -c "../$v.zip" app.py)
done

step create-function
lambda create-function --function-name "$FN" --runtime python3.12 --handler app.handler \
	--role arn:aws:iam::123456789012:role/stratus-e2e --zip-file fileb://v1.zip \
	--memory-size 256 --timeout 10 --description "made by the AWS CLI" --tags team=blue >created.json
check created.json 'd["FunctionName"] == "'$FN'" and d["Runtime"] == "python3.12" and d["Handler"] == "app.handler" and d["MemorySize"] == 256 and d["Timeout"] == 10 and d["Version"] == "$LATEST" and d["PackageType"] == "Zip" and len(base64.b64decode(d["CodeSha256"])) == 32'
ARN=$("$PY" -c 'import json; print(json.load(open("created.json"))["FunctionArn"])')
fails ResourceConflictException lambda create-function --function-name "$FN" --runtime python3.12 --handler app.handler \
	--role arn:aws:iam::123456789012:role/stratus-e2e --zip-file fileb://v1.zip

step wait function-active-v2
lambda wait function-active-v2 --function-name "$FN"
lambda get-function --function-name "$FN" >got.json
check got.json 'd["Configuration"]["State"] == "Active" and d["Configuration"]["LastUpdateStatus"] == "Successful" and d["Tags"] == {"team": "blue"} and d["Configuration"]["Description"] == "made by the AWS CLI"'

step invoke with --log-type Tail
lambda invoke --function-name "$FN" --log-type Tail "${BLOB[@]}" --payload '{"n": 1}' result.json >invoked.json
check invoked.json 'd["StatusCode"] == 200 and d["ExecutedVersion"] == "$LATEST" and "hello from v1" in base64.b64decode(d["LogResult"]).decode()'
check result.json 'd == {"code": "v1", "version": "$LATEST"}'

step publish-version 1
lambda publish-version --function-name "$FN" --description first >v1.json
check v1.json 'd["Version"] == "1" and d["FunctionArn"].endswith(":'$FN':1") and d["Description"] == "first"'

step update-function-code
lambda update-function-code --function-name "$FN" --zip-file fileb://v2.zip >updated.json
check updated.json 'd["CodeSha256"] != '"$("$PY" -c 'import json; print(repr(json.load(open("created.json"))["CodeSha256"]))')"' and d["Version"] == "$LATEST"'
lambda wait function-updated-v2 --function-name "$FN"

step publish-version 2
lambda publish-version --function-name "$FN" >v2.json
check v2.json 'd["Version"] == "2"'
lambda list-versions-by-function --function-name "$FN" >versions.json
check versions.json '[v["Version"] for v in d["Versions"]] == ["$LATEST", "1", "2"]'

step create-alias with AdditionalVersionWeights
lambda create-alias --function-name "$FN" --name live --function-version 1 \
	--routing-config '{"AdditionalVersionWeights": {"2": 0.3}}' >alias.json
check alias.json 'd["Name"] == "live" and d["FunctionVersion"] == "1" and d["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.3} and d["AliasArn"].endswith(":'$FN':live")'

step 200 invocations of the alias through boto3
"$PY" - "$ENDPOINT" "$FN:live" <<'EOF'
import collections, json, math, sys
import boto3
from botocore.config import Config
client = boto3.client("lambda", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1, "mode": "standard"}))
n, p = 200, 0.3
ran = collections.Counter()
for _ in range(n):
    r = client.invoke(FunctionName=sys.argv[2], Payload=b"{}")
    body = json.loads(r["Payload"].read())
    v = r["ExecutedVersion"]
    want = {"1": "v1", "2": "v2"}.get(v)
    if r["StatusCode"] != 200 or body != {"code": want, "version": v}:
        sys.exit("invocation ran %s and answered %s" % (v, body))
    ran[v] += 1
# Version 2 takes a binomial(200, 0.3) share: within 4.5 standard
# deviations (fails by chance about once in 150,000 runs).
sd = math.sqrt(n * p * (1 - p))
print("executed versions:", dict(ran), "bounds: %.0f to %.0f" % (n * p - 4.5 * sd, n * p + 4.5 * sd))
if set(ran) - {"1", "2"} or abs(ran["2"] - n * p) > 4.5 * sd:
    sys.exit("the split is off: %s" % dict(ran))
EOF

step put-function-concurrency 0 throttles
lambda put-function-concurrency --function-name "$FN" --reserved-concurrent-executions 0 >conc.json
check conc.json 'd == {"ReservedConcurrentExecutions": 0}'
lambda get-function-concurrency --function-name "$FN" >conc.json
check conc.json 'd == {"ReservedConcurrentExecutions": 0}'
fails TooManyRequestsException lambda invoke --function-name "$FN" "${BLOB[@]}" --payload '{}' result.json
fails TooManyRequestsException lambda invoke --function-name "$FN:live" "${BLOB[@]}" --payload '{}' result.json
lambda delete-function-concurrency --function-name "$FN"
lambda get-function-concurrency --function-name "$FN" >conc.json
check conc.json 'd == {}'
lambda invoke --function-name "$FN" "${BLOB[@]}" --payload '{}' result.json >invoked.json
check invoked.json 'd["StatusCode"] == 200'

step put-function-event-invoke-config
lambda put-function-event-invoke-config --function-name "$FN" --maximum-retry-attempts 1 --maximum-event-age-in-seconds 300 \
	--destination-config '{"OnFailure": {"Destination": "arn:aws:sns:'"$AWS_DEFAULT_REGION"':123456789012:'"$TOPIC"'"}}' >eic.json
check eic.json 'd["MaximumRetryAttempts"] == 1 and d["MaximumEventAgeInSeconds"] == 300 and d["DestinationConfig"]["OnFailure"]["Destination"].endswith(":'"$TOPIC"'") and d["FunctionArn"].endswith(":'$FN':$LATEST")'
lambda update-function-event-invoke-config --function-name "$FN" --maximum-retry-attempts 0 >eic.json
lambda get-function-event-invoke-config --function-name "$FN" >eic.json
check eic.json 'd["MaximumRetryAttempts"] == 0 and d["MaximumEventAgeInSeconds"] == 300 and d["DestinationConfig"]["OnFailure"]["Destination"].startswith("arn:aws:sns:") and (d["LastModified"] > 1.7e9 if isinstance(d["LastModified"], (int, float)) else d["LastModified"][:2] == "20")'
lambda delete-function-event-invoke-config --function-name "$FN"
fails ResourceNotFoundException lambda get-function-event-invoke-config --function-name "$FN"

step create-function-url-config
lambda create-function-url-config --function-name "$FN" --auth-type NONE >url.json
check url.json 'd["FunctionUrl"] == "'"$ENDPOINT"'/fn/'$FN'/" and d["AuthType"] == "NONE" and d["CreationTime"][:2] == "20"'
URL=$("$PY" -c 'import json; print(json.load(open("url.json"))["FunctionUrl"])')
code=$(curl -s -o page.json -w '%{http_code}' "$URL")
[ "$code" = 200 ] || { echo "GET $URL without credentials: $code $(cat page.json)" >&2; exit 1; }
check page.json 'd["code"] == "v2"'
lambda update-function-url-config --function-name "$FN" --auth-type AWS_IAM >url.json
check url.json 'd["AuthType"] == "AWS_IAM" and "LastModifiedTime" in d'
code=$(curl -s -o page.json -w '%{http_code}' "$URL")
[ "$code" = 403 ] || { echo "GET $URL of an AWS_IAM URL without a signature: $code $(cat page.json)" >&2; exit 1; }
lambda delete-function-url-config --function-name "$FN"
fails ResourceNotFoundException lambda get-function-url-config --function-name "$FN"

step tag-resource and list-tags
lambda tag-resource --resource "$ARN" --tags env=prod,owner=ops
lambda list-tags --resource "$ARN" >tags.json
check tags.json 'd["Tags"] == {"team": "blue", "env": "prod", "owner": "ops"}'
lambda untag-resource --resource "$ARN" --tag-keys team owner
lambda list-tags --resource "$ARN" >tags.json
check tags.json 'd["Tags"] == {"env": "prod"}'

step get-account-settings
lambda get-account-settings >account.json
check account.json 'd["AccountUsage"]["FunctionCount"] >= 1 and d["AccountUsage"]["TotalCodeSize"] > 0 and d["AccountLimit"]["ConcurrentExecutions"] >= 1 and d["AccountLimit"]["CodeSizeZipped"] > 0'

step an operation Stratus does not support
fails UnsupportedOperationException lambda list-layers
grep -q "ListLayers is not supported by Stratus" err.txt

step delete-function
lambda delete-function --function-name "$FN" >deleted.json
check deleted.json 'd.get("StatusCode", 204) in (200, 204)'
fails ResourceNotFoundException lambda get-function --function-name "$FN"
echo "== ok (${SECONDS}s)"
