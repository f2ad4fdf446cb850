#!/usr/bin/env bash
# rolling-restart.sh: ships new release binaries to the running dob hosts and restarts
# dob-api on them one host at a time, behind the load balancers, through SSM Run Command
# (the hosts have no SSH) with the project's own Command document <name>-rolling-restart
# (terraform/modules/ssm_documents: a fixed script, validated parameters; never
# AWS-RunShellScript). Run by .github/workflows/deploy.yml after `terraform apply`, with
# the operate role.
#
#   rolling-restart.sh --outputs FILE --bin-dir DIR --version ID \
#       [--release-bucket REGION=BUCKET ...] \
#       [--primary-region eu-west-1] [--dr-region eu-central-1] [--port 8080] \
#       [--admin-port 8090]
#
#   --outputs FILE    `terraform output -json` of terraform/ (instance_ids,
#                     target_group_arns, release_buckets, ssm_documents)
#   --bin-dir DIR     the release binaries (packer/provision.sh --stage-binaries)
#   --version ID      where they go: s3://BUCKET/releases/ID/ (e.g. the commit)
#   --release-bucket  the bucket of a region (default: the release_buckets output); hosts
#                     download through presigned URLs (valid one hour), so their instance
#                     role needs no access to it, only their S3 gateway endpoint (same region)
#   --port            the hosts' API port, as registered in the target groups
#   --admin-port      dob-api's admin port on the hosts (/readyz)
#
# Order: the eu-west-1 replica, then the primary, then the DR host. For each host:
#   1. when its target group has another target: deregister it and wait for draining
#      (a lone target stays registered: dob-api.socket keeps accepting during the
#      restart and dob-api's SIGTERM drain finishes in-flight requests)
#   2. SSM document <name>-rolling-restart: download the binaries, check their SHA-256,
#      install them (mode 0755, atomic rename), `systemctl restart dob-api`, wait for
#      http://127.0.0.1:ADMIN-PORT/readyz = 200
#   3. register it again and wait until the target group reports it healthy (/readyz)
# Any failure stops the rollout there (the remaining hosts keep the old binaries) and
# exits 1. Needs: aws cli v2, jq, sha256sum; AWS credentials (OIDC role) in the environment.
set -euo pipefail

log() { printf 'rolling-restart: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

outputs="" bin_dir="" version="" primary_region=eu-west-1 dr_region=eu-central-1 port=8080 admin_port=8090
declare -A buckets=()
while (($#)); do
	case "$1" in
	--outputs | --bin-dir | --version | --release-bucket | --primary-region | --dr-region | --port | --admin-port)
		[[ $# -ge 2 ]] || die "$1 needs a value"
		case "$1" in
		--outputs) outputs="$2" ;;
		--bin-dir) bin_dir="$2" ;;
		--version) version="$2" ;;
		--primary-region) primary_region="$2" ;;
		--dr-region) dr_region="$2" ;;
		--port) port="$2" ;;
		--admin-port) admin_port="$2" ;;
		--release-bucket)
			[[ "$2" == *=* ]] || die "--release-bucket wants REGION=BUCKET"
			buckets["${2%%=*}"]="${2#*=}"
			;;
		esac
		shift 2
		;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) die "unknown argument: $1 (try --help)" ;;
	esac
