# shellcheck shell=sh
# Run by SSM document <name>-rolling-restart (aws:runShellScript runs its lines with sh,
# so they hand everything to bash). SSM substitutes the validated parameters into the
# text before any shell sees it; their patterns admit no quote, no $ and no backquote.
bash <<'DOB_SSM'
set -euo pipefail
version='{{ releaseVersion }}'
admin_port='{{ adminPort }}'
read -r -a fields <<<'{{ binaries }}'
((${#fields[@]} > 0 && ${#fields[@]} % 3 == 0)) || { echo "binaries: NAME SHA256 URL triples expected"; exit 1; }
# Same file system as /usr/local/bin, so the final rename is atomic.
tmp="$(mktemp -d /usr/local/bin/.dob-release.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
names=()
for ((i = 0; i < ${#fields[@]}; i += 3)); do
	name="${fields[i]}" sum="${fields[i + 1]}" url="${fields[i + 2]}"
	curl -fsS --retry 3 -o "$tmp/$name" "$url"
	printf '%s  %s\n' "$sum" "$name" >>"$tmp/SHA256SUMS"
	names+=("$name")
done
(cd "$tmp" && sha256sum --check --quiet SHA256SUMS)
for name in "${names[@]}"; do
	install -m 0755 -o root -g root "$tmp/$name" "/usr/local/bin/.$name.new"
	mv -f "/usr/local/bin/.$name.new" "/usr/local/bin/$name"
done
echo "installed release $version"
systemctl restart dob-api.service
for _ in $(seq 1 120); do
	if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$admin_port/readyz"; then
		echo ready
		exit 0
	fi
	sleep 1
done
echo "dob-api not ready after 120 s"
journalctl -u dob-api.service -n 40 --no-pager
exit 1
DOB_SSM
