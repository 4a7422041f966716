#!/bin/sh
# Starts a pod of the `redis-sentinel` StatefulSet: on its first start, its configuration
# file from sentinel.conf with the admin's password and the name it announces.
set -eu
if [ ! -f /data/sentinel.conf ]; then
  umask 077
  {
    cat /etc/redis/sentinel.conf
    echo "sentinel auth-pass jetmesh $(cat /etc/redis-users/default.pass)"
    echo "sentinel announce-ip $(hostname).redis-sentinel"
  } > /data/sentinel.conf
fi
exec redis-server /data/sentinel.conf --sentinel
