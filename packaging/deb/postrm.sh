#!/bin/sh
# postrm of the berth package. The berth user and /var/lib/berth (the database) are kept
# even on purge: remove them by hand once the data is no longer wanted.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
fi
exit 0
