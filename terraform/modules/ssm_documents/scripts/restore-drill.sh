# shellcheck shell=sh
# Run by SSM document <name>-restore-drill: the nightly drill, now. systemctl start waits
# for the oneshot unit; its exit status is the drill's. dob-restore's JSON report is
# /var/lib/dob/restore-drill.json.
status=0
systemctl start dob-restore-drill.service || status=$?
cat /var/lib/dob/restore-drill.json
exit "$status"
