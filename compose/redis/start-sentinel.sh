#!/bin/sh
# Starts a Sentinel of compose.yaml (sentinel-1..3). A Sentinel rewrites its configuration
# file as it learns (the current primary, the replicas, the other Sentinels), so the file
# lives in the Sentinel's volume: the first start copies sentinel.conf there, and every
# start writes again the lines that come from the secrets and keeps what the Sentinel learnt.
#
# Users: `default` is the admin, with the admin's password (the Sentinels use it among
# themselves and with the data nodes); each role's user, with its own password (its hash,
# from the data nodes' ACL file), may only ask where the primary and its replicas are
# (jetmesh processes ask as their role): not start a failover, nor change what is watched.
set -eu
conf=/data/sentinel.conf
users=/run/secrets/redis-users
pass="$(cat /run/secrets/redis-admin-password)"
owned='^(user|sentinel (sentinel-pass|auth-pass)) '
role_commands='resetchannels -@all +ping +auth +hello +client|setinfo +client|setname +sentinel|masters +sentinel|get-master-addr-by-name +sentinel|sentinels +sentinel|replicas +sentinel|slaves'

umask 077
[ -f "$conf" ] || grep -v -E '^#|^$' /etc/redis/sentinel.conf > "$conf"
{
  grep -v -E "$owned" "$conf"
  echo "sentinel sentinel-pass $pass"
  echo "sentinel auth-pass jetmesh $pass"
  # "user <name> reset on #<sha256> <rules>": the name and the hash, with a Sentinel's rules
  awk -v role="$role_commands" '$1 == "user" {
    hash = ""
    for (i = 3; i <= NF; i++) if (substr($i, 1, 1) == "#") { hash = $i; break }
    if (hash == "") next
    if ($2 == "default") print "user default reset on " hash " ~* &* +@all"
    else print "user " $2 " reset on " hash " " role
  }' "$users"
} > "$conf.new"
mv "$conf.new" "$conf"
exec redis-server "$conf" --sentinel