done
[[ -f "$outputs" ]] || die "--outputs FILE (terraform output -json) is required"
[[ -d "$bin_dir" ]] || die "--bin-dir DIR is required"
[[ "$version" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--version must be 1-64 letters, digits, . _ -"
[[ "$port" =~ ^[0-9]+$ && "$admin_port" =~ ^[0-9]+$ ]] || die "--port and --admin-port must be numbers"
for region in "$primary_region" "$dr_region"; do
	if [[ -z "${buckets[$region]:-}" ]]; then
		buckets["$region"]="$(jq -er --arg r "$region" '.release_buckets.value[$r]' "$outputs")" ||
			die "no --release-bucket for $region and no release_buckets output for it"
	fi
done
mapfile -t binaries < <(find "$bin_dir" -maxdepth 1 -type f -printf '%f\n' | sort)
((${#binaries[@]})) || die "no binaries in $bin_dir"
for bin in "${binaries[@]}"; do
	# The document's allowedPattern admits these names only.
	[[ "$bin" =~ ^[a-z][a-z0-9-]{0,31}$ ]] || die "binary name $bin: a-z 0-9 - only (the SSM document refuses others)"
done

output() { jq -er "$1" "$outputs" || die "terraform output lacks $1"; }

# --- upload once per region ------------------------------------------------------------------

declare -A sums=()
for bin in "${binaries[@]}"; do
	sums["$bin"]="$(sha256sum "$bin_dir/$bin" | cut -d' ' -f1)"
done
for region in "$primary_region" "$dr_region"; do
	log "uploading ${binaries[*]} to s3://${buckets[$region]}/releases/$version/"
	for bin in "${binaries[@]}"; do
		aws s3 cp --region "$region" --only-show-errors "$bin_dir/$bin" \
			"s3://${buckets[$region]}/releases/$version/$bin"
	done
done

# binaries_param REGION: the document's `binaries` parameter: NAME SHA256 URL for each
# binary, space separated, the URL a presigned GET (one hour) from REGION's release bucket.
binaries_param() {
	local region="$1" bin url out=()
	for bin in "${binaries[@]}"; do
		url="$(aws s3 presign --region "$region" --expires-in 3600 \
			"s3://${buckets[$region]}/releases/$version/$bin")"
		out+=("$bin" "${sums[$bin]}" "$url")
	done
	printf '%s' "${out[*]}"
}

# run_on HOST INSTANCE REGION: the rolling-restart document on one host, waited for.
run_on() {
	local name="$1" instance="$2" region="$3" document params command_id status deadline
	document="$(output ".ssm_documents.value[\"$region\"].rolling_restart")"
	params="$(jq -n --arg v "$version" --arg b "$(binaries_param "$region")" --arg p "$admin_port" \
		'{releaseVersion: [$v], binaries: [$b], adminPort: [$p]}')"
	command_id="$(aws ssm send-command --region "$region" --instance-ids "$instance" \
		--document-name "$document" --comment "dob release $version" \
		--timeout-seconds 600 --parameters "$params" --query Command.CommandId --output text)"
	log "$name ($instance): SSM command $command_id ($document)"
	deadline=$((SECONDS + 1000))
	while :; do
		sleep 5
		status="$(aws ssm get-command-invocation --region "$region" --command-id "$command_id" \
			--instance-id "$instance" --query Status --output text 2>/dev/null || echo Pending)"
		case "$status" in
		Success) break ;;
		Pending | InProgress | Delayed) ;;
		*)
			aws ssm get-command-invocation --region "$region" --command-id "$command_id" \
				--instance-id "$instance" --query '[StandardOutputContent, StandardErrorContent]' \
				--output text >&2 || true
			die "$name ($instance): SSM command ended $status"
			;;
		esac
		((SECONDS < deadline)) || die "$name ($instance): SSM command still $status after 1000 s"
	done
	aws ssm get-command-invocation --region "$region" --command-id "$command_id" \
		--instance-id "$instance" --query StandardOutputContent --output text >&2
}

# deploy_host NAME REGION TARGET-GROUP-KEY
deploy_host() {
	local name="$1" region="$2" instance tg targets
	instance="$(output ".instance_ids.value.$name")"
	tg="$(output ".target_group_arns.value.$3")"
	targets="$(aws elbv2 describe-target-health --region "$region" --target-group-arn "$tg" \
		--query 'length(TargetHealthDescriptions)' --output text)"
	if ((targets > 1)); then
		log "$name ($instance): deregistering from its target group and draining"
		aws elbv2 deregister-targets --region "$region" --target-group-arn "$tg" \
			--targets "Id=$instance,Port=$port"
		aws elbv2 wait target-deregistered --region "$region" --target-group-arn "$tg" \
			--targets "Id=$instance,Port=$port"
	else
		log "$name ($instance): the only target: restarting behind socket activation"
	fi
	run_on "$name" "$instance" "$region"
	if ((targets > 1)); then
		aws elbv2 register-targets --region "$region" --target-group-arn "$tg" \
			--targets "Id=$instance,Port=$port"
	fi
	log "$name ($instance): waiting for the target group to report it healthy"
	aws elbv2 wait target-in-service --region "$region" --target-group-arn "$tg" \
		--targets "Id=$instance,Port=$port" ||
		die "$name ($instance): not healthy in its target group"
	log "$name ($instance): done"
}

deploy_host replica "$primary_region" primary
deploy_host primary "$primary_region" primary
deploy_host dr "$dr_region" dr
log "release $version is live on every host"
