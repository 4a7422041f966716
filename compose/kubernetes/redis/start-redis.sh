#!/bin/sh
# Starts a data pod of the `redis` StatefulSet. The primary is whichever pod the Sentinels
# name; when none answers (a new deployment) it is redis-0. The admin's password goes into a
# file on the pod's own volume, not on the command line.
set -eu
self="${POD_NAME}.redis"
# The users file is copied into the data directory (ACL SAVE writes there: a role shut out
# stays out across restarts) only when it differs from the one copied last time, that is
# when `jetmesh admin secrets` wrote other users (a changed policy). As compose does.
if ! cmp -s /etc/redis-users/users.acl /data/users.acl.from; then
  cp /etc/redis-users/users.acl /data/users.acl
  cp /etc/redis-users/users.acl /data/users.acl.from
fi
primary=""
for i in 0 1 2; do
  primary="$(REDISCLI_AUTH="$(cat /etc/redis-users/default.pass)" redis-cli --user default \
    -h "redis-sentinel-$i.redis-sentinel" -p 26379 --raw \
    SENTINEL get-master-addr-by-name jetmesh 2>/dev/null | head -n 1)" || primary=""
  case "$primary" in *" "* | *ERR* | *NOAUTH*) primary="" ;; esac
  [ -n "$primary" ] && break
done
[ -n "$primary" ] || primary="redis-0.redis"
umask 077
{
  echo "include /etc/redis/redis.conf"
  echo "masterauth $(cat /etc/redis-users/default.pass)"
  echo "replica-announce-ip $self"
  if [ "$primary" != "$self" ]; then echo "replicaof $primary 6379"; fi
} > /data/redis.conf
exec redis-server /data/redis.conf
