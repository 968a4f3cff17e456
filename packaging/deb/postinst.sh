#!/bin/sh
# postinst of the berth package: the berth system user and group, the modes of
# /etc/berth, and berth.service enabled and started on a first install (restarted on an
# upgrade). Workers are not started: each needs its /etc/berth/worker-NAME.env first.
set -e

if [ "$1" = configure ]; then
	if ! getent group berth >/dev/null; then
		addgroup --system berth >/dev/null
	fi
	if ! getent passwd berth >/dev/null; then
		adduser --system --ingroup berth --home /var/lib/berth --no-create-home \
			--shell /usr/sbin/nologin --gecos "berth server and workers" berth >/dev/null
	fi
	chown root:berth /etc/berth /etc/berth/berth.env
	chmod 0750 /etc/berth
	chmod 0640 /etc/berth/berth.env
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null || true
	if [ "$1" = configure ]; then
		if [ -z "$2" ]; then
			systemctl enable --now berth.service >/dev/null || true
		else
			systemctl try-restart berth.service >/dev/null || true
		fi
	fi
fi
exit 0
