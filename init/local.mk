# init: systemd unit, sysusers and tmpfiles entries.
EXTRA_DIST += init/tern.service.in init/tern.sysusers init/tern.tmpfiles
CLEANFILES += init/tern.service

systemdsystemunit_DATA = init/tern.service
init/tern.service: $(srcdir)/init/tern.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) init && \
	sed -e 's|@sbindir[@]|$(sbindir)|g' $(srcdir)/init/tern.service.in >$@

install-data-local: install-init-extras
install-init-extras:
	$(MKDIR_P) $(DESTDIR)$(sysusersdir) $(DESTDIR)$(tmpfilesdir) $(DESTDIR)$(sysconfdir)/tern
	$(INSTALL_DATA) $(srcdir)/init/tern.sysusers $(DESTDIR)$(sysusersdir)/tern.conf
	$(INSTALL_DATA) $(srcdir)/init/tern.tmpfiles $(DESTDIR)$(tmpfilesdir)/tern.conf
	$(INSTALL_DATA) $(srcdir)/conf/tern.conf $(DESTDIR)$(sysconfdir)/tern/tern.conf.example

uninstall-local: uninstall-init-extras
uninstall-init-extras:
	rm -f $(DESTDIR)$(sysusersdir)/tern.conf $(DESTDIR)$(tmpfilesdir)/tern.conf
	rm -f $(DESTDIR)$(sysconfdir)/tern/tern.conf.example
.PHONY: install-init-extras uninstall-init-extras
