#!/bin/sh
# Starts a pod of the `redis-sentinel` StatefulSet. A Sentinel rewrites its configuration file
# as it learns (the current primary, the replicas, the other Sentinels), so the file lives on
# the pod's volume; every start writes again the lines jetmesh owns, from sentinel.conf and
# the Secret, and keeps what the Sentinel learnt (as `jetmesh up`'s Sentinels do).
#
# Users, as on `jetmesh up`'s Sentinels: `default` is the admin (the Sentinels use it among
# themselves and with the data nodes), and each role's user, with its password from the ACL
# file, may only ask where the primary and its replicas are.
set -eu
conf=/data/sentinel.conf
base=/etc/redis/sentinel.conf
acl=/etc/redis-users/users.acl
pass="$(cat /etc/redis-users/default.pass)"
per_primary='^sentinel (auth-user|down-after-milliseconds|failover-timeout|parallel-syncs) '
owned='^(user|port|bind|dir|protected-mode|sentinel (resolve-hostnames|announce-hostnames|announce-ip|sentinel-user|sentinel-pass|auth-user|auth-pass|down-after-milliseconds|failover-timeout|parallel-syncs)) '
role_commands='resetchannels -@all +ping +auth +hello +client|setinfo +client|setname +sentinel|masters +sentinel|get-master-addr-by-name +sentinel|sentinels +sentinel|replicas +sentinel|slaves'

learnt=""
if [ -f "$conf" ]; then
  learnt="$(grep -v -E "^#|^\$" "$conf" | grep -v -E "$owned" || true)"
fi
monitor="$(printf '%s\n' "$learnt" | grep '^sentinel monitor ' || true)"
rest="$(printf '%s\n' "$learnt" | grep -v -E '^sentinel monitor |^$' || true)"
[ -n "$monitor" ] || monitor="$(grep '^sentinel monitor ' "$base")"
# a Sentinel that cannot resolve its primary's name at start does not watch it: wait for the
# name (a data pod's name resolves as soon as the pod has an address)
primary_host="$(printf '%s\n' "$monitor" | awk '{ print $4 }')"
until getent hosts "$primary_host" > /dev/null; do
  echo "waiting for $primary_host to resolve"
  sleep 2
done

umask 077
{
  grep -v -E '^#|^$|^sentinel monitor ' "$base" | grep -v -E "$per_primary"
  echo "sentinel announce-ip ${POD_NAME}.redis-sentinel"
  echo "sentinel sentinel-user default"
  echo "sentinel sentinel-pass $pass"
  # each user's password hash from the data nodes' ACL file: "user <name> ... #<sha256> ..."
  awk -v role="$role_commands" '$1 == "user" {
    hash = ""
    for (i = 3; i <= NF; i++) if (substr($i, 1, 1) == "#") { hash = $i; break }
    if (hash == "") next
    if ($2 == "default") print "user default reset on " hash " ~* &* +@all"
    else print "user " $2 " reset on " hash " " role
  }' "$acl"
  echo "$monitor"
  grep -E "$per_primary" "$base"
  echo "sentinel auth-pass jetmesh $pass"
  if [ -n "$rest" ]; then printf '%s\n' "$rest"; fi
} > "$conf.new"
mv "$conf.new" "$conf"
exec redis-server "$conf" --sentinel
