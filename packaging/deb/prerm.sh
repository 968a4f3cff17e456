#!/bin/sh
# prerm of the berth package: on removal, stop the server and every worker (which drain).
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl stop 'berth-worker@*.service' berth.service >/dev/null || true
	systemctl disable berth.service >/dev/null || true
fi
exit 0
