# init: systemd unit, sysusers and tmpfiles entries.
EXTRA_DIST += init/tern.service.in init/tern.sysusers init/tern.tmpfiles
